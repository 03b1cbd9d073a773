"""Benchmarks: one JSON line per case, with the hardware it ran on.

  python -m cpcjax.bench                                  # paper-sized model, batch 8
  python -m cpcjax.bench --batch_size=64 --dtypes=bfloat16 --steps=20
  python -m cpcjax.bench --config=configs/pre_cpc.py:synthetic --cases=pretrain
  python -m cpcjax.bench --cases=reference --reference_dir=CPC_audio

The model measured is the one of `--config`, a config file as `cpcjax.main`
takes it (default: preCPC at the paper's size); `--config.x=y` overrides a
field. Each step case runs once per `--dtypes` entry (float32 and bfloat16 by
default). Cases: `pretrain` (a CPC step: forward, InfoNCE, backward, Adam),
`finetune` (a recognizer step with CCC loss on padded utterances) and `input`
(the CPC input pipeline alone, from the prepared synthetic corpus). Each step
case reports the median step time after warm-up, audio seconds per second,
compile time, XLA's FLOPs per step, peak device memory where the backend
reports it, peak host memory, and MFU against the device's bf16 dense peak
where known.

The `startup` case times what a run does before its first step, compiling
aside: opening a prepared corpus and making the host's first batch, on
synthetic corpora of `--startup_utterances` (1k and 20k by default) prepared
once into the config's data_dir. The prepared index holds what the samplers
need, so no audio is read before that batch and the times should not grow
with the corpus.

The `reference` case times cpcjax's float32 CPC step side by side with
facebookresearch/CPC_audio's, built by CPC_audio's own code from a checkout
you point `--reference_dir` at (it needs PyTorch; CPC_audio is not part of
cpcjax). Both get the same batch; their steps alternate, so a slower or
busier stretch of the machine weighs on both alike. It runs the harness
`benchmarks/cpc_audio.py` of a cpcjax checkout, which is not installed with
the package.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import resource
import time

from absl import app, flags
from ml_collections import config_flags

from cpcjax import cli, configs
from cpcjax.constants import SAMPLE_RATE

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    os.path.join(configs.DIRECTORY, "pre_cpc.py"),
    "Config file or shipped config name, [:corpus], whose model is measured, "
    "as cpcjax.main takes it (default: preCPC at the paper's size).",
    lock_config=False,
)
_BATCH = flags.DEFINE_integer("batch_size", 8, "Global batch of both step cases.")
_WINDOW = flags.DEFINE_integer("window", 20480, "Samples per CPC window.")
_SECONDS = flags.DEFINE_float("finetune_seconds", 4.0, "Padded utterance length.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps per case (after 2 warm-up).")
_DTYPES = flags.DEFINE_list(
    "dtypes",
    ["float32", "bfloat16"],
    "Compute dtypes to measure, each a line per step case.",
)
_CASES = flags.DEFINE_list(
    "cases",
    ["pretrain", "finetune", "input"],
    "Cases to run: pretrain, finetune, input, reference, startup.",
)
_STARTUP_UTTERANCES = flags.DEFINE_list(
    "startup_utterances",
    ["1000", "20000"],
    "startup: sizes of the synthetic corpora a run starts from, multiples of "
    "10; each is prepared once into the config's data_dir.",
)
_REFERENCE_DIR = flags.DEFINE_string(
    "reference_dir",
    None,
    "A facebookresearch/CPC_audio checkout, for --cases=reference.",
)
CASES = ("pretrain", "finetune", "input", "reference", "startup")
# startup: utterances of the synthesizer's shortest length, quick to prepare,
# ten per speaker; each size is timed this many times after a warm-up.
STARTUP_SECONDS = 0.5
STARTUP_PER_SPEAKER = 10
STARTUP_REPEATS = 5
# The CPC_audio harness sits beside the package in a checkout of cpcjax, out
# of the package's import path: it imports CPC_audio and PyTorch.
REFERENCE_HARNESS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "benchmarks",
    "cpc_audio.py",
)

# Dense bf16 peak FLOP/s per device, for MFU.
PEAK_FLOPS = {
    "H100": 989e12,
    "H200": 989e12,
    "A100": 312e12,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5": 459e12,
    "TPU v6 lite": 918e12,
}


def _peak(device_kind: str) -> float | None:
    matches = [k for k in PEAK_FLOPS if k.lower() in device_kind.lower()]
    return PEAK_FLOPS[max(matches, key=len)] if matches else None


def _host_peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def reference_harness():
    """The CPC_audio harness, `benchmarks/cpc_audio.py` of a cpcjax checkout.

    Exits with status 2 and one line where there is none (cpcjax installed
    from a package rather than run from a checkout).
    """
    if not os.path.isfile(REFERENCE_HARNESS):
        cli.fail(
            f"--cases=reference needs a checkout of cpcjax: its harness "
            f"{REFERENCE_HARNESS} is not installed with the package"
        )
    spec = importlib.util.spec_from_file_location(
        "cpcjax_benchmarks_cpc_audio", REFERENCE_HARNESS
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def time_step(step, state, batch, rng, steps: int, alongside=None) -> dict:
    """Compile time, FLOPs and the median time of `steps` calls of a jitted step.

    `alongside`, a callable, runs after each call (warm-up included) and its
    median time is returned as `alongside_s`: two steps timed in turn.
    """
    import jax
    import numpy as np

    t0 = time.perf_counter()
    compiled = step.lower(state, batch, rng).compile()
    compile_s = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost.get("flops", 0.0)) if cost else 0.0
    times, other = [], []
    for _ in range(2 + steps):  # 2 warm-up calls
        t = time.perf_counter()
        state, metrics = compiled(state, batch, rng)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t)
        if alongside is not None:
            t = time.perf_counter()
            alongside()
            other.append(time.perf_counter() - t)
    stats = jax.devices()[0].memory_stats() or {}
    timing = {
        "compile_s": round(compile_s, 3),
        "step_s": float(np.median(times[2:])),
        "flops_per_step": flops,
        "peak_device_gib": (
            round(stats["peak_bytes_in_use"] / 2**30, 3)
            if "peak_bytes_in_use" in stats
            else None
        ),
    }
    if alongside is not None:
        timing["alongside_s"] = float(np.median(other[2:]))
    return timing


def _wav(rng):
    return (0.1 * rng.standard_normal((_BATCH.value, _WINDOW.value))).astype("float32")


def _window_audio_s() -> float:
    """Seconds of audio in one batch of CPC windows."""
    return _BATCH.value * _WINDOW.value / SAMPLE_RATE


def _pretrain_inputs(programs, mesh, wav):
    """A fresh CPC train state and the global batch of `wav` (full-length rows)."""
    import jax
    import numpy as np

    from cpcjax.train import sharding
    from cpcjax.train import state as state_lib

    local = {"wav": wav, "lengths": np.full(len(wav), wav.shape[1], np.int32)}
    state = state_lib.create_state(
        programs.cpc, programs.cpc_tx, jax.random.key(0), local, mesh
    )
    return state, sharding.to_global(local, mesh)


def _reference_case(harness, mesh, rng) -> None:
    """cpcjax's float32 CPC step and CPC_audio's, alternating on one batch."""
    import jax

    from cpcjax.train.steps import Programs

    if jax.default_backend() != "cpu":
        cli.fail(
            "--cases=reference runs CPC_audio on the CPU; run it with "
            "JAX_PLATFORMS=cpu so both steps use the same hardware"
        )
    config = harness.matching_config(_CONFIG.value, _BATCH.value, _WINDOW.value)
    wav = _wav(rng)
    try:
        argv = harness.cpc_audio_args(config, _WINDOW.value)
        reference_step, info = harness.cpc_audio_step(_REFERENCE_DIR.value, argv, wav)
    except app.UsageError as e:  # no CPC_audio, PyTorch or counterpart of a field
        cli.fail(str(e))
    programs = Programs.build(config, mesh)
    state, batch = _pretrain_inputs(programs, mesh, wav)
    timing = time_step(
        programs.cpc_step,
        state,
        batch,
        jax.random.key(1),
        _STEPS.value,
        alongside=reference_step,
    )
    device = jax.devices()[0]
    ours_s, theirs_s = timing["step_s"], timing["alongside_s"]
    line = {
        "case": "reference",
        "device": device.device_kind,
        "platform": device.platform,
        "devices": jax.device_count(),
        "dtype": "float32",
        "batch": _BATCH.value,
        "window": _WINDOW.value,
        "negatives": config.model.num_negatives,
        "steps": _STEPS.value,
        "cpcjax_step_s": round(ours_s, 4),
        "reference_step_s": round(theirs_s, 4),
        "speedup": round(theirs_s / ours_s, 2),
        "cpcjax_audio_s_per_s": round(_window_audio_s() / ours_s, 2),
        "reference_audio_s_per_s": round(_window_audio_s() / theirs_s, 2),
        **info,
    }
    print(json.dumps(line), flush=True)


def _step_cases(config, mesh, rng, consumed: dict) -> None:
    """The pretrain and finetune step cases of one config (one dtype)."""
    import jax
    import numpy as np

    from cpcjax.data import pipeline
    from cpcjax.train import sharding
    from cpcjax.train import state as state_lib
    from cpcjax.train.steps import Programs

    programs = Programs.build(config, mesh)
    device = jax.devices()[0]
    common = {
        "device": device.device_kind,
        "platform": device.platform,
        "devices": jax.device_count(),
        "dtype": config.dtype,
        "channels": config.model.channels,
        "batch": _BATCH.value,
    }

    def report(case: str, audio_seconds: float, timing: dict, **extra) -> None:
        peak = _peak(device.device_kind)
        flops_s = timing["flops_per_step"] / timing["step_s"]
        line = {
            "case": case,
            **common,
            **extra,
            **timing,
            "audio_s_per_s": round(audio_seconds / timing["step_s"], 2),
            "tflops_per_s": round(flops_s / 1e12, 4),
            "mfu": round(flops_s / (peak * jax.device_count()), 4) if peak else None,
            "peak_host_gib": round(_host_peak_gib(), 3),
        }
        # The input pipeline must keep up with the fastest step measured.
        consumed[case] = max(consumed.get(case, 0.0), line["audio_s_per_s"])
        print(json.dumps(line), flush=True)

    if "pretrain" in _CASES.value:
        state, batch = _pretrain_inputs(programs, mesh, _wav(rng))
        timing = time_step(
            programs.cpc_step, state, batch, jax.random.key(1), _STEPS.value
        )
        report(
            "pretrain",
            _window_audio_s(),
            timing,
            window=_WINDOW.value,
            negatives=config.model.num_negatives,
        )
    if "finetune" in _CASES.value:
        length = pipeline.bucket_lengths([_SECONDS.value])[0]
        local = {
            "wav": (0.1 * rng.standard_normal((_BATCH.value, length))).astype(
                np.float32
            ),
            "lengths": np.full(_BATCH.value, length, np.int32),
            "targets": rng.standard_normal((_BATCH.value, 3)).astype(np.float32),
            "weights": np.ones(_BATCH.value, np.float32),
        }
        state = state_lib.create_state(
            programs.emotion, programs.emotion_tx, jax.random.key(0), local, mesh
        )
        timing = time_step(
            programs.emotion_step,
            state,
            sharding.to_global(local, mesh),
            jax.random.key(1),
            _STEPS.value,
        )
        report("finetune", _BATCH.value * length / SAMPLE_RATE, timing, window=length)


def _input_case(data_dir: str, consumed: dict) -> None:
    """The CPC input pipeline alone, on the prepared synthetic unlabeled corpus."""
    import jax

    from cpcjax import config as config_lib
    from cpcjax.data import pipeline, sources
    from cpcjax.train import sharding

    synthetic = config_lib.load("pre_cpc:synthetic")
    synthetic.data_dir = data_dir
    utts = sources.unlabeled_corpus(synthetic)
    batches = pipeline.CropBatches(
        utts, _WINDOW.value, _BATCH.value, 0, sharding.process_rows(_BATCH.value)
    )
    batches.batch(0)
    n = max(_STEPS.value, 20)
    t = time.perf_counter()
    for step in range(n):
        batches.batch(step)
    per_batch = (time.perf_counter() - t) / n
    delivered = _window_audio_s() / per_batch
    device = jax.devices()[0]
    line = {
        "case": "input",
        "device": device.device_kind,
        "platform": device.platform,
        "devices": jax.device_count(),
        "batch": _BATCH.value,
        "window": _WINDOW.value,
        "batch_s": per_batch,
        "audio_s_per_s": round(delivered, 1),
        "vs_pretrain_step": (
            round(delivered / consumed["pretrain"], 2)
            if "pretrain" in consumed
            else None
        ),
        "peak_host_gib": round(_host_peak_gib(), 3),
    }
    print(json.dumps(line), flush=True)


def _startup_sizes() -> list[int]:
    """--startup_utterances as numbers; exits in one line on a bad one."""
    try:
        sizes = [int(n) for n in _STARTUP_UTTERANCES.value]
    except ValueError:
        sizes = []
    if not sizes or any(n <= 0 or n % STARTUP_PER_SPEAKER for n in sizes):
        cli.fail(
            f"--startup_utterances: {','.join(_STARTUP_UTTERANCES.value)!r}: give "
            f"positive multiples of {STARTUP_PER_SPEAKER}, e.g. 1000,20000"
        )
    return sizes


def _cpu_name() -> str:
    """The host CPU's model name (as `lscpu` shows it), or its architecture."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _startup_case(data_dir: str) -> None:
    """Time from start to the host's first batch, on synthetic corpora of each size.

    What a run does before its first step, compiling aside: open the prepared
    dataset (builder, index, random-access source), then make this host's
    share of the first batch of CPC crops. Each corpus is prepared once into
    `data_dir` and reused by later runs; `prepare_s` is its preparation time,
    or null where it was prepared already. The sizes are timed in turn,
    STARTUP_REPEATS times after a warm-up round (imports, first file opens),
    and each reports its median; `ratio` is the largest size's over the
    smallest's.
    """
    import jax
    import numpy as np

    from cpcjax.data import index, pipeline
    from cpcjax.data.corpora import synthetic
    from cpcjax.train import sharding

    sizes = _startup_sizes()
    window = round(STARTUP_SECONDS * SAMPLE_RATE)
    rows = sharding.process_rows(_BATCH.value)
    corpora = {
        n: synthetic.SyntheticSpeechConfig(
            name=f"startup_{n}",
            part="unlabeled",
            num_speakers=n // STARTUP_PER_SPEAKER,
            utterances_per_speaker=STARTUP_PER_SPEAKER,
            min_seconds=STARTUP_SECONDS,
            max_seconds=STARTUP_SECONDS,
        )
        for n in sizes
    }
    prepare_s = {}
    for n, corpus in corpora.items():
        prepare_s[n] = None
        if not synthetic.SyntheticSpeech(
            config=corpus, data_dir=data_dir
        ).is_prepared():
            t = time.perf_counter()
            synthetic.load_synthetic(corpus, data_dir)
            prepare_s[n] = round(time.perf_counter() - t, 2)

    def start(corpus) -> float:
        t = time.perf_counter()
        builder = synthetic.load_synthetic(corpus, data_dir)
        utts = index.utterances(builder, ["train"], labeled=False, desc=corpus.name)
        pipeline.CropBatches(utts, window, _BATCH.value, 0, rows).batch(0)
        return time.perf_counter() - t

    times = {n: [] for n in sizes}
    for repeat in range(1 + STARTUP_REPEATS):
        for n, corpus in corpora.items():
            took = start(corpus)
            if repeat:
                times[n].append(took)
    startup_s = [float(np.median(times[n])) for n in sizes]
    smallest, largest = sizes.index(min(sizes)), sizes.index(max(sizes))
    line = {
        "case": "startup",
        "cpu": _cpu_name(),
        "platform": jax.devices()[0].platform,
        "batch": _BATCH.value,
        "window": window,
        "utterance_s": STARTUP_SECONDS,
        "utterances": sizes,
        "startup_s": [round(s, 4) for s in startup_s],
        "prepare_s": [prepare_s[n] for n in sizes],
        "ratio": round(startup_s[largest] / startup_s[smallest], 3),
        "repeats": STARTUP_REPEATS,
        "peak_host_gib": round(_host_peak_gib(), 3),
    }
    print(json.dumps(line), flush=True)


