"""Benchmarks: one JSON line per case, with the hardware it ran on.

  python -m cpcjax.bench                                  # paper-sized model, batch 8
  python -m cpcjax.bench --batch_size=64 --dtypes=bfloat16 --steps=20
  python -m cpcjax.bench --config=configs/pre_cpc.py:synthetic --cases=pretrain
  python -m cpcjax.bench --cases=reference --reference_dir=CPC_audio
  XLA_FLAGS=--xla_cpu_max_isa=AVX2 python -m cpcjax.bench --cases=peak,pretrain

The model measured is the one of `--config`, a config file as `cpcjax.main`
takes it (default: preCPC at the paper's size); `--config.x=y` overrides a
field. Each step case runs once per `--dtypes` entry (float32 and bfloat16 by
default). Cases: `pretrain` (a CPC step: forward, InfoNCE, backward, Adam),
`finetune` (a recognizer step with CCC loss on padded utterances), `predict`
(`cpcjax.predict`'s path from wav files on disk to predictions) and `input`
(the CPC input pipeline alone, from the prepared synthetic corpus). Each step
case reports the median step time after warm-up, audio seconds per second,
compile time, XLA's FLOPs per step, peak device memory where the backend
reports it, peak host memory, and MFU.

MFU is against the machine's own peak, measured first (the `peak` line): the
best of several jitted --peak_size^3 matmuls, in float32 and, where the
device has it natively, bfloat16. On a CPU the line names the CPU and the
instruction set XLA targets (`isa`: AVX2, AVX512...; XLA_FLAGS=
--xla_cpu_max_isa=AVX2 holds an AVX-512 machine to AVX2), so `mfu` is never
null. The step and predict cases also run those matmuls in turn with their
timed calls: `mfu` is against the best matmul of the peak line and of
these (`peak_from` says which). The step cases' `mfu_between_steps` is
against the median of these, which met the same load from other processes
as the median step (on a shared machine that load moves minute to minute).
On an accelerator whose datasheet PEAK_FLOPS knows, `mfu_datasheet` is
against that beside it. Each line says which peak `mfu` is against.

`predict` times a freshly initialised model of the config (no training
needed) on --predict_files generated files of 4-8 s at mixed sample rates,
end to end: audio seconds per second, with the decoding thread pool and
without, and as a fraction of what the measured peak allows for the model's
forward FLOPs.

The `startup` case times what a run does before its first step, compiling
aside: opening a prepared corpus and making the host's first batch, on
synthetic corpora of `--startup_utterances` (1k and 20k by default) prepared
once into the config's data_dir. The prepared index holds what the samplers
need, so no audio is read before that batch and the times should not grow
with the corpus.

The `memory` case measures each step's peak memory in a process of its own
(a process' high-water mark would hide a later case's own use under an
earlier one's): pretrain and finetune at each --memory_batch_sizes, finetune
at each --memory_seconds, one line each. `step_host_gib` (every step line
has it, on Linux) is what the step's compile and calls added at their peak
over what the process held before; `step_xla_gib` is the step's buffers as
XLA assigned them (arguments, outputs, temporaries), which no allocator
floor hides. Then a `memory_growth` line per series whose `host_exponent`
and `xla_exponent` are 1.0 where those grow linearly with the size (past
their fixed part), 2.0 where quadratically.

The `reference` case times cpcjax's float32 CPC step side by side with
facebookresearch/CPC_audio's, built by CPC_audio's own code from a checkout
you point `--reference_dir` at (it needs PyTorch; CPC_audio is not part of
cpcjax). Both get the same batch; their steps alternate, so a slower or
busier stretch of the machine weighs on both alike. Beside the measured
`speedup`, `speedup_at_peak` is what it would be were cpcjax's step (XLA's
FLOPs) to run at the measured float32 matmul peak (the `peak` line, measured
first): on a CPU whose peak is low for CPC_audio's step time, no
formulation of the same work gets far past it. It runs the harness
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
    ["peak", "pretrain", "finetune", "predict", "input"],
    "Cases to run: peak, pretrain, finetune, predict, input, memory, reference, "
    "startup.",
)
_PEAK_SIZE = flags.DEFINE_integer(
    "peak_size",
    None,
    "Side of the square matmuls that measure the peak (default 2048 on a CPU, "
    "8192 on an accelerator).",
)
_PREDICT_FILES = flags.DEFINE_integer(
    "predict_files", 64, "predict: wav files generated, 4-8 s each."
)
_STARTUP_UTTERANCES = flags.DEFINE_list(
    "startup_utterances",
    ["1000", "20000"],
    "startup: sizes of the synthetic corpora a run starts from, multiples of "
    "10; each is prepared once into the config's data_dir.",
)
_STARTUP_REPEATS = flags.DEFINE_integer(
    "startup_repeats", 3, "startup: timed starts of each size (each best kept)."
)
_MEMORY_BATCHES = flags.DEFINE_list(
    "memory_batch_sizes",
    ["4", "8", "16"],
    "memory: global batch sizes of the pretrain and finetune steps, each "
    "measured in a process of its own.",
)
_MEMORY_SECONDS = flags.DEFINE_list(
    "memory_seconds",
    ["2", "4", "8", "16"],
    "memory: padded utterance lengths of the finetune step, at --batch_size, "
    "each measured in a process of its own.",
)
_PEAK_JSON = flags.DEFINE_string(
    "peak_json",
    None,
    "The peak line to measure MFU against, instead of measuring it (the "
    "memory case passes its own to the processes it starts).",
)
_REFERENCE_DIR = flags.DEFINE_string(
    "reference_dir",
    None,
    "A facebookresearch/CPC_audio checkout, for --cases=reference.",
)
CASES = (
    "peak",
    "pretrain",
    "finetune",
    "predict",
    "input",
    "memory",
    "reference",
    "startup",
)
# Cases whose lines give an MFU: the peak is measured before them.
MFU_CASES = ("peak", "pretrain", "finetune", "predict", "memory", "reference")
# memory: flags a measuring process inherits from this one (the model, its
# sizes); the rest it is given.
MEMORY_INHERITED = ("--config", "--window", "--finetune_seconds", "--batch_size")
# The peak is the best of this many matmuls after a warm-up one.
PEAK_REPEATS = 5
# ISA levels XLA's --xla_cpu_max_isa names on x86, oldest first, and the
# /proc/cpuinfo flag that says a CPU has each.
X86_ISA_LEVELS = (
    ("SSE4_2", "sse4_2"),
    ("AVX", "avx"),
    ("AVX2", "avx2"),
    ("AVX512", "avx512f"),
    ("AVX512_VNNI", "avx512_vnni"),
    ("AVX512_BF16", "avx512_bf16"),
    ("AMX", "amx_bf16"),
    ("AMX_FP16", "amx_fp16"),
)
ARM_ISA_LEVELS = (("NEON", "asimd"), ("SVE", "sve"), ("SVE2", "sve2"))
# predict: the files' sample rates, in turn; each file is resampled to 16 kHz.
PREDICT_RATES = (16000, 22050, 44100, 48000)
PREDICT_SECONDS = (4.0, 8.0)
# predict: timed passes over the files with the decoding pool and without.
PREDICT_REPEATS = 2
# startup: utterances of the synthesizer's shortest length, quick to
# prepare, ten per speaker.
STARTUP_SECONDS = 0.5
STARTUP_PER_SPEAKER = 10
# The CPC_audio harness sits beside the package in a checkout of cpcjax, out
# of the package's import path: it imports CPC_audio and PyTorch.
REFERENCE_HARNESS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "benchmarks",
    "cpc_audio.py",
)

# Dense bf16 peak FLOP/s per device from the datasheets, for mfu_datasheet.
PEAK_FLOPS = {
    "H100": 989e12,
    "H200": 989e12,
    "A100": 312e12,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5": 459e12,
    "TPU v6 lite": 918e12,
}


def _datasheet_peak(device_kind: str) -> float | None:
    matches = [k for k in PEAK_FLOPS if k.lower() in device_kind.lower()]
    return PEAK_FLOPS[max(matches, key=len)] if matches else None


def _cpu_flags() -> set[str]:
    """The feature flags of /proc/cpuinfo (x86 "flags", Arm "Features")."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def isa(cpu_flags: set[str] | None = None, xla_flags: str | None = None) -> dict:
    """The instruction set XLA targets on this CPU.

    That is the newest level the CPU has, held down to `--xla_cpu_max_isa`
    where XLA_FLAGS sets it.

    Args:
      cpu_flags: /proc/cpuinfo's flags; read from there when None.
      xla_flags: the XLA_FLAGS value; read from the environment when None.

    Returns:
      {"isa": the family ("AVX2", "AVX512", "AMX", "NEON", "SVE"...),
      "isa_level": XLA's name of the level ("AVX512_BF16"...),
      "xla_cpu_max_isa": the flag's value or None}; the first two None where
      the CPU is neither x86 nor Arm.
    """
    import re

    cpu_flags = _cpu_flags() if cpu_flags is None else cpu_flags
    xla_flags = os.environ.get("XLA_FLAGS", "") if xla_flags is None else xla_flags
    limits = re.findall(r"--xla_cpu_max_isa=(\w+)", xla_flags)
    limit = limits[-1].upper() if limits else None
    levels = ARM_ISA_LEVELS if "asimd" in cpu_flags else X86_ISA_LEVELS
    names = [name for name, _ in levels]
    have = 0  # levels the CPU has, each with all those before it
    for _, flag in levels:
        if flag not in cpu_flags:
            break
        have += 1
    if limit in names:
        have = min(have, names.index(limit) + 1)
    level = names[have - 1] if have else None
    family = level
    for prefix in ("AVX512", "AMX", "SVE"):
        if level and level.startswith(prefix):
            family = prefix
    return {"isa": family, "isa_level": level, "xla_cpu_max_isa": limit}


