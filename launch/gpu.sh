#!/usr/bin/env bash
# Runs a cpcjax config on one GPU node: one process drives all its GPUs.
#
#   launch/gpu.sh --config=configs/pre_cpc.py:iemocap --workdir=runs/pre_cpc \
#                 [--data_dir=/data/cpcjax] [--python=.venv/bin/python]
#
# Several nodes go through SLURM: launch/slurm.sbatch. --dry-run prints the
# exact command instead of running it.
set -euo pipefail

usage() {
  sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
  cat <<'TXT'
Options:
  --config=CONFIG    cpcjax config, e.g. configs/pre_cpc.py:iemocap (required)
  --workdir=DIR      the run's workdir, a local path or gs:// (required)
  --data_dir=DIR     prepared corpora (default: $CPCJAX_DATA_DIR or ~/cpcjax_data)
  --repo=DIR         cpcjax checkout to run from (default: this one)
  --python=PYTHON    interpreter with cpcjax[gpu] installed (default: python3)
  --dry-run          print the command, run nothing
  -h, --help         this text
TXT
}

config="" workdir="" data_dir="" python=python3 dry_run=0
repo="$(cd "$(dirname "$0")/.." && pwd)"
for arg in "$@"; do
  case "$arg" in
    --config=*) config="${arg#*=}" ;;
    --workdir=*) workdir="${arg#*=}" ;;
    --data_dir=*) data_dir="${arg#*=}" ;;
    --repo=*) repo="${arg#*=}" ;;
    --python=*) python="${arg#*=}" ;;
    --dry-run) dry_run=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "error: unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done
[[ -n "$config" && -n "$workdir" ]] || {
  echo "error: --config and --workdir are required (see --help)" >&2; exit 2; }

command=(env -C "$repo" ${data_dir:+CPCJAX_DATA_DIR="$data_dir"} "$python" -m cpcjax.main
  --config="$config" --workdir="$workdir")
if (( dry_run )); then echo "${command[@]@Q}"; else exec "${command[@]}"; fi
