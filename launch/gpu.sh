#!/usr/bin/env bash
# Runs a cpcjax config on one GPU node (one process drives all its GPUs) or on
# several nodes (one process per node, joined by jax.distributed).
#
#   launch/gpu.sh --config=configs/pre_cpc.py:iemocap --workdir=/shared/runs/pre_cpc
#   launch/gpu.sh --config=configs/pre_cpc.py:iemocap --workdir=/shared/runs/pre_cpc \
#                 --hosts=gpu-a,gpu-b [--port=12355] [--repo=/shared/cpcjax]
#
# With --hosts, each host is reached by ssh, must have cpcjax installed
# (`pip install -e '.[gpu]'` in --repo) and must see the workdir and data dir
# on a shared filesystem; the first host coordinates. --dry-run prints the
# exact commands instead of running them.
set -euo pipefail

usage() {
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
  cat <<'TXT'
Options:
  --config=CONFIG    cpcjax config, e.g. configs/pre_cpc.py:iemocap (required)
  --workdir=DIR      the run's workdir (required)
  --data_dir=DIR     prepared corpora (default: $CPCJAX_DATA_DIR or ~/cpcjax_data)
  --hosts=H1,H2,...  several nodes, one process each; the first coordinates
  --port=PORT        coordinator port on the first host (default 12355)
  --repo=DIR         cpcjax checkout on every host (default: this one)
  --python=PYTHON    interpreter with cpcjax installed (default: python3)
  --dry-run          print the commands, run nothing
  -h, --help         this text
TXT
}

config="" workdir="" data_dir="" hosts="" port=12355 python=python3 dry_run=0
repo="$(cd "$(dirname "$0")/.." && pwd)"
for arg in "$@"; do
  case "$arg" in
    --config=*) config="${arg#*=}" ;;
    --workdir=*) workdir="${arg#*=}" ;;
    --data_dir=*) data_dir="${arg#*=}" ;;
    --hosts=*) hosts="${arg#*=}" ;;
    --port=*) port="${arg#*=}" ;;
    --repo=*) repo="${arg#*=}" ;;
    --python=*) python="${arg#*=}" ;;
    --dry-run) dry_run=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "error: unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done
[[ -n "$config" && -n "$workdir" ]] || {
  echo "error: --config and --workdir are required (see --help)" >&2; exit 2; }

run() {
  if (( dry_run )); then echo "${@@Q}"; else "$@"; fi
}

env_prefix=""
[[ -n "$data_dir" ]] && env_prefix="CPCJAX_DATA_DIR=${data_dir} "
main="${python} -m cpcjax.main --config=${config} --workdir=${workdir}"

if [[ -z "$hosts" ]]; then
  run env -C "$repo" ${data_dir:+CPCJAX_DATA_DIR="$data_dir"} "$python" -m cpcjax.main \
    --config="$config" --workdir="$workdir"
  exit 0
fi

IFS=',' read -r -a host_list <<< "$hosts"
count=${#host_list[@]}
coordinator="${host_list[0]}:${port}"
for i in "${!host_list[@]}"; do
  host="${host_list[$i]}"
  run ssh "$host" "mkdir -p ${workdir} && cd ${repo} && ${env_prefix}nohup ${main} --coordinator_address=${coordinator} --num_processes=${count} --process_id=${i} > ${workdir}/log_${host}.txt 2>&1 &"
done
(( dry_run )) || echo "started ${count} processes; logs: ${workdir}/log_<host>.txt"