def _has_bf16(platform: str, isa_level: str | None) -> bool:
    """Whether the device multiplies bfloat16 natively (XLA CPU emulates it
    with float32 arithmetic below AVX512_BF16)."""
    if platform != "cpu":
        return True
    names = [name for name, _ in X86_ISA_LEVELS]
    return isa_level in names and names.index(isa_level) >= names.index("AVX512_BF16")


def _matmul_timers(size: int, dtypes: list[str]) -> dict:
    """{dtype: a callable that runs one jitted size^3 matmul of that dtype,
    compiled and warmed up already, and returns the seconds it took}."""
    import jax
    import jax.numpy as jnp

    matmul = jax.jit(jnp.matmul)
    timers = {}
    for dtype in dtypes:
        a, b = (
            jax.random.normal(jax.random.key(i), (size, size), dtype) for i in (0, 1)
        )
        jax.block_until_ready(matmul(a, b))

        def timed(a=a, b=b) -> float:
            t = time.perf_counter()
            jax.block_until_ready(matmul(a, b))
            return time.perf_counter() - t

        timers[dtype] = timed
    return timers


class PeakBetweenSteps:
    """The peak line's matmuls again, in turn with a case's timed calls.

    On a shared host the peak measured first and a step timed minutes later
    meet different loads from other processes. Timed in turn with the step,
    these matmuls meet the same load as the step's median, so the two make
    a steadier ratio (`time_step`'s `alongside`); and their best raises the
    peak where the peak line met a busy moment. After each call, the better
    of two matmuls of each dtype: the first may pay for caches and threads
    the step left cold.
    """

    def __init__(self, peak: dict):
        self._size = peak["size"]
        self._timers = _matmul_timers(self._size, list(peak["flops_per_s"]))
        self._seconds = {dtype: [] for dtype in self._timers}

    def __call__(self) -> None:
        for dtype, timed in self._timers.items():
            self._seconds[dtype].append(min(timed(), timed()))

    def rates(self) -> dict:
        """{"median": {dtype: FLOP/s}, "best": {dtype: FLOP/s}} on one device,
        over the calls so far."""
        import numpy as np

        flops = 2 * self._size**3
        return {
            "median": {
                d: flops / float(np.median(s)) for d, s in self._seconds.items()
            },
            "best": {d: flops / min(s) for d, s in self._seconds.items()},
        }