def main(argv) -> None:
    if len(argv) > 1:
        cli.fail(f"unexpected arguments {' '.join(argv[1:])!r} (see --help)")
    import numpy as np

    from cpcjax import config as config_lib
    from cpcjax.train import sharding

    unknown = [c for c in _CASES.value if c not in CASES]
    if unknown:
        cli.fail(f"--cases: {', '.join(unknown)} unknown; use {', '.join(CASES)}")
    if "startup" in _CASES.value:
        _startup_sizes()
    harness = None
    if "reference" in _CASES.value:
        if not _REFERENCE_DIR.value:
            cli.fail(
                "--cases=reference needs --reference_dir=PATH, a "
                "facebookresearch/CPC_audio checkout "
                "(git clone https://github.com/facebookresearch/CPC_audio)"
            )
        harness = reference_harness()
    for dtype in _DTYPES.value:
        if dtype not in config_lib.DTYPES:
            cli.fail(f"--dtypes: {dtype!r} is not one of {config_lib.DTYPES}")
    mesh = sharding.make_mesh()
    sharding.check_batch_size(_BATCH.value, "batch_size")
    rng = np.random.default_rng(0)
    consumed = {}
    for dtype in _DTYPES.value:
        config = copy.deepcopy(_CONFIG.value)
        config.dtype = dtype
        config.pretrain.batch_size = config.finetune.batch_size = _BATCH.value
        config.pretrain.window = _WINDOW.value
        config.model.negatives_group_size = min(
            config.model.negatives_group_size, _BATCH.value
        )
        config_lib.validate(config)
        _step_cases(config, mesh, rng, consumed)
    if harness is not None:
        _reference_case(harness, mesh, rng)
    if "input" in _CASES.value:
        _input_case(_CONFIG.value.data_dir, consumed)
    if "startup" in _CASES.value:
        from cpcjax.data import sources

        _startup_case(sources.data_dir(_CONFIG.value))


if __name__ == "__main__":
    cli.run(main, doc=__doc__, prepare_argv=cli.resolve_config_flag)
