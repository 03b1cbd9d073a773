#!/usr/bin/env bash
# Runs a cpcjax config on a Cloud TPU VM or pod slice.
#
#   launch/tpu.sh create  --name=cpc --zone=us-central2-b --type=v4-8 [--project=P]
#   launch/tpu.sh install --name=cpc --zone=us-central2-b [--source=GIT_URL] [--ref=REF]
#   launch/tpu.sh prepare --name=cpc --zone=us-central2-b --data_dir=gs://BUCKET/data \
#                         -- iemocap --manual_dir=/data/IEMOCAP_full_release
#   launch/tpu.sh run     --name=cpc --zone=us-central2-b --config=configs/pre_cpc.py:iemocap \
#                         --workdir=gs://BUCKET/runs/pre_cpc --data_dir=gs://BUCKET/data
#   launch/tpu.sh logs    --name=cpc --zone=us-central2-b [--worker=N]
#   launch/tpu.sh delete  --name=cpc --zone=us-central2-b
#
# Every command takes --dry-run, which prints the exact gcloud commands instead
# of running them. The workdir and data dir are gs:// paths every worker reads
# and writes (or a filesystem every worker mounts); each worker logs to
# ~/cpcjax_run.log on its own disk.
set -euo pipefail

# The environment `install` makes on every worker, and each worker's log: paths
# on the workers, so their shell expands the ~.
# shellcheck disable=SC2088
VENV="~/cpcjax/.venv"
# shellcheck disable=SC2088
LOG="~/cpcjax_run.log"
PYTHON_VERSION=3.11

usage() {
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
  cat <<'TXT'
Options:
  --name=NAME        TPU VM name (required)
  --zone=ZONE        zone (required)
  --type=TYPE        accelerator type for create: v4-8 ... v4-4096, v5litepod-8 (v5e),
                     v5p-8 ..., v6e-8 ...
  --version=VERSION  runtime version for create (default: chosen from --type)
  --project=PROJECT  GCP project (default: gcloud's)
  --source=GIT_URL   repository cloned on every worker into ~/cpcjax and
                     installed with its [tpu] extra into a Python 3.11
                     environment, ~/cpcjax/.venv (default: this checkout's origin)
  --ref=REF          branch, tag or commit to check out there (default: this
                     checkout's HEAD commit)
  --config=CONFIG    cpcjax config for run, e.g. configs/pre_cpc.py:iemocap
  --workdir=DIR      run's workdir: gs://BUCKET/PATH, or a path every worker mounts
  --data_dir=DIR     prepared corpora: gs://BUCKET/PATH, or a shared path
  --worker=N         the worker whose log `logs` follows (default 0)
  --dry-run          print the commands, run nothing
  -h, --help         this text
After `prepare ... --`, the arguments go to `python -m cpcjax.prepare` on worker 0.
TXT
}

runtime_for() {
  case "$1" in
    v4-*) echo "tpu-ubuntu2204-base" ;;
    v5litepod-*|v5e-*) echo "v2-alpha-tpuv5-lite" ;;
    v5p-*) echo "v2-alpha-tpuv5" ;;
    v6e-*) echo "v2-alpha-tpuv6e" ;;
    *) echo "error: unknown --type=$1 (v4-N, v5litepod-N, v5p-N or v6e-N)" >&2; return 2 ;;
  esac
}

cmd="${1:-}"
if [[ -z "$cmd" || "$cmd" == "-h" || "$cmd" == "--help" ]]; then usage; exit 0; fi
shift
name="" zone="" type="" version="" project="" source="" ref="" config="" workdir=""
data_dir="" worker=0
dry_run=0
passed=()
while (( $# )); do
  arg="$1"
  shift
  case "$arg" in
    --name=*) name="${arg#*=}" ;;
    --zone=*) zone="${arg#*=}" ;;
    --type=*) type="${arg#*=}" ;;
    --version=*) version="${arg#*=}" ;;
    --project=*) project="${arg#*=}" ;;
    --source=*) source="${arg#*=}" ;;
    --ref=*) ref="${arg#*=}" ;;
    --config=*) config="${arg#*=}" ;;
    --workdir=*) workdir="${arg#*=}" ;;
    --data_dir=*) data_dir="${arg#*=}" ;;
    --worker=*) worker="${arg#*=}" ;;
    --dry-run) dry_run=1 ;;
    --) passed=("$@"); break ;;
    -h|--help) usage; exit 0 ;;
    *) echo "error: unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done