def measure_peak(size: int | None = None, repeats: int = PEAK_REPEATS) -> dict:
    """The device's measured peak: the best of `repeats` jitted size^3 matmuls.

    float32, and bfloat16 where the device has it natively. The peak line
    also names the CPU and the ISA XLA targets, and the datasheet peak of an
    accelerator where PEAK_FLOPS knows it.

    Returns:
      The line printed for the peak case; "flops_per_s" maps each dtype
      measured to its FLOP/s on one device.
    """
    import jax

    device = jax.devices()[0]
    target = isa() if device.platform == "cpu" else {}
    size = size or (2048 if device.platform == "cpu" else 8192)
    dtypes = ["float32"]
    if _has_bf16(device.platform, target.get("isa_level")):
        dtypes.append("bfloat16")
    flops_per_s = {
        dtype: 2 * size**3 / min(timed() for _ in range(repeats))
        for dtype, timed in _matmul_timers(size, dtypes).items()
    }
    datasheet = _datasheet_peak(device.device_kind)
    return {
        "case": "peak",
        "device": device.device_kind,
        "platform": device.platform,
        "devices": jax.device_count(),
        "cpu": _cpu_name(),
        **target,
        "size": size,
        "repeats": repeats,
        "flops_per_s": flops_per_s,
        "tflops_per_s": {k: round(v / 1e12, 4) for k, v in flops_per_s.items()},
        "datasheet_tflops_per_s": datasheet / 1e12 if datasheet else None,
    }


