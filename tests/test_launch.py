"""Launch scripts: shellcheck-clean, and their dry runs print the right commands."""

import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT

SHELLCHECK = os.path.join(os.path.dirname(sys.executable), "shellcheck")


def launch(script, *args, env=None):
    return subprocess.run(
        ["bash", os.path.join(ROOT, "launch", script), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_scripts_pass_shellcheck():
    scripts = sorted(
        os.path.join("launch", f)
        for f in os.listdir(os.path.join(ROOT, "launch"))
        if f.endswith((".sh", ".sbatch"))
    )
    assert len(scripts) == 3
    proc = subprocess.run(
        [SHELLCHECK, *scripts], cwd=ROOT, capture_output=True, text=True
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


def tpu_dry(command, *args):
    """`launch/tpu.sh COMMAND` on a VM `cpc` in zone `z`, dry: its stdout."""
    proc = launch("tpu.sh", command, "--name=cpc", "--zone=z", "--dry-run", *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_tpu_install_makes_a_python_3_11_environment_and_run_uses_it():
    install = tpu_dry(
        "install", "--source=https://example.org/cpcjax.git", "--ref=abc123"
    )
    assert "--worker=all" in install
    assert (
        "git clone https://example.org/cpcjax.git ~/cpcjax && git -C ~/cpcjax checkout "
        "abc123"
    ) in install
    assert "python3 -m pip install --user --upgrade uv" in install
    assert "python3 -m uv venv --python 3.11 ~/cpcjax/.venv" in install
    assert (
        "python3 -m uv pip install --python ~/cpcjax/.venv/bin/python -e ~/cpcjax[tpu]"
    ) in install
    # Nothing goes into the image's own Python 3.10 but uv itself.
    assert "pip install -e" not in install

    run = tpu_dry(
        "run",
        "--config=configs/pre_cpc.py:iemocap",
        "--workdir=gs://bucket/runs/pre",
        "--data_dir=gs://bucket/data",
    )
    assert (
        "CPCJAX_DATA_DIR=gs://bucket/data nohup ~/cpcjax/.venv/bin/python -m "
        "cpcjax.main --config=configs/pre_cpc.py:iemocap "
        "--workdir=gs://bucket/runs/pre --distributed < /dev/null > "
        "~/cpcjax_run.log 2>&1 &"
    ) in run
    assert "python3 -m cpcjax" not in run


def test_tpu_gs_paths_never_reach_mkdir_or_a_redirect():
    gs = ["--workdir=gs://b/r", "--data_dir=gs://b/d"]
    outputs = [
        tpu_dry("run", "--config=c", *gs),
        tpu_dry("logs", *gs),
        tpu_dry("prepare", *gs, "--", "iemocap", "--manual_dir=/m"),
    ]
    for out in outputs:
        assert out.strip()
        assert "mkdir" not in out
        assert not re.search(r">\s*gs://", out), out


def test_tpu_prepare_logs_delete_dry_runs():
    prepare = tpu_dry(
        "prepare",
        "--data_dir=gs://b/data",
        "--",
        "iemocap",
        "--manual_dir=/data/IEMOCAP_full_release",
    )
    assert "'--worker=0'" in prepare
    assert (
        "~/cpcjax/.venv/bin/python -m cpcjax.prepare iemocap "
        "--manual_dir=/data/IEMOCAP_full_release --data_dir=gs://b/data"
    ) in prepare
    logs = tpu_dry("logs", "--worker=3")
    assert "'--worker=3' '--command=tail -F ~/cpcjax_run.log'" in logs
    assert "'delete' 'cpc' '--zone=z' '--quiet'" in tpu_dry("delete")


def test_tpu_errors_and_help():
    bad = launch(
        "tpu.sh", "create", "--name=cpc", "--zone=z", "--type=v3-8", "--dry-run"
    )
    assert bad.returncode == 2 and "unknown --type=v3-8" in bad.stderr
    missing = launch("tpu.sh", "run", "--name=cpc", "--zone=z", "--dry-run")
    assert missing.returncode == 2 and "--config and --workdir" in missing.stderr
    no_corpus = launch(
        "tpu.sh", "prepare", "--name=cpc", "--zone=z", "--data_dir=gs://b/d"
    )
    assert no_corpus.returncode == 2 and "after --" in no_corpus.stderr
    helped = launch("tpu.sh", "--help")
    assert helped.returncode == 0 and "--dry-run" in helped.stdout
    assert "--workdir=gs://BUCKET/runs/pre_cpc" in helped.stdout


def test_gpu_dry_runs_one_node():
    one = launch(
        "gpu.sh", "--config=configs/sup.py:iemocap", "--workdir=/w", "--dry-run"
    )
    assert one.returncode == 0, one.stderr
    assert (
        "'python3' '-m' 'cpcjax.main' '--config=configs/sup.py:iemocap' '--workdir=/w'"
        in one.stdout
    )
    assert launch("gpu.sh", "--help").returncode == 0
    assert launch("gpu.sh", "--workdir=/w").returncode == 2
    assert launch("gpu.sh", "--config=c", "--workdir=/w", "--hosts=a,b").returncode == 2


def test_slurm_runs_one_process_per_task_that_finds_its_peers():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "JAX_"))}
    dry = launch(
        "slurm.sbatch",
        "--config=configs/pre_cpc.py:iemocap",
        "--workdir=/shared/runs/pre",
        "--data_dir=/shared/data",
        "--python=/venv/bin/python",
        "--dry-run",
        env={**env, "SLURM_SUBMIT_DIR": "/home/u/cpcjax"},
    )
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.strip() == (
        "'srun' '--kill-on-bad-exit=1' '--chdir=/home/u/cpcjax' "
        "'--export=ALL,CPCJAX_DATA_DIR=/shared/data' '/venv/bin/python' '-m' "
        "'cpcjax.main' '--config=configs/pre_cpc.py:iemocap' "
        "'--workdir=/shared/runs/pre' '--distributed'"
    )
    outside = launch("slurm.sbatch", "--config=c", "--workdir=/w", env=env)
    assert outside.returncode == 2 and "sbatch" in outside.stderr
    helped = launch("slurm.sbatch", "--help")
    assert helped.returncode == 0 and "sbatch --nodes=2" in helped.stdout
    with open(os.path.join(ROOT, "launch", "slurm.sbatch")) as f:
        assert "#SBATCH --signal=TERM@120" in f.read()


def test_jax_finds_the_peers_of_a_slurm_task():
    """What `--distributed` does under srun: JAX reads the coordinator, the
    process count and rank from SLURM's variables."""
    from jax._src import clusters

    env = {
        "SLURM_JOB_ID": "4242",
        "SLURM_STEP_NODELIST": "gpu[003-004]",
        "SLURM_NTASKS": "16",
        "SLURM_PROCID": "9",
        "SLURM_LOCALID": "1",
    }
    with pytest.MonkeyPatch.context() as m:
        for k, v in env.items():
            m.setenv(k, v)
        address, count, rank, local = (
            clusters.ClusterEnv.auto_detect_unset_distributed_params(
                None, None, None, None, None, 10
            )
        )
    assert address.startswith("gpu003:") and (count, rank, local) == (16, 9, [1])


@pytest.mark.parametrize("platforms", [None, "cpu"])
def test_a_gpu_that_jax_does_not_use_gets_one_warning(
    tmp_path, monkeypatch, caplog, platforms
):
    import logging

    import jax

    from cpcjax import cli

    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    if platforms is None:
        monkeypatch.delenv("JAX_PLATFORMS", raising=False)
    else:
        monkeypatch.setenv("JAX_PLATFORMS", platforms)
    log = logging.getLogger("cpcjax.test")
    with caplog.at_level(logging.WARNING, logger="cpcjax.test"):
        cli.warn_if_gpu_unused(jax, log)
    warnings = [r.getMessage() for r in caplog.records]
    if platforms == "cpu":  # the user asked for the CPU
        assert warnings == []
    else:
        assert len(warnings) == 1
        assert "NVIDIA GPU is visible but JAX runs on the CPU" in warnings[0]
        assert "pip install -e '.[gpu]'" in warnings[0]


def test_no_gpu_no_warning(tmp_path, monkeypatch, caplog):
    import logging

    import jax

    from cpcjax import cli

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAX_PLATFORMS", raising=False)
    monkeypatch.setattr(cli.os.path, "exists", lambda p: False)
    log = logging.getLogger("cpcjax.test")
    with caplog.at_level(logging.WARNING, logger="cpcjax.test"):
        cli.warn_if_gpu_unused(jax, log)
    assert caplog.records == []
