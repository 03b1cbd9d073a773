"""The benchmark's JSON lines hold consistent figures."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

from cpcjax import bench
from cpcjax import config as config_lib
from cpcjax.constants import SAMPLE_RATE


def _bench(tmp_path, *flags):
    env = dict(
        os.environ,
        CPCJAX_DATA_DIR=str(tmp_path),
        XLA_FLAGS="--xla_force_host_platform_device_count=1",
    )
    return subprocess.run(
        [sys.executable, "-m", "cpcjax.bench", *flags],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_bench_prints_one_consistent_json_line_per_case(tmp_path):
    proc = _bench(
        tmp_path,
        "--config=pre_cpc:synthetic",
        "--config.model.channels=48",
        "--batch_size=4",
        "--window=5120",
        "--finetune_seconds=1",
        "--steps=2",
        "--cases=pretrain,finetune,input",
        "--dtypes=float32,bfloat16",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(l) for l in proc.stdout.splitlines() if l.startswith("{")]
    assert [(l["case"], l.get("dtype")) for l in lines] == [
        ("pretrain", "float32"),
        ("finetune", "float32"),
        ("pretrain", "bfloat16"),
        ("finetune", "bfloat16"),
        ("input", None),
    ]
    fastest = max(l["audio_s_per_s"] for l in lines if l["case"] == "pretrain")
    ratio = lines[-1]["audio_s_per_s"] / fastest
    assert abs(lines[-1]["vs_pretrain_step"] - ratio) <= 0.01 * ratio + 0.01
    for line, window in zip(lines[:4], (5120, 16000, 5120, 16000)):
        assert line["window"] == window and line["batch"] == 4 and line["devices"] == 1
        assert line["channels"] == 48  # the --config.x override reached the model
        assert line["flops_per_step"] > 0 and line["compile_s"] > 0
        assert (
            abs(line["audio_s_per_s"] - 4 * window / SAMPLE_RATE / line["step_s"])
            < 0.01
        )
        assert line["mfu"] is None  # no known peak for a CPU


def test_reference_flags_are_the_paper_architecture_in_cpc_audio_terms():
    harness = bench.reference_harness()
    config = harness.matching_config(config_lib.load("pre_cpc:iemocap"), 16, 20480)
    assert config.dtype == "float32"
    assert config.pretrain.batch_size == config.model.negatives_group_size == 16
    args = harness.cpc_audio_args(config, 20480)
    flags = dict(zip(args[::2], args[1::2]))
    assert flags == {
        "--hiddenEncoder": "512",
        "--hiddenGar": "256",
        "--arMode": "GRU",
        "--rnnMode": "linear",
        "--nPredicts": "12",
        "--negativeSamplingExt": "128",
        "--sizeWindow": "20480",
        "--normMode": "layerNorm",
        "--learningRate": "0.0002",
    }
    config.model.norm = "layer"
    with pytest.raises(
        bench.app.UsageError, match="model.norm='layer' has no CPC_audio"
    ):
        harness.cpc_audio_args(config, 20480)


def test_bench_without_a_checkout_says_the_reference_needs_one(
    tmp_path, monkeypatch, capsys
):
    # As installed from a package: no benchmarks/ beside cpcjax/.
    monkeypatch.setattr(bench, "REFERENCE_HARNESS", str(tmp_path / "cpc_audio.py"))
    with pytest.raises(SystemExit) as e:
        bench.reference_harness()
    assert e.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: --cases=reference needs a checkout of cpcjax")


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--cases=reference"], "--cases=reference needs --reference_dir=PATH"),
        (["--cases=pretrain,speed"], "--cases: speed unknown"),
        (["--config=configs/pre_cpc.py:voxceleb"], "unknown corpus 'voxceleb'"),
        (
            [
                "--cases=reference",
                "--reference_dir={tmp}",
                "--steps=1",
                "--dtypes=float32",
            ],
            "--reference_dir={tmp}: {tmp}/cpc/train.py not found",
        ),
    ],
)
def test_bench_rejects_bad_cases_in_one_line(tmp_path, flags, message):
    proc = _bench(tmp_path, *(f.format(tmp=tmp_path) for f in flags))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = [l for l in proc.stderr.splitlines() if l.startswith("error: ")]
    assert message.format(tmp=tmp_path) in line


def test_bench_names_what_the_reference_checkout_lacks(tmp_path):
    fake = tmp_path / "CPC_audio"
    (fake / "cpc").mkdir(parents=True)
    (fake / "cpc" / "__init__.py").write_text("")
    (fake / "cpc" / "train.py").write_text("import cpc_audio_missing_dependency\n")
    proc = _bench(
        tmp_path,
        "--cases=reference",
        f"--reference_dir={fake}",
        "--steps=1",
        "--dtypes=float32",
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    if importlib.util.find_spec("torch") is None:
        assert "--cases=reference needs PyTorch: pip install torch" in proc.stderr
    else:
        assert (
            f"--reference_dir={fake}: importing CPC_audio failed (No module named "
            "'cpc_audio_missing_dependency'); pip install what it names"
        ) in proc.stderr
