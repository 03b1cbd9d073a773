"""Launch scripts: shellcheck-clean, and their dry runs print the right commands."""

import os
import subprocess
import sys

import pytest

from test_main import ROOT

SHELLCHECK = os.path.join(os.path.dirname(sys.executable), "shellcheck")


def launch(script, *args):
    return subprocess.run(
        ["bash", os.path.join(ROOT, "launch", script), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_scripts_pass_shellcheck():
    proc = subprocess.run(
        [SHELLCHECK, "launch/tpu.sh", "launch/gpu.sh"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize(
    "tpu_type,runtime",
    [
        ("v4-32", "tpu-ubuntu2204-base"),
        ("v5litepod-8", "v2-alpha-tpuv5-lite"),
        ("v5p-8", "v2-alpha-tpuv5"),
        ("v6e-8", "v2-alpha-tpuv6e"),
    ],
)
def test_tpu_create_picks_the_runtime_of_the_type(tpu_type, runtime):
    proc = launch(
        "tpu.sh",
        "create",
        "--name=cpc",
        "--zone=us-central2-b",
        f"--type={tpu_type}",
        "--project=p",
        "--dry-run",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [
        "'gcloud'",
        "'compute'",
        "'tpus'",
        "'tpu-vm'",
        "'create'",
        "'cpc'",
        "'--zone=us-central2-b'",
        "'--project=p'",
        f"'--accelerator-type={tpu_type}'",
        f"'--version={runtime}'",
    ]


def test_tpu_install_run_logs_delete_dry_runs():
    common = ["--name=cpc", "--zone=z", "--dry-run"]
    install = launch(
        "tpu.sh",
        "install",
        *common,
        "--source=https://example.org/cpcjax.git",
        "--ref=abc123",
    )
    assert "--worker=all" in install.stdout
    assert (
        "git clone https://example.org/cpcjax.git ~/cpcjax && git -C ~/cpcjax checkout "
        "abc123"
    ) in install.stdout
    assert "pip install -e ~/cpcjax[tpu]" in install.stdout
    run = launch(
        "tpu.sh",
        "run",
        *common,
        "--config=configs/pre_cpc.py:iemocap",
        "--workdir=/mnt/s/pre",
        "--data_dir=/mnt/s/data",
    )
    assert (
        "CPCJAX_DATA_DIR=/mnt/s/data nohup python3 -m cpcjax.main "
        "--config=configs/pre_cpc.py:iemocap --workdir=/mnt/s/pre --distributed"
    ) in run.stdout
    assert (
        "tail -F /mnt/s/pre/log_*.txt"
        in launch("tpu.sh", "logs", *common, "--workdir=/mnt/s/pre").stdout
    )
    assert (
        "'delete' 'cpc' '--zone=z' '--quiet'"
        in launch("tpu.sh", "delete", *common).stdout
    )


def test_tpu_errors_and_help():
    bad = launch(
        "tpu.sh", "create", "--name=cpc", "--zone=z", "--type=v3-8", "--dry-run"
    )
    assert bad.returncode == 2 and "unknown --type=v3-8" in bad.stderr
    missing = launch("tpu.sh", "run", "--name=cpc", "--zone=z", "--dry-run")
    assert missing.returncode == 2 and "--config and --workdir" in missing.stderr
    helped = launch("tpu.sh", "--help")
    assert helped.returncode == 0 and "--dry-run" in helped.stdout


def test_gpu_dry_runs_one_node_and_several():
    one = launch(
        "gpu.sh", "--config=configs/sup.py:iemocap", "--workdir=/w", "--dry-run"
    )
    assert one.returncode == 0, one.stderr
    assert (
        "'python3' '-m' 'cpcjax.main' '--config=configs/sup.py:iemocap' '--workdir=/w'"
        in one.stdout
    )
    several = launch(
        "gpu.sh",
        "--config=configs/sup.py:iemocap",
        "--workdir=/w",
        "--hosts=a,b,c",
        "--port=999",
        "--repo=/r",
        "--dry-run",
    )
    lines = several.stdout.strip().splitlines()
    assert len(lines) == 3
    for i, (host, line) in enumerate(zip("abc", lines)):
        assert line.startswith(f"'ssh' '{host}' 'mkdir -p /w && cd /r && ")
        assert f"--coordinator_address=a:999 --num_processes=3 --process_id={i}" in line
    assert launch("gpu.sh", "--help").returncode == 0
    assert launch("gpu.sh", "--workdir=/w").returncode == 2
