"""Reference outputs of facebookresearch/CPC_audio's own code, for the parity test.

    python benchmarks/cpc_audio_fixture.py /path/to/CPC_audio tests/fixtures/cpc_audio
    python benchmarks/cpc_audio_fixture.py /path/to/CPC_audio /tmp/full --size=full

For each variant below it builds CPC_audio's model and criterion from its
train.py flags, on a tiny size (the committed fixture) or at full size
(`--size=full`: CPC_audio's default model, the paper's, and a 2-layer LSTM,
on 2 windows of 20480 samples; about 60 MB, for a live check, not for
committing), and writes `<variant>.npz` (weights as
CPC_audio names them, a waveform, and what its code computes from them:
c, z, each step's predictions, the negatives its sampler drew, the scores,
losses and accuracies) and `<variant>.json` (the flags, as
checkpoint_args.json holds them). Weights are rounded to float16 values and
stored as float16, which keeps the fixture small and loses nothing: the
reference ran on exactly those values. Needs PyTorch; not part of cpcjax.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import sys
import types

import numpy as np

# Imported at the top of CPC_audio's modules but unused on its CPC path.
STUBS = ("torchaudio", "progressbar", "psutil", "tqdm", "soundfile")
BATCH, WINDOW = 2, 3200  # 20 frames
COMMON = ["--hiddenEncoder", "32", "--hiddenGar", "32", "--negativeSamplingExt", "8"]
COMMON += ["--sizeWindow", str(WINDOW)]
# Full size: CPC_audio's own defaults (256 channels, 128 negatives, 12
# steps, 20480-sample windows) unless a variant says otherwise.
FULL_WINDOW = 20480
FULL_VARIANTS = {
    "default_lstm_transformer": [
        *("--arMode", "LSTM", "--rnnMode", "transformer", "--normMode", "layerNorm"),
    ],
    "paper_gru_linear": [
        *("--hiddenEncoder", "512", "--hiddenGar", "256", "--arMode", "GRU"),
        *("--rnnMode", "linear", "--normMode", "layerNorm"),
    ],
    "lstm2_linear": [
        *("--arMode", "LSTM", "--nLevelsGRU", "2", "--rnnMode", "linear"),
        *("--normMode", "layerNorm"),
    ],
}
VARIANTS = {
    "gru_linear_layernorm": [
        *("--arMode", "GRU", "--rnnMode", "linear", "--normMode", "layerNorm"),
        *("--nPredicts", "3"),
    ],
    "lstm2_linear_instancenorm": [
        *("--arMode", "LSTM", "--nLevelsGRU", "2", "--rnnMode", "linear"),
        *("--normMode", "instanceNorm", "--nPredicts", "3"),
    ],
    "lstm_transformer_id": [
        *("--arMode", "LSTM", "--rnnMode", "transformer", "--normMode", "ID"),
        *("--nPredicts", "2"),
    ],
}


def import_cpc_audio(checkout: str):
    """CPC_audio's train module, feature_loader and model, from `checkout`."""
    for name in STUBS:
        if name not in sys.modules and importlib.util.find_spec(name) is None:
            sys.modules[name] = types.ModuleType(name)
    sys.path.insert(0, os.path.abspath(checkout))
    from cpc import transformers as cpc_transformers

    # Its prediction network imports `transformers` as a top-level module.
    sys.modules["transformers"] = cpc_transformers
    with contextlib.redirect_stdout(io.StringIO()):
        from cpc import feature_loader
        from cpc import model as cpc_model
        from cpc import train as cpc_train
    return cpc_train, feature_loader, cpc_model