def mfu_fields(
    flops_s: float, dtype: str, peak: dict, between: dict | None = None
) -> dict:
    """A case's FLOP rate against the measured peak and the datasheet's.

    `mfu` is against the best measured rate of the case's dtype: the peak
    line's, or the best of `between` (`PeakBetweenSteps.rates`) where that
    is higher (`peak_from` says which). A bfloat16 case is held to the
    better of the bfloat16 and float32 peaks, since its matmuls could run in
    float32. Given `between` with a median, `mfu_between_steps` is against
    that, the same way. A CPU's devices share the host's cores, so its peak counts
    once per process; an accelerator's once per device. `mfu_datasheet` is
    against PEAK_FLOPS, null where unknown (CPUs).
    """
    import jax

    cpu = peak["platform"] == "cpu"
    scale = jax.process_count() if cpu else jax.device_count()

    def total(rates: dict) -> tuple[float, str]:
        name = max(rates, key=rates.get) if dtype == "bfloat16" else "float32"
        return rates[name] * scale, name

    line = peak["flops_per_s"]
    best = dict(line)
    if between:
        best = {d: max(rate, between["best"].get(d, 0.0)) for d, rate in line.items()}
    best_total, best_dtype = total(best)
    fields = {
        "mfu": round(flops_s / best_total, 4),
        "mfu_against": f"measured {best_dtype} matmul peak",
        "peak_tflops_per_s": round(best_total / 1e12, 4),
        "peak_from": (
            "peak line" if best[best_dtype] == line[best_dtype] else "between the steps"
        ),
    }
    if between and "median" in between:
        median_total, _ = total(between["median"])
        fields["mfu_between_steps"] = round(flops_s / median_total, 4)
        fields["between_steps_tflops_per_s"] = round(median_total / 1e12, 4)
    datasheet = peak["datasheet_tflops_per_s"]
    fields["mfu_datasheet"] = (
        round(flops_s / (datasheet * 1e12 * jax.device_count()), 4)
        if datasheet
        else None
    )
    return fields


def speedup_at_peak(reference_s: float, flops: float, peak_flops_s: float):
    """How many times `reference_s` a step of `flops` would take at `peak_flops_s`.

    The most a step of that much work could be faster than the reference on
    this machine, its matmuls at their best; None without FLOPs to go by.
    """
    if not flops:
        return None
    return round(reference_s * peak_flops_s / flops, 2)


def _host_peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _proc_status_gib(field: str) -> float | None:
    """A memory field of /proc/self/status (VmRSS, VmHWM) in GiB; None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 2**20  # kB
    except OSError:
        pass
    return None


def _reset_host_peak() -> float | None:
    """Resets this process' resident-memory high-water mark (VmHWM, through
    /proc/self/clear_refs) and returns its resident memory now, in GiB; None
    where the kernel offers neither."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    return _proc_status_gib("VmRSS")


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

    before = _reset_host_peak()
    t0 = time.perf_counter()
    compiled = step.lower(state, batch, rng).compile()
    compile_s = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost.get("flops", 0.0)) if cost else 0.0
    xla_bytes = xla_step_bytes(compiled)
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
    after = _proc_status_gib("VmHWM")
    timing = {
        "compile_s": round(compile_s, 3),
        "step_s": float(np.median(times[2:])),
        "flops_per_step": flops,
        "peak_device_gib": (
            round(stats["peak_bytes_in_use"] / 2**30, 3)
            if "peak_bytes_in_use" in stats
            else None
        ),
        # Host memory the step's compile and calls added at their peak, over
        # what the process held before (Linux; null elsewhere).
        "step_host_gib": (
            round(after - before, 3) if before is not None and after else None
        ),
        # The step's own buffers as XLA assigned them: no allocator in between.
        "step_xla_gib": round(xla_bytes / 2**30, 4) if xla_bytes else None,
    }
    if alongside is not None:
        timing["alongside_s"] = float(np.median(other[2:]))
    return timing


def xla_step_bytes(compiled) -> int | None:
    """A compiled program's buffers by XLA's own buffer assignment: its
    arguments and outputs (donated ones counted once) and the block its
    temporaries are packed into; None where the backend does not say.

    No allocator stands between these and the program, so unlike the host's
    high-water mark they carry no floor of memory the process already held.
    """
    try:
        stats = compiled.memory_analysis()
    except Exception:  # not every backend implements it
        return None
    if stats is None:
        return None
    total = (
        stats.argument_size_in_bytes
        + stats.output_size_in_bytes
        + stats.temp_size_in_bytes
        - stats.alias_size_in_bytes
    )
    return int(total) or None


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


