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


def _bench(tmp_path, *flags, xla_flags=""):
    env = dict(
        os.environ,
        CPCJAX_DATA_DIR=str(tmp_path),
        XLA_FLAGS=f"--xla_force_host_platform_device_count=1 {xla_flags}".strip(),
    )
    return subprocess.run(
        [sys.executable, "-m", "cpcjax.bench", *flags],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _ratio_rounding(num, den, step=0.5e-4 * 1e12, ratio_step=0.5e-4):
    """How far a/b can move when a and b are printed to 4 decimals in TFLOP/s
    and the ratio itself to 4 decimals: small rates carry a large relative error."""
    return step / den + num * step / den**2 + ratio_step + 1e-9


def test_bench_prints_one_consistent_json_line_per_case(tmp_path):
    proc = _bench(
        tmp_path,
        "--config=pre_cpc:synthetic",
        "--config.model.channels=48",
        "--batch_size=4",
        "--window=5120",
        "--finetune_seconds=1",
        "--steps=2",
        "--cases=peak,pretrain,finetune,predict,input",
        "--dtypes=float32,bfloat16",
        "--peak_size=256",
        "--predict_files=3",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(l) for l in proc.stdout.splitlines() if l.startswith("{")]
    assert [(l["case"], l.get("dtype")) for l in lines] == [
        ("peak", None),
        ("pretrain", "float32"),
        ("finetune", "float32"),
        ("predict", "float32"),
        ("pretrain", "bfloat16"),
        ("finetune", "bfloat16"),
        ("predict", "bfloat16"),
        ("input", None),
    ]
    peak = lines[0]
    assert peak["platform"] == "cpu" and peak["size"] == 256 and peak["cpu"]
    assert peak["isa"] and peak["isa_level"] and peak["datasheet_tflops_per_s"] is None
    assert peak["flops_per_s"]["float32"] > 0
    assert set(peak["tflops_per_s"]) == set(peak["flops_per_s"])
    assert set(peak["flops_per_s"]) <= {"float32", "bfloat16"}
    fastest = max(l["audio_s_per_s"] for l in lines if l["case"] == "pretrain")
    ratio = lines[-1]["audio_s_per_s"] / fastest
    assert abs(lines[-1]["vs_pretrain_step"] - ratio) <= 0.01 * ratio + 0.01
    steps = [l for l in lines if l["case"] in ("pretrain", "finetune")]
    for line, window in zip(steps, (5120, 16000, 5120, 16000)):
        assert line["window"] == window and line["batch"] == 4 and line["devices"] == 1
        assert line["channels"] == 48  # the --config.x override reached the model
        assert line["flops_per_step"] > 0 and line["compile_s"] > 0
        assert (
            abs(line["audio_s_per_s"] - 4 * window / SAMPLE_RATE / line["step_s"])
            < 0.01
        )
    for line in lines[1:-1]:
        # Against the measured peak, so never null; no datasheet for a CPU.
        assert line["mfu"] > 0 and line["mfu_datasheet"] is None
        if line["dtype"] == "float32":
            assert line["mfu_against"] == "measured float32 matmul peak"
        elif line["peak_from"] == "peak line":
            best_dtype = max(peak["flops_per_s"], key=peak["flops_per_s"].get)
            assert line["mfu_against"] == f"measured {best_dtype} matmul peak"
        else:  # a matmul between the steps beat the peak line's, in either dtype
            assert line["mfu_against"] in {
                "measured float32 matmul peak",
                "measured bfloat16 matmul peak",
            }
        flops_s = line["tflops_per_s"] * 1e12
        peak_s = line["peak_tflops_per_s"] * 1e12
        assert abs(line["mfu"] - flops_s / peak_s) <= _ratio_rounding(flops_s, peak_s)
        # mfu is against the best measured: never below the peak line's.
        line_peak = max(peak["tflops_per_s"].values())
        if line["dtype"] == "float32":
            line_peak = peak["tflops_per_s"]["float32"]
        assert line["peak_tflops_per_s"] >= line_peak - 1e-4
        assert line["peak_from"] in {"peak line", "between the steps"}
        if abs(line["peak_tflops_per_s"] - line_peak) >= 1e-4:
            assert line["peak_from"] == "between the steps"
        elif line["peak_from"] == "between the steps":
            # Beaten by less than the 4 decimals both are rounded to.
            assert line["peak_tflops_per_s"] == line_peak
        if line["case"] == "predict":  # its best pass: against the best only
            assert "mfu_between_steps" not in line
        else:
            between = line["between_steps_tflops_per_s"] * 1e12
            assert abs(
                line["mfu_between_steps"] - flops_s / between
            ) <= _ratio_rounding(flops_s, between)
    for line in (l for l in lines if l["case"] == "predict"):
        assert line["files"] == 3 and line["channels"] == 48
        assert line["audio_s"] > 3 * 4.0 and line["model_calls"] > 0
        assert line["audio_s_per_s"] == pytest.approx(
            line["audio_s"] / line["wall_s"], rel=0.01
        )
        assert line["serial_audio_s_per_s"] > 0 and line["model_s"] > 0
        assert 0 < line["audio_flops_fraction"] <= 1
        # The share of the peak's rate reached is the pass's MFU.
        assert line["peak_fraction"] == pytest.approx(line["mfu"], abs=2e-3)


def test_mfu_is_against_the_best_matmul_and_between_steps_against_their_median():
    peak = {
        "platform": "cpu",
        "flops_per_s": {"float32": 4e11, "bfloat16": 8e11},
        "datasheet_tflops_per_s": None,
    }
    between = {
        "median": {"float32": 2e11, "bfloat16": 1e11},
        "best": {"float32": 5e11, "bfloat16": 2e11},
    }
    assert bench.mfu_fields(1e11, "float32", peak, between) == {
        "mfu": 0.2,
        "mfu_against": "measured float32 matmul peak",
        "peak_tflops_per_s": 0.5,
        "peak_from": "between the steps",
        "mfu_between_steps": 0.5,
        "between_steps_tflops_per_s": 0.2,
        "mfu_datasheet": None,
    }
    # bfloat16 is held to the better dtype of each: the line's bf16 (above
    # every matmul between the steps) for mfu, f32 for the median.
    fields = bench.mfu_fields(1e11, "bfloat16", peak, between)
    assert (fields["mfu"], fields["mfu_against"], fields["peak_from"]) == (
        0.125,
        "measured bfloat16 matmul peak",
        "peak line",
    )
    assert fields["mfu_between_steps"] == 0.5
    alone = bench.mfu_fields(1e11, "float32", peak)
    assert (alone["mfu"], alone["peak_from"]) == (0.25, "peak line")
    assert "mfu_between_steps" not in alone
    best_only = bench.mfu_fields(1e11, "float32", peak, {"best": between["best"]})
    assert best_only["mfu"] == 0.2 and "mfu_between_steps" not in best_only


# /proc/cpuinfo flags of an AVX-512 machine (a Zen 4), of an AVX2-only one (a
# Zen 2), and of an Arm one with SVE.
AVX2_FLAGS = {"sse4_2", "avx", "avx2", "fma"}
AVX512_FLAGS = AVX2_FLAGS | {"avx512f", "avx512dq", "avx512_vnni", "avx512_bf16"}
ARM_FLAGS = {"fp", "asimd", "sve"}


@pytest.mark.parametrize(
    "cpu,xla_flags,expected",
    [
        (AVX512_FLAGS, "", ("AVX512", "AVX512_BF16", None)),
        (AVX512_FLAGS, "--xla_cpu_max_isa=AVX2", ("AVX2", "AVX2", "AVX2")),
        (
            AVX512_FLAGS,
            "--xla_force_host_platform_device_count=8 --xla_cpu_max_isa=avx512",
            ("AVX512", "AVX512", "AVX512"),
        ),
        (AVX2_FLAGS, "", ("AVX2", "AVX2", None)),
        (AVX2_FLAGS, "--xla_cpu_max_isa=AVX512_BF16", ("AVX2", "AVX2", "AVX512_BF16")),
        (ARM_FLAGS, "", ("SVE", "SVE", None)),
        (ARM_FLAGS, "--xla_cpu_max_isa=NEON", ("NEON", "NEON", "NEON")),
    ],
)
def test_isa_is_the_cpus_newest_held_to_xla_cpu_max_isa(cpu, xla_flags, expected):
    target = bench.isa(cpu_flags=cpu, xla_flags=xla_flags)
    assert (target["isa"], target["isa_level"], target["xla_cpu_max_isa"]) == expected


def test_peak_under_xla_cpu_max_isa_avx2_names_avx2(tmp_path):
    if "avx2" not in bench._cpu_flags():
        pytest.skip("this CPU has no AVX2 to hold XLA to")
    proc = _bench(
        tmp_path,
        "--cases=peak",
        "--peak_size=128",
        xla_flags="--xla_cpu_max_isa=AVX2",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = [json.loads(l) for l in proc.stdout.splitlines() if l.startswith("{")]
    assert line["case"] == "peak"
    assert (line["isa"], line["xla_cpu_max_isa"]) == ("AVX2", "AVX2")
    # No bfloat16 units below AVX512_BF16: only the float32 peak is measured.
    assert list(line["flops_per_s"]) == ["float32"]


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


def test_speedup_at_peak_is_the_reference_over_the_step_at_the_peak():
    # A 198.5 GFLOP step at a 74.3 GFLOP/s peak takes 2.672 s: 8.16 s of
    # CPC_audio's is 3.05 times that, whatever the step measured.
    assert bench.speedup_at_peak(8.16, 198.5e9, 74.3e9) == 3.05
    assert bench.speedup_at_peak(8.16, 198.5e9, 2 * 74.3e9) == 6.11
    assert bench.speedup_at_peak(8.16, 0.0, 74.3e9) is None  # no FLOPs counted


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
    for module in ("__init__", "feature_loader", "model"):
        (fake / "cpc" / f"{module}.py").write_text("")
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


@pytest.mark.parametrize(
    "peak, expected",
    [
        (lambda s: 1.0 + 0.25 * s, 1.0),
        (lambda s: 1.0 + 0.25 * s**2, 2.0),
        (lambda s: 1.0 + 0.25 * s**1.5, 1.5),
    ],
)
def test_growth_exponent_is_past_the_fixed_part(peak, expected):
    sizes = [4, 8, 16, 32]
    assert bench.growth_exponent(sizes, [peak(s) for s in sizes]) == pytest.approx(
        expected, abs=0.01
    )
    assert bench.growth_exponent(sizes[:2], [peak(s) for s in sizes[:2]]) is None
    assert bench.growth_exponent(sizes, [peak(s) for s in sizes[:3]] + [None]) is None


def test_memory_measures_each_size_in_a_process_of_its_own(tmp_path):
    proc = _bench(
        tmp_path,
        "--config=pre_cpc:synthetic",
        "--config.model.channels=16",
        "--batch_size=2",
        "--cases=memory",
        "--dtypes=float32",
        "--peak_size=128",
        "--memory_batch_sizes=",
        "--memory_seconds=1,2",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(l) for l in proc.stdout.splitlines() if l.startswith("{")]
    assert [l["case"] for l in lines] == ["peak", "memory", "memory", "memory_growth"]
    one, two = lines[1:3]
    assert (one["of"], one["batch"], one["window"]) == ("finetune", 2, SAMPLE_RATE)
    assert two["window"] == 2 * SAMPLE_RATE
    # Each a fresh process: its high-water mark, and the step's own part of it.
    assert 0.1 < one["peak_host_gib"] < bench._host_peak_gib() + 2
    assert 0 < one["step_host_gib"] < one["peak_host_gib"]
    # XLA's own buffers, temporaries included: they grow with the audio
    # (params and optimizer state alone would not).
    assert two["step_xla_gib"] > 1.5 * one["step_xla_gib"] > 0
    assert lines[3]["values"] == [1.0, 2.0]
    assert lines[3]["step_host_gib"] == [one["step_host_gib"], two["step_host_gib"]]
    assert lines[3]["step_xla_gib"] == [one["step_xla_gib"], two["step_xla_gib"]]
    assert lines[3]["xla_exponent"] is None  # two sizes fit no exponent


@pytest.mark.parametrize("donate, mib", [(False, 8.0), (True, 4.0)])
def test_xla_step_bytes_counts_a_donated_argument_once(donate, mib):
    import jax
    import jax.numpy as jnp

    step = jax.jit(lambda x: x + 1, donate_argnums=(0,) if donate else ())
    compiled = step.lower(jnp.zeros((1024, 1024), jnp.float32)).compile()
    assert bench.xla_step_bytes(compiled) == mib * 2**20
