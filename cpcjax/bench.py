"""Benchmarks: one JSON line per case, with the hardware it ran on.

  python -m cpcjax.bench                                  # paper-sized model, batch 8
  python -m cpcjax.bench --batch_size=64 --dtypes=bfloat16 --steps=20

Each step case runs once per `--dtypes` entry (float32 and bfloat16 by
default). Cases: `pretrain` (a CPC step: forward, InfoNCE, backward, Adam), `finetune`
(a recognizer step with CCC loss on padded utterances) and `input` (the CPC
input pipeline alone, from the prepared synthetic corpus). Each step case
reports the median step time after warm-up, audio seconds per second, compile
time, XLA's FLOPs per step, peak device memory where the backend reports it,
peak host memory, and MFU against the device's bf16 dense peak where known.
"""

from __future__ import annotations

import json
import os
import resource
import time

from absl import app, flags

_CONFIG = flags.DEFINE_string("config", "pre_cpc", "Method whose model is measured.")
_CORPUS = flags.DEFINE_string("corpus", "iemocap",
                              "Config arg giving the model size: iemocap = the paper's.")
_BATCH = flags.DEFINE_integer("batch_size", 8, "Global batch of both step cases.")
_WINDOW = flags.DEFINE_integer("window", 20480, "Samples per CPC window.")
_SECONDS = flags.DEFINE_float("finetune_seconds", 4.0, "Padded utterance length.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps per case (after 2 warm-up).")
_DTYPES = flags.DEFINE_list("dtypes", ["float32", "bfloat16"],
                            "Compute dtypes to measure, each a line per step case.")
_CASES = flags.DEFINE_list("cases", ["pretrain", "finetune", "input"], "Cases to run.")

# Dense bf16 peak FLOP/s per device, for MFU.
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "TPU v4": 275e12,
              "TPU v5 lite": 197e12, "TPU v5": 459e12, "TPU v6 lite": 918e12}


def _peak(device_kind: str) -> float | None:
    matches = [k for k in PEAK_FLOPS if k.lower() in device_kind.lower()]
    return PEAK_FLOPS[max(matches, key=len)] if matches else None


def _host_peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def time_step(step, state, batch, rng, steps: int) -> dict:
    """Compile time, FLOPs and the median time of `steps` calls of a jitted step."""
    import jax
    import numpy as np

    t0 = time.perf_counter()
    compiled = step.lower(state, batch, rng).compile()
    compile_s = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost.get("flops", 0.0)) if cost else 0.0
    for _ in range(2):
        state, metrics = compiled(state, batch, rng)
    jax.block_until_ready(metrics)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        state, metrics = compiled(state, batch, rng)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t)
    stats = jax.devices()[0].memory_stats() or {}
    return {"compile_s": round(compile_s, 3), "step_s": float(np.median(times)),
            "flops_per_step": flops,
            "peak_device_gib": (round(stats["peak_bytes_in_use"] / 2**30, 3)
                                if "peak_bytes_in_use" in stats else None)}