def _reference_case(harness, mesh, rng, peak: dict) -> None:
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
    flops = timing["flops_per_step"]
    rate = mfu_fields(flops / ours_s, "float32", peak)
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
        "speedup_at_peak": speedup_at_peak(
            theirs_s, flops, rate["peak_tflops_per_s"] * 1e12
        ),
        "cpcjax_audio_s_per_s": round(_window_audio_s() / ours_s, 2),
        "reference_audio_s_per_s": round(_window_audio_s() / theirs_s, 2),
        "cpcjax_flops_per_step": flops,
        "cpcjax_mfu": rate["mfu"],
        "mfu_against": rate["mfu_against"],
        "peak_tflops_per_s": rate["peak_tflops_per_s"],
        **info,
    }
    print(json.dumps(line), flush=True)


def _step_cases(config, mesh, rng, consumed: dict, peak: dict) -> None:
    """The pretrain, finetune and predict cases of one config (one dtype)."""
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

    def probe() -> PeakBetweenSteps | None:
        # Not where --peak_json gave the peak (a memory case's process,
        # where the matmuls' buffers would count in the step's memory).
        return None if _PEAK_JSON.value else PeakBetweenSteps(peak)

    def report(
        case: str, audio_seconds: float, timing: dict, between=None, **extra
    ) -> None:
        flops_s = timing["flops_per_step"] / timing["step_s"]
        timing = {k: v for k, v in timing.items() if k != "alongside_s"}
        line = {
            "case": case,
            **common,
            **extra,
            **timing,
            "audio_s_per_s": round(audio_seconds / timing["step_s"], 2),
            "tflops_per_s": round(flops_s / 1e12, 4),
            **mfu_fields(flops_s, config.dtype, peak, between and between.rates()),
            "peak_host_gib": round(_host_peak_gib(), 3),
        }
        # The input pipeline must keep up with the fastest step measured.
        consumed[case] = max(consumed.get(case, 0.0), line["audio_s_per_s"])
        print(json.dumps(line), flush=True)

    if "pretrain" in _CASES.value:
        state, batch = _pretrain_inputs(programs, mesh, _wav(rng))
        between = probe()
        timing = time_step(
            programs.cpc_step,
            state,
            batch,
            jax.random.key(1),
            _STEPS.value,
            alongside=between,
        )
        report(
            "pretrain",
            _window_audio_s(),
            timing,
            between,
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
        between = probe()
        timing = time_step(
            programs.emotion_step,
            state,
            sharding.to_global(local, mesh),
            jax.random.key(1),
            _STEPS.value,
            alongside=between,
        )
        report(
            "finetune",
            _BATCH.value * length / SAMPLE_RATE,
            timing,
            between,
            window=length,
        )
    if "predict" in _CASES.value:
        _predict_case(config, programs, mesh, rng, common, peak, probe())


def _memory_line(flags_: list[str], peak: dict) -> dict:
    """The step line of a fresh `python -m cpcjax.bench` process run with
    `flags_`: its peak host memory is that step's alone."""
    import subprocess
    import sys

    given = {f.split("=", 1)[0] for f in flags_}
    inherited = [
        a
        for a in sys.argv[1:]
        if a.split("=", 1)[0].startswith(MEMORY_INHERITED)
        and a.split("=", 1)[0] not in given
    ]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cpcjax.bench",
            *inherited,
            *flags_,
            "--steps=1",
            f"--peak_json={json.dumps(peak)}",
        ],
        capture_output=True,
        text=True,
    )
    lines = [json.loads(l) for l in proc.stdout.splitlines() if l.startswith("{")]
    if proc.returncode or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        cli.fail(f"memory: python -m cpcjax.bench {' '.join(flags_)} failed: {tail}")
    return lines[-1]


def growth_exponent(sizes: list[float], peaks: list[float]) -> float | None:
    """How a peak grows with a size, past a fixed part: the exponent e of
    peak(s) = fixed + a s^e fitted to the first, second and last sizes, 1.0
    for linear growth, 2.0 for quadratic; None with fewer than three sizes,
    a peak not measured (None), or no growth.
    """
    if len(sizes) < 3 or None in peaks:
        return None
    first = peaks[1] - peaks[0]
    last = peaks[-1] - peaks[0]
    if first <= 0 or last <= 0:
        return None
    # increment(s) = a (s^e - s0^e): solve for e by bisection.
    s0, s1, sn = sizes[0], sizes[1], sizes[-1]
    ratio = last / first

    def excess(e: float) -> float:
        return (sn**e - s0**e) / (s1**e - s0**e) - ratio

    lo, hi = 0.05, 4.0
    if excess(lo) > 0 or excess(hi) < 0:
        return None
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if excess(mid) < 0 else (lo, mid)
    return round((lo + hi) / 2, 2)


