"""facebookresearch/CPC_audio's CPC training step, for the benchmark's reference.

`python -m cpcjax.bench --cases=reference --reference_dir=DIR` loads this file
by path from a checkout of cpcjax; it is not part of the installed package,
since it imports CPC_audio from the checkout at DIR (and PyTorch), standing in
for the modules CPC_audio imports but its training step never uses.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import os
import subprocess
import sys
import types

from absl import app

from cpcjax import cpc_audio

# Imported at the top of CPC_audio's modules but unused by its CPC training
# step (MFCC features, a progress bar); stood in for when not installed.
REFERENCE_STUBS = ("torchaudio", "progressbar")
# CPC_audio's norm names by cpcjax's.
NORMS = {ours: theirs for theirs, ours in cpc_audio.NORMS.items()}


def matching_config(config, batch_size: int, window: int):
    """A copy of `config` whose CPC step computes what CPC_audio's does.

    Args:
        config: a config with a CPC stage (`pretrain`) and `model`.
        batch_size: windows per step.
        window: samples per window.

    Returns:
        The copy: float32, one batch of `batch_size` windows of `window`
        samples, negatives drawn from the whole batch (as CPC_audio draws them).
    """
    config = copy.deepcopy(config)
    config.dtype = "float32"
    config.pretrain.batch_size = batch_size
    config.pretrain.window = window
    config.model.negatives_group_size = batch_size
    return config


def cpc_audio_args(config, window: int) -> list[str]:
    """CPC_audio's train.py flags for the CPC architecture of `config`.

    Raises:
        app.UsageError: the config's norm has no CPC_audio counterpart.
    """
    m = config.model
    if m.norm not in NORMS:
        raise app.UsageError(
            f"--cases=reference: model.norm={m.norm!r} has no CPC_audio "
            f"counterpart; use one of {', '.join(NORMS)}"
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
        NORMS[m.norm],
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

    Raises:
        app.UsageError: no CPC_audio at `reference_dir`, no PyTorch, or
            CPC_audio fails to import.
    """
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
            from cpc import feature_loader
            from cpc import model as cpc_model
            from cpc import train as cpc_train
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

    return step, {
        "reference": "facebookresearch/CPC_audio" + _commit_suffix(reference_dir),
        "reference_args": " ".join(argv),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "stubbed_imports": stubbed,
    }


def _commit_suffix(reference_dir: str) -> str:
    """The checkout's short commit after an "@", or "" where git cannot tell."""
    try:
        commit = subprocess.run(
            ["git", "-C", reference_dir, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        return ""
    return f"@{commit}" if commit else ""
