"""Several processes of one run on one machine (CPU devices, gloo collectives):
the same losses as one process, a stop that every process agrees on, and a
process that dies stopping the others."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, TINY, config_flags, logged_losses

CONFIG = "configs/pre_cpc.py:synthetic"
STAGES = ("pretrain", os.path.join("finetune", "fold1", "seed0"))
# Long enough for a signal sent after step 5 to land mid-stage; one
# checkpoint, at the end.
PRETRAIN_STEPS = 15
SHORT = [
    f"--config.pretrain.num_steps={PRETRAIN_STEPS}",
    "--config.pretrain.checkpoint_every=1000",
]
STOPPED = re.compile(r"stopped by SIGTERM after step (\d+)")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("data"))


def start(workdir, data_dir, extra=(), processes=2):
    """Starts `python -m cpcjax.main` as the processes of one run, 4 CPU devices
    each, as a user would on one machine; stderr goes to `<workdir>.err<i>`."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    env = dict(
        os.environ,
        CPCJAX_DATA_DIR=str(data_dir),
        JAX_PLATFORMS="cpu",
        XLA_FLAGS="--xla_force_host_platform_device_count=4",
    )
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cpcjax.main",
                f"--config={CONFIG}",
                f"--workdir={workdir}",
                f"--coordinator_address=localhost:{port}",
                f"--num_processes={processes}",
                f"--process_id={i}",
                *config_flags(TINY),
                *extra,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(f"{workdir}.err{i}", "w"),
        )
        for i in range(processes)
    ]


def finish(procs, workdir, timeout=600):
    """Waits for every process; returns their exit codes and stderr."""
    deadline = time.time() + timeout
    codes = [p.wait(timeout=max(1.0, deadline - time.time())) for p in procs]
    return codes, [Path(f"{workdir}.err{i}").read_text() for i in range(len(procs))]


def wait_for_steps(workdir, n, timeout=300):
    """Waits until process 0 has written `n` pretraining steps' metrics."""
    metrics = Path(workdir) / "pretrain" / "metrics.jsonl"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"{metrics}: fewer than {n} steps after {timeout} s")


def saved_steps(workdir):
    directory = os.path.join(workdir, "pretrain", "checkpoints")
    return sorted(int(p) for p in os.listdir(directory) if p.isdigit())


@pytest.fixture(scope="module")
def one_whole(tmp_path_factory, data_dir, run_main):
    """An uninterrupted run of SHORT on one process of 8 devices."""
    workdir = tmp_path_factory.mktemp("one") / "run"
    proc = run_main(CONFIG, workdir, data_dir, devices=8, extra=SHORT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir


def test_sigterm_saves_exits_0_and_the_same_command_resumes(
    tmp_path, data_dir, run_main, one_whole
):
    env = dict(
        os.environ,
        CPCJAX_DATA_DIR=data_dir,
        XLA_FLAGS="--xla_force_host_platform_device_count=8",
    )
    cmd = [
        sys.executable,
        "-m",
        "cpcjax.main",
        f"--config={CONFIG}",
        f"--workdir={tmp_path / 'run'}",
        *config_flags(TINY),
        *SHORT,
    ]
    # A file, not a pipe: nobody reads a pipe while the run waits for the
    # signal, and a full one would stall it.
    with open(tmp_path / "run.err", "w") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=err)
        wait_for_steps(tmp_path / "run", 5)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=300)
    stderr = (tmp_path / "run.err").read_text()
    assert proc.returncode == 0, stderr[-3000:]
    stopped = int(STOPPED.search(stderr).group(1))
    # Saved where it stopped, not at a multiple of checkpoint_every.
    assert saved_steps(tmp_path / "run") == [stopped] and 5 <= stopped < PRETRAIN_STEPS

    resumed = run_main(CONFIG, tmp_path / "run", data_dir, extra=SHORT)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for stage in STAGES:
        assert (tmp_path / "run" / stage / "metrics.jsonl").read_text() == (
            one_whole / stage / "metrics.jsonl"
        ).read_text()


def test_sigterm_to_one_process_stops_both_at_one_step(tmp_path, data_dir, one_whole):
    """Two processes of 4 devices: SIGTERM to one stops both at one step, the
    same command resumes, and the resumed run's losses are those of an
    uninterrupted run on one process of 8 devices."""
    workdir = tmp_path / "run"
    procs = start(workdir, data_dir, SHORT)
    wait_for_steps(workdir, 5)
    signalled = time.time()
    procs[1].send_signal(signal.SIGTERM)
    codes, errs = finish(procs, workdir, timeout=120)
    assert codes == [0, 0], errs[0][-3000:] + errs[1][-3000:]
    assert time.time() - signalled < 120
    assert "process 0/2, 8 cpu devices (cpu backend)" in errs[0]
    stopped = [int(STOPPED.search(err).group(1)) for err in errs]
    assert stopped[0] == stopped[1] and 5 <= stopped[0] < PRETRAIN_STEPS
    assert saved_steps(workdir) == [stopped[0]]

    codes, errs = finish(start(workdir, data_dir, SHORT), workdir)
    assert codes == [0, 0], errs[0][-3000:] + errs[1][-3000:]
    for stage in STAGES:
        np.testing.assert_allclose(
            logged_losses(workdir / stage / "metrics.jsonl", n=None),
            logged_losses(one_whole / stage / "metrics.jsonl", n=None),
            rtol=1e-5,
        )
    report = json.loads((workdir / "report.json").read_text())
    assert report["rows"][0]["method"] == "preCPC"


def test_a_process_that_dies_stops_the_others(tmp_path, data_dir):
    workdir = tmp_path / "run"
    procs = start(workdir, data_dir, ["--config.pretrain.num_steps=100000"])
    wait_for_steps(workdir, 3)
    killed = time.time()
    procs[1].kill()
    try:
        code = procs[0].wait(timeout=120)
    finally:
        procs[0].kill()
    assert time.time() - killed < 120
    err = Path(f"{workdir}.err0").read_text()
    if code == 1:
        # It noticed at a collective: cpcjax's one line, last.
        last = [line for line in err.splitlines() if line.strip()][-1]
        assert last.startswith("error: process 0/2: lost contact with another process")
        assert "its log says why it stopped" in last
    else:
        # It was between collectives (compiling, on a loaded machine) when
        # JAX's coordination service missed the dead process' heartbeats: its
        # client ends this one with its own fatal line and no Python dump.
        assert code == -signal.SIGABRT, err[-3000:]
        assert "another task died" in err
        assert "Fatal Python error" not in err and "Extension modules" not in err
