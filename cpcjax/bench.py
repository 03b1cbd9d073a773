"""Benchmarks: one JSON line per case, with the hardware it ran on.

  python -m cpcjax.bench                                  # paper-sized model, batch 8
  python -m cpcjax.bench --batch_size=64 --dtypes=bfloat16 --steps=20
  python -m cpcjax.bench --cases=reference --reference_dir=CPC_audio

Each step case runs once per `--dtypes` entry (float32 and bfloat16 by
default). Cases: `pretrain` (a CPC step: forward, InfoNCE, backward, Adam), `finetune`
(a recognizer step with CCC loss on padded utterances) and `input` (the CPC
input pipeline alone, from the prepared synthetic corpus). Each step case
reports the median step time after warm-up, audio seconds per second, compile
time, XLA's FLOPs per step, peak device memory where the backend reports it,
peak host memory, and MFU against the device's bf16 dense peak where known.

The `reference` case times cpcjax's float32 CPC step side by side with
facebookresearch/CPC_audio's, built by CPC_audio's own code from a checkout
you point `--reference_dir` at (it needs PyTorch; CPC_audio is not part of
cpcjax). Both get the same batch; their steps alternate, so a slower or
busier stretch of the machine weighs on both alike.
"""

from __future__ import annotations

import json
import os
import resource
import time

from absl import app, flags

_CONFIG = flags.DEFINE_string("config", "pre_cpc", "Method whose model is measured.")
_CORPUS = flags.DEFINE_string(
    "corpus", "iemocap", "Config arg giving the model size: iemocap = the paper's."
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
    "Cases to run: pretrain, finetune, input, reference.",
)
_REFERENCE_DIR = flags.DEFINE_string(
    "reference_dir",
    None,
    "A facebookresearch/CPC_audio checkout, for --cases=reference.",
)
CASES = ("pretrain", "finetune", "input", "reference")

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
    for i in range(2 + steps):  # 2 warm-up calls
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


def _pretrain_inputs(programs, mesh, wav):
    """A fresh CPC train state and the global batch of `wav` (full-length rows)."""
    import jax
    import numpy as np

    from cpcjax.train import sharding, state as state_lib

    local = {"wav": wav, "lengths": np.full(len(wav), wav.shape[1], np.int32)}
    state = state_lib.create_state(
        programs.cpc, programs.cpc_tx, jax.random.key(0), local, mesh
    )
    return state, sharding.to_global(local, mesh)


# Imported at the top of CPC_audio's modules but unused by its CPC training
# step (MFCC features, a progress bar); stood in for when not installed.
REFERENCE_STUBS = ("torchaudio", "progressbar")


def cpc_audio_args(config, window: int) -> list[str]:
    """CPC_audio's train.py flags for the CPC architecture of `config`."""
    m = config.model
    # CPC_audio's "layerNorm" is its ChannelNorm: per frame, over channels.
    norms = {"channel": "layerNorm", "none": "ID"}
    if m.norm not in norms:
        raise app.UsageError(
            f"--cases=reference: model.norm={m.norm!r} has no CPC_audio "
            f"counterpart; use one of {', '.join(norms)}"
        )
    return [
        "--hiddenEncoder",
        str(m.channels),
        "--hiddenGar",
        str(m.context_hidden),
        "--arMode",
        "GRU",
        "--rnnMode",
        "linear",
        "--nPredicts",
        str(m.predict_steps),
        "--negativeSamplingExt",
        str(m.num_negatives),
        "--sizeWindow",
        str(window),
        "--normMode",
        norms[m.norm],
        "--learningRate",
        str(config.pretrain.learning_rate),
    ]