def _memory_case(dtype: str, peak: dict) -> None:
    """Peak host (and device) memory of the pretrain and finetune steps at each
    --memory_batch_sizes, and of finetune at each --memory_seconds: one line
    each, every one measured in a process of its own, then one line per
    series with the growth exponent of its peaks (1 = linear)."""
    series = [
        ("pretrain", "batch", [int(b) for b in _MEMORY_BATCHES.value]),
        ("finetune", "batch", [int(b) for b in _MEMORY_BATCHES.value]),
        ("finetune", "seconds", [float(s) for s in _MEMORY_SECONDS.value]),
    ]
    for case, knob, values in series:
        if not values:
            continue
        host, device, xla = [], [], []
        for value in values:
            flag = (
                f"--batch_size={value}"
                if knob == "batch"
                else f"--finetune_seconds={value}"
            )
            line = _memory_line([f"--cases={case}", f"--dtypes={dtype}", flag], peak)
            host.append(line["step_host_gib"] or line["peak_host_gib"])
            device.append(line["peak_device_gib"])
            xla.append(line["step_xla_gib"])
            print(
                json.dumps(
                    {
                        "case": "memory",
                        "of": case,
                        "dtype": dtype,
                        "batch": line["batch"],
                        "window": line["window"],
                        "peak_host_gib": line["peak_host_gib"],
                        "step_host_gib": line["step_host_gib"],
                        "step_xla_gib": line["step_xla_gib"],
                        "peak_device_gib": line["peak_device_gib"],
                        "step_s": round(line["step_s"], 4),
                    }
                ),
                flush=True,
            )
        print(
            json.dumps(
                {
                    "case": "memory_growth",
                    "of": case,
                    "dtype": dtype,
                    "over": knob,
                    "values": values,
                    "step_host_gib": host,
                    "host_exponent": growth_exponent(values, host),
                    "step_xla_gib": xla,
                    "xla_exponent": growth_exponent(values, xla),
                    "peak_device_gib": device,
                    "device_exponent": growth_exponent(values, device),
                }
            ),
            flush=True,
        )


def _write_predict_files(folder: str, rng) -> float:
    """--predict_files wav files of PREDICT_SECONDS at PREDICT_RATES in turn;
    returns their seconds of audio."""
    import numpy as np
    import soundfile as sf

    seconds = 0.0
    for i in range(_PREDICT_FILES.value):
        rate = PREDICT_RATES[i % len(PREDICT_RATES)]
        length = rng.uniform(*PREDICT_SECONDS)
        wav = 0.1 * rng.standard_normal(round(length * rate))
        sf.write(os.path.join(folder, f"{i:04d}.wav"), wav.astype(np.float32), rate)
        seconds += round(length * rate) / rate
    return seconds