def reference(
    checkout: str, flags: list[str], seed: int = 0, window: int = WINDOW
) -> tuple[dict, dict]:
    """Builds one variant and runs it on BATCH windows of `window` samples;
    returns (arrays, checkpoint args)."""
    import torch

    cpc_train, feature_loader, cpc_model = import_cpc_audio(checkout)
    torch.manual_seed(seed)
    args = cpc_train.parseArgs(["--pathDB", checkout, *flags])
    encoder = feature_loader.getEncoder(args)
    model = cpc_model.CPCModel(encoder, feature_loader.getAR(args))
    criterion = cpc_train.getCriterion(args, encoder.DOWNSAMPLING, 1, None)
    with torch.no_grad():
        for p in [*model.parameters(), *criterion.parameters()]:
            # Random non-trivial affine norms; weights on float16 values.
            if p.dim() <= 1 or p.shape[0] == 1:
                p.add_(0.1 * torch.randn_like(p))
            p.copy_(p.half().float())
    model.eval()
    criterion.eval()
    wav = (0.3 * torch.randn(BATCH, 1, window)).half().float()
    label = torch.zeros(BATCH, dtype=torch.long)
    with torch.no_grad():
        c, z, _ = model(wav, label)
        # The sampler's draws, replayed from the same seed as its own call.
        torch.manual_seed(seed + 1)
        losses, acc = criterion(c, z, label)
        torch.manual_seed(seed + 1)
        window = c.shape[1] - args.nPredicts
        count = args.negativeSamplingExt * window * BATCH
        batch_idx = torch.randint(0, BATCH, (count,))
        seq_idx = torch.randint(1, z.shape[1], (count,))
        base = torch.arange(window).view(1, 1, window)
        base = base.expand(BATCH, args.negativeSamplingExt, window).reshape(-1)
        ext_idx = torch.remainder(seq_idx + base, z.shape[1]) + batch_idx * z.shape[1]
        negatives = ext_idx.view(BATCH, args.negativeSamplingExt, window)
        torch.manual_seed(seed + 1)
        sampled, _ = criterion.sampleClean(z, window)
        # Scores exactly as the criterion forms them: its mean over channels.
        scores = criterion.wPrediction(c[:, :window], sampled)  # K x [B, N, W]
        predictions = [
            p(c[:, :window]) for p in criterion.wPrediction.predictors
        ]  # K x [B, W, D]
        predictions = [p[0] if isinstance(p, tuple) else p for p in predictions]
    weights = {
        **{f"gEncoder.{k}": v for k, v in model.state_dict().items()},
        **{f"cpcCriterion.{k}": v for k, v in criterion.state_dict().items()},
    }
    arrays = {
        f"weight/{k}": v.numpy().astype(np.float16)
        for k, v in weights.items()
        if v.is_floating_point() and not k.endswith(("Att.mask", "Att.z"))
    }
    arrays.update(
        wav=wav[:, 0].numpy(),
        c=c.numpy(),
        z=z.numpy(),
        predictions=torch.stack(predictions, 2).numpy(),  # [B, W, K, D]
        negatives=negatives.permute(0, 2, 1).numpy().astype(np.int32),  # [B, W, N]
        scores=torch.stack(scores, 2).permute(0, 3, 2, 1).numpy(),  # [B, W, K, N]
        losses=losses.numpy().reshape(-1),
        accuracy=acc.numpy().reshape(-1),
    )
    return arrays, vars(args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", help="a facebookresearch/CPC_audio checkout")
    parser.add_argument("out", help="folder for <variant>.npz and <variant>.json")
    parser.add_argument(
        "--size",
        choices=("tiny", "full"),
        default="tiny",
        help="tiny: the committed fixture; full: the models at their real size",
    )
    ns = parser.parse_args()
    os.makedirs(ns.out, exist_ok=True)
    if ns.size == "full":
        variants, common, window = FULL_VARIANTS, [], FULL_WINDOW
    else:
        variants, common, window = VARIANTS, COMMON, WINDOW
    for name, flags in variants.items():
        arrays, args = reference(ns.checkout, common + flags, window=window)
        np.savez_compressed(os.path.join(ns.out, f"{name}.npz"), **arrays)
        with open(os.path.join(ns.out, f"{name}.json"), "w") as f:
            json.dump(args, f, indent=1, sort_keys=True)
        print(name, {k: v.shape for k, v in arrays.items() if "/" not in k})


if __name__ == "__main__":
    main()
