"""The benchmark's JSON lines hold consistent figures."""

import json
import os
import subprocess
import sys

from test_main import ROOT


def test_bench_prints_one_consistent_json_line_per_case(tmp_path):
    env = dict(os.environ, CPCJAX_DATA_DIR=str(tmp_path),
               XLA_FLAGS="--xla_force_host_platform_device_count=1")
    proc = subprocess.run(
        [sys.executable, "-m", "cpcjax.bench", "--corpus=synthetic", "--batch_size=4",
         "--window=5120", "--finetune_seconds=1", "--steps=2", "--cases=pretrain,finetune,input",
         "--dtypes=float32,bfloat16"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(l) for l in proc.stdout.splitlines() if l.startswith("{")]
    assert [(l["case"], l.get("dtype")) for l in lines] == [
        ("pretrain", "float32"), ("finetune", "float32"), ("pretrain", "bfloat16"),
        ("finetune", "bfloat16"), ("input", None)]
    fastest = max(l["audio_s_per_s"] for l in lines if l["case"] == "pretrain")
    ratio = lines[-1]["audio_s_per_s"] / fastest
    assert abs(lines[-1]["vs_pretrain_step"] - ratio) <= 0.01 * ratio + 0.01
    for line, window in zip(lines[:4], (5120, 16000, 5120, 16000)):
        assert line["window"] == window and line["batch"] == 4 and line["devices"] == 1
        assert line["flops_per_step"] > 0 and line["compile_s"] > 0
        assert abs(line["audio_s_per_s"] - 4 * window / 16000 / line["step_s"]) < 0.01
        assert line["mfu"] is None  # no known peak for a CPU