def _predict_case(
    config, programs, mesh, rng, common: dict, peak: dict, between=None
) -> None:
    """Prediction from wav files on disk, end to end, at the config's size.

    A freshly initialised emotion model (its numbers are not the point)
    predicts --predict_files files of 4-8 s at mixed rates, as
    `cpcjax.predict` does: decoding and resampling on a thread pool, batches
    of the config's eval_batch_size. Passes with the pool (`audio_s_per_s`)
    and with each file decoded in turn (`serial_audio_s_per_s`) alternate,
    PREDICT_REPEATS each after a warm-up pass that compiles; each reports its
    best. `peak_audio_s_per_s` is what the measured peak allows for the
    model's forward FLOPs, XLA's count for each batch the pass runs, and
    `peak_fraction` the share of it reached (the pass's MFU);
    `audio_flops_fraction` is the share of those FLOPs that falls on audio
    rather than on the padding of the length buckets; `model_s` is the time
    spent in the model's calls. `between`, a `PeakBetweenSteps`, runs after
    each timed pass.
    """
    import tempfile

    import jax
    import numpy as np

    from cpcjax import inference
    from cpcjax.data import pipeline
    from cpcjax.train import state as state_lib

    buckets = pipeline.bucket_lengths(config.finetune.buckets)
    example = {
        "wav": jax.ShapeDtypeStruct((_BATCH.value, buckets[0]), np.float32),
        "lengths": jax.ShapeDtypeStruct((_BATCH.value,), np.int32),
    }
    state = state_lib.create_state(
        programs.emotion, programs.emotion_tx, jax.random.key(0), example, mesh
    )
    devices = mesh.devices.size
    predictor = inference.Predictor(
        info={},
        label_scale={
            "corpus": None,
            "range": None,
            "mean": [0.0] * 3,
            "std": [1.0] * 3,
        },
        model=programs.emotion,
        params=state.params,
        mesh=mesh,
        buckets=buckets,
        batch_size=-(-config.finetune.eval_batch_size // devices) * devices,
    )
    jitted = predictor._predict
    # Per model call of the warm-up pass: wav shape and samples of audio.
    calls: list[tuple[tuple, int]] = []
    model_s = [0.0]

    def timed_predict(params, batch):
        t = time.perf_counter()
        out = jax.block_until_ready(jitted(params, batch))
        model_s[0] += time.perf_counter() - t
        if not timing:
            calls.append((batch["wav"].shape, int(np.asarray(batch["lengths"]).sum())))
        return out

    timing = False

    predictor.__dict__["_predict"] = timed_predict  # the cached_property's slot
    with tempfile.TemporaryDirectory() as folder:
        audio_s = _write_predict_files(folder, rng)
        t = time.perf_counter()
        rows, errors = predictor.predict_files([folder])
        warmup_s = time.perf_counter() - t
        if errors or len(rows) != _PREDICT_FILES.value:
            raise RuntimeError(f"predict: {len(errors)} of the generated files failed")
        timing = True
        best = {"pool": (float("inf"), 0.0), "serial": (float("inf"), 0.0)}
        for _ in range(PREDICT_REPEATS):
            for name, workers in (("serial", 0), ("pool", None)):
                model_s[0] = 0.0
                t = time.perf_counter()
                predictor.predict_files([folder], workers=workers)
                took = time.perf_counter() - t
                best[name] = min(best[name], (took, model_s[0]))
                if between is not None:
                    between()
    flops = {}  # XLA's FLOPs of one call at each wav shape
    for shape, _ in calls:
        if shape not in flops:
            batch_struct = {
                "wav": jax.ShapeDtypeStruct(shape, np.float32),
                "lengths": jax.ShapeDtypeStruct(shape[:1], np.int32),
                "weights": jax.ShapeDtypeStruct(shape[:1], np.float32),
            }
            cost = jitted.lower(state.params, batch_struct).compile().cost_analysis()
            cost = cost[0] if isinstance(cost, (list, tuple)) else cost
            flops[shape] = float(cost.get("flops", 0.0)) if cost else 0.0
    executed = sum(flops[shape] for shape, _ in calls)
    needed = sum(
        flops[shape] * samples / (shape[0] * shape[1]) for shape, samples in calls
    )
    wall_s, in_model_s = best["pool"]
    # The pass's rate is its best, so only the best matmul counts (a median
    # between the passes would set a best against a median).
    fields = mfu_fields(
        executed / wall_s,
        config.dtype,
        peak,
        between and {"best": between.rates()["best"]},
    )
    peak_rate = audio_s * fields["peak_tflops_per_s"] * 1e12 / executed
    line = {
        "case": "predict",
        **common,
        "batch": predictor.batch_size,
        "files": _PREDICT_FILES.value,
        "rates": list(PREDICT_RATES),
        "audio_s": round(audio_s, 2),
        "model_calls": len(calls),
        "decode_workers": os.cpu_count(),
        "warmup_s": round(warmup_s, 3),
        "wall_s": round(wall_s, 3),
        "model_s": round(in_model_s, 3),
        "serial_wall_s": round(best["serial"][0], 3),
        "audio_s_per_s": round(audio_s / wall_s, 2),
        "serial_audio_s_per_s": round(audio_s / best["serial"][0], 2),
        "flops_per_audio_s": round(executed / audio_s),
        "audio_flops_fraction": round(needed / executed, 4),
        "peak_audio_s_per_s": round(peak_rate, 2),
        "peak_fraction": round(audio_s / wall_s / peak_rate, 4),
        "tflops_per_s": round(executed / wall_s / 1e12, 4),
        **fields,
        "peak_host_gib": round(_host_peak_gib(), 3),
    }
    print(json.dumps(line), flush=True)


def _input_case(data_dir: str, consumed: dict) -> None:
    """The CPC input pipeline alone, on the prepared synthetic unlabeled corpus."""
    import jax

    from cpcjax import config as config_lib
    from cpcjax.data import pipeline, sources
    from cpcjax.train import sharding

    synthetic = config_lib.load("pre_cpc:synthetic")
    synthetic.data_dir = data_dir
    # Every record read from disk, as a corpus larger than the cache is.
    synthetic.audio_cache_gib = 0.0
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


def _startup_corpus(n: int):
    """The synthetic corpus of `n` utterances the startup case starts from."""
    from cpcjax.data.corpora import synthetic

    return synthetic.SyntheticSpeechConfig(
        name=f"startup_{n}",
        part="unlabeled",
        num_speakers=n // STARTUP_PER_SPEAKER,
        utterances_per_speaker=STARTUP_PER_SPEAKER,
        min_seconds=STARTUP_SECONDS,
        max_seconds=STARTUP_SECONDS,
    )


def startup_child(data_dir: str, n: int, batch: int) -> None:
    """A run's start up to the host's first batch, in this (fresh) process.

    As a run does it: open the prepared corpus (builder, index, random-access
    source), then make this host's share of the first batch of CPC crops.
    Prints one JSON line: the wall-clock time the batch was ready, and
    `open_s`, the part of the start spent on the data.
    """
    import time as clock

    from cpcjax.data import index, pipeline
    from cpcjax.data.corpora import synthetic
    from cpcjax.train import sharding

    rows = sharding.process_rows(batch)
    t = clock.perf_counter()
    corpus = _startup_corpus(n)
    builder = synthetic.load_synthetic(corpus, data_dir)
    utts = index.utterances(builder, ["train"], labeled=False, desc=corpus.name)
    window = round(STARTUP_SECONDS * SAMPLE_RATE)
    pipeline.CropBatches(utts, window, batch, 0, rows).batch(0)
    open_s = clock.perf_counter() - t
    print(json.dumps({"ready": clock.time(), "open_s": open_s}), flush=True)


def _startup_case(data_dir: str) -> None:
    """Time from a run's start to the host's first batch, per corpus size.

    Each start is a fresh process, as a run is: interpreter, imports, JAX's
    backend, then `startup_child`; nothing is compiled. `startup_s` runs from
    launching the process to the first batch, `open_s` is its part on the
    data. Each corpus is prepared once into `data_dir` and reused by later
    runs; `prepare_s` is its preparation time, or null where it was prepared
    already. The sizes start in turn, --startup_repeats times after an
    untimed round (file caches, compiled bytecode), and each reports its
    best: the load of other processes only ever adds. `ratio` is the largest
    size's startup_s over the smallest's.
    """
    import subprocess
    import sys

    import jax

    from cpcjax.data.corpora import synthetic

    sizes = _startup_sizes()
    prepare_s = {}
    for n in sizes:
        corpus = _startup_corpus(n)
        prepare_s[n] = None
        if not synthetic.SyntheticSpeech(
            config=corpus, data_dir=data_dir
        ).is_prepared():
            t = time.perf_counter()
            synthetic.load_synthetic(corpus, data_dir)
            prepare_s[n] = round(time.perf_counter() - t, 2)

    def start(n: int) -> tuple[float, float]:
        code = (
            f"from cpcjax import bench; "
            f"bench.startup_child({data_dir!r}, {n}, {_BATCH.value})"
        )
        launched = time.time()
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True
        )
        if proc.returncode:
            lines = proc.stderr.strip().splitlines() or ["no output"]
            cli.fail(f"startup: the run on {n} utterances failed: {lines[-1]}")
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        return out["ready"] - launched, out["open_s"]

    times = {n: [] for n in sizes}
    for repeat in range(1 + _STARTUP_REPEATS.value):
        for n in sizes:
            took = start(n)
            if repeat:
                times[n].append(took)
    best = {n: min(times[n]) for n in sizes}
    startup_s = [best[n][0] for n in sizes]
    smallest, largest = sizes.index(min(sizes)), sizes.index(max(sizes))
    line = {
        "case": "startup",
        "cpu": _cpu_name(),
        "platform": jax.devices()[0].platform,
        "batch": _BATCH.value,
        "window": round(STARTUP_SECONDS * SAMPLE_RATE),
        "utterance_s": STARTUP_SECONDS,
        "utterances": sizes,
        "startup_s": [round(s, 3) for s in startup_s],
        "open_s": [round(best[n][1], 4) for n in sizes],
        "prepare_s": [prepare_s[n] for n in sizes],
        "ratio": round(startup_s[largest] / startup_s[smallest], 3),
        "repeats": _STARTUP_REPEATS.value,
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
    peak = None
    if _PEAK_JSON.value:
        peak = json.loads(_PEAK_JSON.value)
    elif any(case in _CASES.value for case in MFU_CASES):
        peak = measure_peak(_PEAK_SIZE.value)
        print(json.dumps(peak), flush=True)
    for dtype in _DTYPES.value:
        config = copy.deepcopy(_CONFIG.value)
        config.dtype = dtype
        config.pretrain.batch_size = config.finetune.batch_size = _BATCH.value
        config.pretrain.window = _WINDOW.value
        config.model.negatives_group_size = min(
            config.model.negatives_group_size, _BATCH.value
        )
        config_lib.validate(config)
        _step_cases(config, mesh, rng, consumed, peak)
        if "memory" in _CASES.value:
            _memory_case(dtype, peak)
    if harness is not None:
        _reference_case(harness, mesh, rng, peak)
    if "input" in _CASES.value:
        _input_case(_CONFIG.value.data_dir, consumed)
    if "startup" in _CASES.value:
        from cpcjax.data import sources

        _startup_case(sources.data_dir(_CONFIG.value))


if __name__ == "__main__":
    cli.run(main, doc=__doc__, prepare_argv=cli.resolve_config_flag)
