#!/usr/bin/env bash
# Runs a cpcjax config on a Cloud TPU VM or pod slice.
#
#   launch/tpu.sh create  --name=cpc --zone=us-central2-b --type=v4-32 [--project=P]
#   launch/tpu.sh install --name=cpc --zone=us-central2-b [--source=GIT_URL] [--ref=REF]
#   launch/tpu.sh run     --name=cpc --zone=us-central2-b --config=configs/pre_cpc.py:iemocap \
#                         --workdir=/mnt/shared/runs/pre_cpc [--data_dir=/mnt/shared/data]
#   launch/tpu.sh logs    --name=cpc --zone=us-central2-b --workdir=/mnt/shared/runs/pre_cpc
#   launch/tpu.sh delete  --name=cpc --zone=us-central2-b
#
# Every command takes --dry-run, which prints the exact gcloud commands instead
# of running them. The workdir and data dir must be one filesystem that every
# worker mounts (e.g. Filestore over NFS): all workers write checkpoints there.
set -euo pipefail

usage() {
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
  cat <<'TXT'
Options:
  --name=NAME        TPU VM name (required)
  --zone=ZONE        zone (required)
  --type=TYPE        accelerator type for create: v4-8 ... v4-4096, v5litepod-8 (v5e),
                     v5p-8 ..., v6e-8 ...
  --version=VERSION  runtime version for create (default: chosen from --type)
  --project=PROJECT  GCP project (default: gcloud's)
  --source=GIT_URL   repository cloned on every worker into ~/cpcjax and
                     installed with its [tpu] extra (default: this checkout's origin)
  --ref=REF          branch, tag or commit to check out there (default: this
                     checkout's HEAD commit)
  --config=CONFIG    cpcjax config for run, e.g. configs/pre_cpc.py:iemocap
  --workdir=DIR      run's workdir on the shared filesystem
  --data_dir=DIR     prepared corpora on the shared filesystem
  --dry-run          print the commands, run nothing
  -h, --help         this text
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
data_dir=""
dry_run=0
for arg in "$@"; do
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
    --dry-run) dry_run=1 ;;
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

ssh_all() {
  run gcloud compute tpus tpu-vm ssh "$name" --zone="$zone" "${project_flag[@]}" \
    --worker=all --command="$1"
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
    ssh_all "rm -rf ~/cpcjax && git clone ${source} ~/cpcjax && git -C ~/cpcjax checkout ${ref} && python3 -m pip install --upgrade pip && python3 -m pip install -e ~/cpcjax[tpu]"
    ;;
  run)
    [[ -n "$config" && -n "$workdir" ]] || {
      echo "error: run needs --config and --workdir" >&2; exit 2; }
    env_prefix=""
    [[ -n "$data_dir" ]] && env_prefix="CPCJAX_DATA_DIR=${data_dir} "
    ssh_all "mkdir -p ${workdir} && cd ~/cpcjax && ${env_prefix}nohup python3 -m cpcjax.main --config=${config} --workdir=${workdir} --distributed > ${workdir}/log_\$(hostname).txt 2>&1 &"
    ;;
  logs)
    [[ -n "$workdir" ]] || { echo "error: logs needs --workdir" >&2; exit 2; }
    run gcloud compute tpus tpu-vm ssh "$name" --zone="$zone" "${project_flag[@]}" \
      --worker=0 --command="tail -F ${workdir}/log_*.txt"
    ;;
  delete)
    run gcloud compute tpus tpu-vm delete "$name" --zone="$zone" "${project_flag[@]}" --quiet
    ;;
  *)
    echo "error: unknown command $cmd (create, install, run, logs, delete; see --help)" >&2
    exit 2
    ;;
esac