[[ -n "$name" && -n "$zone" ]] || { echo "error: --name and --zone are required" >&2; exit 2; }

project_flag=()
[[ -n "$project" ]] && project_flag=(--project="$project")

run() {
  if (( dry_run )); then echo "${@@Q}"; else "$@"; fi
}

ssh_on() {
  run gcloud compute tpus tpu-vm ssh "$name" --zone="$zone" "${project_flag[@]}" \
    --worker="$1" --command="$2"
}

case "$cmd" in
  create)
    [[ -n "$type" ]] || { echo "error: create needs --type" >&2; exit 2; }
    version="${version:-$(runtime_for "$type")}"
    run gcloud compute tpus tpu-vm create "$name" --zone="$zone" "${project_flag[@]}" \
      --accelerator-type="$type" --version="$version"
    ;;
  install)
    repo="$(dirname "$0")/.."
    source="${source:-$(git -C "$repo" remote get-url origin 2>/dev/null || true)}"
    ref="${ref:-$(git -C "$repo" rev-parse HEAD 2>/dev/null || true)}"
    [[ -n "$source" && -n "$ref" ]] || {
      echo "error: no git origin/HEAD here; pass --source=GIT_URL --ref=REF" >&2; exit 2; }
    # The runtime images' python3 is 3.10 (Ubuntu 22.04). uv, installed from
    # PyPI into the user's site, makes a 3.11 environment from a standalone
    # Python it downloads: no sudo, no apt lock, no prompt. Newer images refuse
    # a --user install without --break-system-packages (PEP 668), which older
    # pips do not know: hence the second try.
    uv="python3 -m pip install --user --upgrade uv"
    ssh_on all "rm -rf ~/cpcjax && git clone ${source} ~/cpcjax && git -C ~/cpcjax checkout ${ref} && { ${uv} || ${uv} --break-system-packages; } && python3 -m uv venv --python ${PYTHON_VERSION} ${VENV} && python3 -m uv pip install --python ${VENV}/bin/python -e ~/cpcjax[tpu]"
    ;;
  prepare)
    [[ -n "$data_dir" && ${#passed[@]} -gt 0 ]] || {
      echo "error: prepare needs --data_dir and, after --, the corpus and its flags" >&2
      exit 2; }
    ssh_on 0 "cd ~/cpcjax && ${VENV}/bin/python -m cpcjax.prepare ${passed[*]} --data_dir=${data_dir}"
    ;;
  run)
    [[ -n "$config" && -n "$workdir" ]] || {
      echo "error: run needs --config and --workdir" >&2; exit 2; }
    env_prefix=""
    [[ -n "$data_dir" ]] && env_prefix="CPCJAX_DATA_DIR=${data_dir} "
    # cpcjax makes the workdir itself, on gs:// too; the log stays on each
    # worker's disk, since a shell cannot redirect into a bucket.
    ssh_on all "cd ~/cpcjax && ${env_prefix}nohup ${VENV}/bin/python -m cpcjax.main --config=${config} --workdir=${workdir} --distributed < /dev/null > ${LOG} 2>&1 &"
    ;;
  logs)
    ssh_on "$worker" "tail -F ${LOG}"
    ;;
  delete)
    run gcloud compute tpus tpu-vm delete "$name" --zone="$zone" "${project_flag[@]}" --quiet
    ;;
  *)
    echo "error: unknown command $cmd (create, install, prepare, run, logs, delete; see --help)" >&2
    exit 2
    ;;
esac