def _step_cases(config, mesh, rng, consumed: dict) -> None:
    """The pretrain and finetune step cases of one config (one dtype)."""
    import jax
    import numpy as np

    from cpcjax import experiment
    from cpcjax.data import pipeline
    from cpcjax.train import sharding, state as state_lib

    programs = experiment.Programs.build(config, mesh)
    device = jax.devices()[0]
    common = {"device": device.device_kind, "platform": device.platform,
              "devices": jax.device_count(), "dtype": config.dtype,
              "channels": config.model.channels, "batch": _BATCH.value}

    def report(case: str, audio_seconds: float, timing: dict, **extra) -> None:
        peak = _peak(device.device_kind)
        flops_s = timing["flops_per_step"] / timing["step_s"]
        line = {"case": case, **common, **extra, **timing,
                "audio_s_per_s": round(audio_seconds / timing["step_s"], 2),
                "tflops_per_s": round(flops_s / 1e12, 4),
                "mfu": round(flops_s / (peak * jax.device_count()), 4) if peak else None,
                "peak_host_gib": round(_host_peak_gib(), 3)}
        # The input pipeline must keep up with the fastest step measured.
        consumed[case] = max(consumed.get(case, 0.0), line["audio_s_per_s"])
        print(json.dumps(line), flush=True)

    if "pretrain" in _CASES.value:
        local = {"wav": (0.1 * rng.standard_normal((_BATCH.value, _WINDOW.value))
                         ).astype(np.float32),
                 "lengths": np.full(_BATCH.value, _WINDOW.value, np.int32)}
        state = state_lib.create_state(programs.cpc, programs.cpc_tx, jax.random.key(0),
                                       local, mesh)
        timing = time_step(programs.cpc_step, state, sharding.to_global(local, mesh),
                           jax.random.key(1), _STEPS.value)
        report("pretrain", _BATCH.value * _WINDOW.value / 16000, timing,
               window=_WINDOW.value, negatives=config.model.num_negatives)
    if "finetune" in _CASES.value:
        length = pipeline.bucket_lengths([_SECONDS.value])[0]
        local = {"wav": (0.1 * rng.standard_normal((_BATCH.value, length))).astype(np.float32),
                 "lengths": np.full(_BATCH.value, length, np.int32),
                 "targets": rng.standard_normal((_BATCH.value, 3)).astype(np.float32),
                 "weights": np.ones(_BATCH.value, np.float32)}
        state = state_lib.create_state(programs.emotion, programs.emotion_tx,
                                       jax.random.key(0), local, mesh)
        timing = time_step(programs.emotion_step, state, sharding.to_global(local, mesh),
                           jax.random.key(1), _STEPS.value)
        report("finetune", _BATCH.value * length / 16000, timing, window=length)


def main(argv) -> None:
    del argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import jax
    import numpy as np

    from cpcjax import config as config_lib
    from cpcjax.data import pipeline, sources
    from cpcjax.train import sharding

    for dtype in _DTYPES.value:
        if dtype not in config_lib.DTYPES:
            raise app.UsageError(f"--dtypes: {dtype!r} is not one of {config_lib.DTYPES}")
    mesh = sharding.make_mesh()
    sharding.check_batch_size(_BATCH.value, "batch_size")
    rng = np.random.default_rng(0)
    consumed = {}
    for dtype in _DTYPES.value:
        config = config_lib.method_config(_CONFIG.value, _CORPUS.value)
        config.dtype = dtype
        config.pretrain.batch_size = config.finetune.batch_size = _BATCH.value
        config.pretrain.window = _WINDOW.value
        config.model.negatives_group_size = min(config.model.negatives_group_size,
                                                _BATCH.value)
        config_lib.validate(config)
        _step_cases(config, mesh, rng, consumed)
    if "input" in _CASES.value:
        synthetic = config_lib.method_config("pre_cpc", "synthetic")
        synthetic.data_dir = config.data_dir
        utts = sources.unlabeled_corpus(synthetic)
        batches = pipeline.CropBatches(utts, _WINDOW.value, _BATCH.value, 0,
                                       sharding.process_rows(_BATCH.value))
        batches.batch(0)
        n = max(_STEPS.value, 20)
        t = time.perf_counter()
        for step in range(n):
            batches.batch(step)
        per_batch = (time.perf_counter() - t) / n
        delivered = _BATCH.value * _WINDOW.value / 16000 / per_batch
        device = jax.devices()[0]
        line = {"case": "input", "device": device.device_kind, "platform": device.platform,
                "devices": jax.device_count(), "batch": _BATCH.value, "window": _WINDOW.value,
                "batch_s": per_batch, "audio_s_per_s": round(delivered, 1),
                "vs_pretrain_step": (round(delivered / consumed["pretrain"], 2)
                                     if "pretrain" in consumed else None),
                "peak_host_gib": round(_host_peak_gib(), 3)}
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    app.run(main)