def cpc_audio_step(reference_dir: str, argv: list[str], wav):
    """CPC_audio's training step on the CPU, built by its own train.py code.

    Args:
        reference_dir: a facebookresearch/CPC_audio checkout.
        argv: its train.py flags (see `cpc_audio_args`).
        wav: [B, S] float32 numpy batch.

    Returns:
        `step() -> loss`, the body of CPC_audio's `trainStep` (forward, loss,
        backward, Adam), and a dict describing the reference.
    """
    import contextlib
    import importlib.util
    import io
    import subprocess
    import sys
    import types

    train_py = os.path.join(reference_dir, "cpc", "train.py")
    if not os.path.isfile(train_py):
        raise app.UsageError(
            f"--reference_dir={reference_dir}: {train_py} not found; "
            "point it at a facebookresearch/CPC_audio checkout"
        )
    try:
        import torch
    except ImportError:
        raise app.UsageError(
            "--cases=reference needs PyTorch: pip install torch "
            "(the CPU build is enough)"
        ) from None
    stubbed = [n for n in REFERENCE_STUBS if importlib.util.find_spec(n) is None]
    for name in stubbed:
        sys.modules[name] = types.ModuleType(name)
    sys.path.insert(0, os.path.abspath(reference_dir))
    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its GPU count
        try:
            from cpc import feature_loader, model as cpc_model, train as cpc_train
        except ImportError as e:
            raise app.UsageError(
                f"--reference_dir={reference_dir}: importing CPC_audio "
                f"failed ({e}); pip install what it names"
            ) from None
        args = cpc_train.parseArgs(["--pathDB", reference_dir, *argv])
    encoder = feature_loader.getEncoder(args)
    cpc = cpc_model.CPCModel(encoder, feature_loader.getAR(args))
    criterion = cpc_train.getCriterion(args, encoder.DOWNSAMPLING, 1, None)
    optimizer = torch.optim.Adam(
        list(criterion.parameters()) + list(cpc.parameters()),
        lr=args.learningRate,
        betas=(args.beta1, args.beta2),
        eps=args.epsilon,
    )
    cpc.train()
    criterion.train()
    data = torch.from_numpy(wav)[:, None, :]  # [B, 1, S]
    label = torch.zeros(len(wav), dtype=torch.long)

    def step() -> float:
        c_feature, encoded, lab = cpc(data, label)
        losses, _ = criterion(c_feature, encoded, lab)
        total = losses.sum()
        total.backward()
        optimizer.step()
        optimizer.zero_grad()
        return total.item()

    try:
        commit = subprocess.run(
            ["git", "-C", reference_dir, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:  # no git
        commit = ""
    return step, {
        "reference": "facebookresearch/CPC_audio" + (f"@{commit}" if commit else ""),
        "reference_args": " ".join(argv),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "stubbed_imports": stubbed,
    }


def _reference_case(mesh, rng) -> None:
    """cpcjax's float32 CPC step and CPC_audio's, alternating on one batch."""
    import jax

    from cpcjax import config as config_lib
    from cpcjax.train.steps import Programs

    if jax.default_backend() != "cpu":
        raise app.UsageError(
            "--cases=reference runs CPC_audio on the CPU; run it with "
            "JAX_PLATFORMS=cpu so both steps use the same hardware"
        )
    config = config_lib.method_config(_CONFIG.value, _CORPUS.value)
    config.dtype = "float32"  # as CPC_audio
    config.pretrain.batch_size = _BATCH.value
    config.pretrain.window = _WINDOW.value
    # CPC_audio draws every negative from the whole batch.
    config.model.negatives_group_size = _BATCH.value
    wav = _wav(rng)
    argv = cpc_audio_args(config, _WINDOW.value)
    reference_step, info = cpc_audio_step(_REFERENCE_DIR.value, argv, wav)
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
    audio_s = _BATCH.value * _WINDOW.value / 16000
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
        "cpcjax_audio_s_per_s": round(audio_s / ours_s, 2),
        "reference_audio_s_per_s": round(audio_s / theirs_s, 2),
        **info,
    }
    print(json.dumps(line), flush=True)


def _step_cases(config, mesh, rng, consumed: dict) -> None:
    """The pretrain and finetune step cases of one config (one dtype)."""
    import jax
    import numpy as np

    from cpcjax.data import pipeline
    from cpcjax.train import sharding, state as state_lib
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
            _BATCH.value * _WINDOW.value / 16000,
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
        report("finetune", _BATCH.value * length / 16000, timing, window=length)


def main(argv) -> None:
    del argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import jax
    import numpy as np

    from cpcjax import config as config_lib
    from cpcjax.data import pipeline, sources
    from cpcjax.train import sharding

    unknown = [c for c in _CASES.value if c not in CASES]
    if unknown:
        raise app.UsageError(
            f"--cases: {', '.join(unknown)} unknown; use {', '.join(CASES)}"
        )
    if "reference" in _CASES.value and not _REFERENCE_DIR.value:
        raise app.UsageError(
            "--cases=reference needs --reference_dir=PATH, a facebookresearch/CPC_audio "
            "checkout (git clone https://github.com/facebookresearch/CPC_audio)"
        )
    for dtype in _DTYPES.value:
        if dtype not in config_lib.DTYPES:
            raise app.UsageError(
                f"--dtypes: {dtype!r} is not one of {config_lib.DTYPES}"
            )
    mesh = sharding.make_mesh()
    sharding.check_batch_size(_BATCH.value, "batch_size")
    rng = np.random.default_rng(0)
    consumed = {}
    for dtype in _DTYPES.value:
        config = config_lib.method_config(_CONFIG.value, _CORPUS.value)
        config.dtype = dtype
        config.pretrain.batch_size = config.finetune.batch_size = _BATCH.value
        config.pretrain.window = _WINDOW.value
        config.model.negatives_group_size = min(
            config.model.negatives_group_size, _BATCH.value
        )
        config_lib.validate(config)
        _step_cases(config, mesh, rng, consumed)
    if "reference" in _CASES.value:
        _reference_case(mesh, rng)
    if "input" in _CASES.value:
        synthetic = config_lib.method_config("pre_cpc", "synthetic")
        synthetic.data_dir = config.data_dir
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
        delivered = _BATCH.value * _WINDOW.value / 16000 / per_batch
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


if __name__ == "__main__":
    app.run(main)
