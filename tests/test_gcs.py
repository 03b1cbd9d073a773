"""gs:// workdirs and data dirs, end to end, against a local Cloud Storage emulator.

The emulator (`tests/gcs_emulator.py`, gcp-storage-emulator) runs in memory on
127.0.0.1; the commands get only STORAGE_EMULATOR_HOST and
TENSORSTORE_GCS_HTTP_URL, as a user would set them.
"""

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

import pytest
from conftest import ROOT, TINY, config_flags, write_wav

pytest.importorskip("gcp_storage_emulator")
pytest.importorskip("gcsfs")

BUCKET = "cpcjax-test"
CONFIG = "pre_cpc:synthetic"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """The emulator's URL, with BUCKET made; stopped after the module."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("emulator") / "log.txt"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                os.path.join(ROOT, "tests", "gcs_emulator.py"),
                "start",
                "--host=127.0.0.1",
                f"--port={port}",
                "--in-memory",
                f"--default-bucket={BUCKET}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while "All services started" not in log_path.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the emulator did not start: {log_path.read_text()}")
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=30)


def _env(url: str) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("EPATH_USE_TF", "CLOUD_STORAGE_EMULATOR_ENDPOINT")
        and not k.startswith("GCSFS_")
    }
    env.update(
        STORAGE_EMULATOR_HOST=url,
        TENSORSTORE_GCS_HTTP_URL=url,
        XLA_FLAGS="--xla_force_host_platform_device_count=8",
    )
    return env


def _objects(url: str, prefix: str) -> list[str]:
    """Names of the bucket's objects under `prefix`, through the JSON API."""
    names, token = [], None
    while True:
        query = {"prefix": prefix, **({"pageToken": token} if token else {})}
        with urllib.request.urlopen(
            f"{url}/storage/v1/b/{BUCKET}/o?{urllib.parse.urlencode(query)}"
        ) as r:
            page = json.load(r)
        names += [o["name"] for o in page.get("items", [])]
        token = page.get("nextPageToken")
        if not token:
            return names


def _read(url: str, name: str) -> bytes:
    quoted = urllib.parse.quote(name, safe="")
    with urllib.request.urlopen(
        f"{url}/storage/v1/b/{BUCKET}/o/{quoted}?alt=media"
    ) as r:
        return r.read()


def _main_cmd(workdir: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cpcjax.main",
        f"--config={CONFIG}",
        f"--workdir={workdir}",
        f"--config.data_dir=gs://{BUCKET}/data",
        *config_flags(TINY),
    ]


def _run(cmd, env, cwd=ROOT, timeout=600):
    return subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def _final(url: str, run: str) -> tuple[list, list]:
    """The report's rows and each result.json's test CCCs of a workdir."""
    report = json.loads(_read(url, f"{run}/report.json"))
    results = sorted(n for n in _objects(url, f"{run}/") if n.endswith("result.json"))
    assert results, _objects(url, f"{run}/")
    cccs = [json.loads(_read(url, n))["test"]["ccc"] for n in results]
    return report["rows"], cccs


def test_killed_run_on_gcs_resumes_to_the_same_metrics(emulator, tmp_path):
    env = _env(emulator)
    # Uninterrupted; it also prepares the synthetic corpus into the bucket.
    whole = _run(_main_cmd(f"gs://{BUCKET}/whole"), env)
    assert whole.returncode == 0, whole.stderr[-3000:]
    data = _objects(emulator, "data/")
    assert any(".array_record-" in n for n in data), data
    assert not any(n.startswith("data/downloads/") for n in data)

    # Killed (no chance to save or clean up) once its first checkpoint is
    # complete in the bucket, then rerun with the same command.
    proc = subprocess.Popen(
        _main_cmd(f"gs://{BUCKET}/run"),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        names = _objects(emulator, "run/")
        if any("/checkpoints/" in n and "commit_success" in n for n in names):
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read()[-3000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert not any(n.startswith("run/report") for n in _objects(emulator, "run/"))
    rerun = _run(_main_cmd(f"gs://{BUCKET}/run"), env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert _final(emulator, "run") == _final(emulator, "whole")

    names = _objects(emulator, "run/")
    for plot in ("training_curves.png", "predicted_vs_true.png", "tsne.png"):
        assert f"run/plots/{plot}" in names, names
    assert any("events.out.tfevents" in n for n in names), names
    metrics = _read(emulator, "run/pretrain/metrics.jsonl").decode().splitlines()
    steps = [json.loads(line)["step"] for line in metrics]
    assert steps == sorted(set(steps)), steps  # no step twice after the resume

    wav = write_wav(tmp_path / "a.wav", seconds=1.0)
    pred = _run(
        [
            sys.executable,
            "-m",
            "cpcjax.predict",
            f"--workdir=gs://{BUCKET}/run",
            f"--out=gs://{BUCKET}/predictions/p",
            str(wav),
        ],
        env,
    )
    assert pred.returncode == 0, pred.stderr[-3000:]
    rows = json.loads(_read(emulator, "predictions/p.json"))["predictions"]
    assert [r["file"] for r in rows] == [str(wav)]
    assert b"activation" in _read(emulator, "predictions/p.csv")


def test_missing_bucket_is_one_line_and_writes_nothing(emulator, tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = dict(_env(emulator), TMPDIR=str(tmp_path / "tmp"))
    os.makedirs(env["TMPDIR"])
    proc = _run(_main_cmd("gs://no-such-bucket/run"), env, cwd)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert errors == [
        "error: --workdir gs://no-such-bucket/run: bucket no-such-bucket does not exist"
    ], proc.stderr[-3000:]
    leftovers = [
        os.path.join(r, f) for r, _, fs in os.walk(tmp_path) for f in fs
    ] + os.listdir(cwd)
    assert leftovers == [], leftovers


# What Cloud Storage answers a caller without credentials (gcsfs then sends
# its requests anonymously): 401 with a JSON error, on every request.
DENIED = (
    "Anonymous caller does not have storage.buckets.get access to the Google "
    "Cloud Storage bucket."
)


class _Denying(http.server.BaseHTTPRequestHandler):
    def _deny(self):
        body = json.dumps(
            {"error": {"code": 401, "message": DENIED, "errors": []}}
        ).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _deny

    def log_message(self, *args):
        pass


@pytest.fixture
def denying_storage():
    """The URL of a Cloud Storage endpoint that refuses every request with 401."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Denying)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    "remote", ["--workdir gs://private/run", "data_dir gs://private/data"]
)
def test_no_credentials_is_one_line_and_writes_nothing(
    denying_storage, tmp_path, remote
):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = dict(_env(denying_storage), TMPDIR=str(tmp_path / "tmp"))
    os.makedirs(env["TMPDIR"])
    local = tmp_path / "run"
    workdir = "gs://private/run" if remote.startswith("--workdir") else str(local)
    cmd = [*_main_cmd(workdir), "--config.data_dir=gs://private/data"]
    proc = _run(cmd, env, cwd, timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if " process 0/1" not in line]
    assert lines == [f"error: {remote}: cannot reach bucket private: {DENIED}, 401"], (
        proc.stderr[-3000:]
    )
    leftovers = [
        os.path.join(r, f) for r, _, fs in os.walk(tmp_path) for f in fs
    ] + os.listdir(cwd)
    assert leftovers == [] and not local.exists(), leftovers
