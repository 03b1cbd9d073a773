"""CPC_audio's models in cpcjax: its flags as config fields, its weights as params.

facebookresearch/CPC_audio names its architecture by train.py flags
(checkpoint_args.json, or a published checkpoint's "config") and its weights
by torch module paths. `model_fields` turns the flags into cpcjax config
fields and `to_params` the weights (numpy arrays) into the parameter tree of
`cpcjax.models.build.cpc_model` for those fields. Neither needs torch.
"""

from __future__ import annotations

import re

import numpy as np

from cpcjax.models.context import layer_name

# CPC_audio's defaults (cpc/cpc_default_config.py) for the flags that shape
# its model; a checkpoint's args override them, as CPC_audio's loadArgs does.
DEFAULTS = {
    "hiddenEncoder": 256,
    "hiddenGar": 256,
    "nPredicts": 12,
    "negativeSamplingExt": 128,
    "sizeWindow": 20480,
    "normMode": "layerNorm",
    "arMode": "LSTM",
    "nLevelsGRU": 1,
    "rnnMode": "transformer",
    "samplingType": "samespeaker",
    "encoder_type": "cpc",
    "cpc_mode": None,
    "speakerEmbedding": 0,
}
NORMS = {"layerNorm": "channel", "instanceNorm": "instance", "ID": "none"}
CELLS = {"GRU": "gru", "LSTM": "lstm"}
# rnnMode values CPC_audio builds a bias-free Linear for (anything unlisted).
TORCH_HEADS = ("RNN", "LSTM", "ffd", "conv4", "conv8", "conv12")
GATES = {"gru": ("r", "z", "n"), "lstm": ("i", "f", "g", "o")}


class Unsupported(ValueError):
    """A CPC_audio configuration or weight that cpcjax cannot represent."""


def model_fields(args: dict) -> dict:
    """cpcjax config fields, dotted, for CPC_audio flags `args`.

    Raises:
        Unsupported: naming the flag cpcjax has no counterpart for.
    """
    a = {**DEFAULTS, **{k: v for k, v in args.items() if v is not None}}

    def refuse(flag: str, why: str):
        raise Unsupported(f"CPC_audio's {flag}={a.get(flag)!r}: {why}")

    if a["encoder_type"] != "cpc":
        refuse("encoder_type", "only its convolutional encoder ('cpc') is supported")
    if a["normMode"] not in NORMS:
        refuse("normMode", f"cpcjax has no such norm; supported: {', '.join(NORMS)}")
    if a["arMode"] not in CELLS:
        refuse("arMode", f"supported context networks: {', '.join(CELLS)}")
    if a["rnnMode"] in TORCH_HEADS:
        refuse("rnnMode", "supported prediction heads: linear, transformer")
    if a["cpc_mode"] not in (None, "none"):
        refuse("cpc_mode", "cpcjax's context network runs forward only")
    if a["speakerEmbedding"]:
        refuse("speakerEmbedding", "speaker embeddings are not supported")
    transformer = a["rnnMode"] == "transformer"
    if transformer and a["hiddenGar"] != a["hiddenEncoder"]:
        refuse("rnnMode", "transformer heads need hiddenGar == hiddenEncoder")
    return {
        "model.channels": int(a["hiddenEncoder"]),
        "model.norm": NORMS[a["normMode"]],
        "model.context_hidden": int(a["hiddenGar"]),
        "model.context_cell": CELLS[a["arMode"]],
        "model.context_layers": int(a["nLevelsGRU"]),
        "model.predict_steps": int(a["nPredicts"]),
        "model.predict_heads": "transformer" if transformer else "linear",
        "model.score": "scaled",
        "model.num_negatives": int(a["negativeSamplingExt"]),
        "model.negatives": "speaker"
        if a["samplingType"] == "samespeaker"
        else "groups",
        "pretrain.window": int(a["sizeWindow"]),
    }


def _take(weights: dict, key: str) -> np.ndarray:
    if key not in weights:
        raise Unsupported(f"weight {key} is missing")
    return np.asarray(weights[key], np.float32)


def _encoder(weights: dict, norm: str) -> dict:
    params = {}
    for i in range(5):
        conv = f"gEncoder.conv{i}"
        params[f"conv{i}"] = {
            "kernel": _take(weights, f"{conv}.weight").transpose(
                2, 1, 0
            ),  # [k, in, out]
            "bias": _take(weights, f"{conv}.bias"),
        }
        if norm != "none":
            bn = f"gEncoder.batchNorm{i}"
            params[f"norm{i}"] = {
                "scale": _take(weights, f"{bn}.weight").reshape(-1),
                "bias": _take(weights, f"{bn}.bias").reshape(-1),
            }
    return params


def _recurrent_layer(weights: dict, cell: str, layer: int) -> dict:
    def split(name):
        return np.split(_take(weights, f"gAR.baseNet.{name}_l{layer}"), len(gates))

    gates = GATES[cell]
    w_i, w_h = split("weight_ih"), split("weight_hh")  # [H, in], [H, H] per gate
    b_i, b_h = split("bias_ih"), split("bias_hh")
    out = {}
    for g, wi, wh, bi, bh in zip(gates, w_i, w_h, b_i, b_h, strict=True):
        if cell == "gru" and g == "n":
            # The candidate's hidden bias sits inside r * (W_hn h + b_hn).
            out["in"] = {"kernel": wi.T, "bias": bi}
            out["hn"] = {"kernel": wh.T, "bias": bh}
        elif cell == "gru":
            out[f"i{g}"] = {"kernel": wi.T, "bias": bi + bh}
            out[f"h{g}"] = {"kernel": wh.T}
        else:
            out[f"i{g}"] = {"kernel": wi.T}
            out[f"h{g}"] = {"kernel": wh.T, "bias": bi + bh}
    return out


def _transformer_head(weights: dict, prefix: str) -> dict:
    def dense(name, bias=False):
        out = {"kernel": _take(weights, f"{prefix}.{name}.weight").T}
        if bias:
            out["bias"] = _take(weights, f"{prefix}.{name}.bias")
        return out

    def norm(name):
        return {
            "scale": _take(weights, f"{prefix}.{name}.weight"),
            "bias": _take(weights, f"{prefix}.{name}.bias"),
        }

    return {
        "query": dense("multihead.Wq"),
        "key": dense("multihead.Wk"),
        "value": dense("multihead.Wv"),
        "out": dense("multihead.Wo"),
        "relpos": _take(weights, f"{prefix}.multihead.Att.Krelpos"),
        "attention_norm": norm("ln_multihead"),
        "ff_hidden": dense("ffnetwork.lin1", bias=True),
        "ff_out": dense("ffnetwork.lin2", bias=True),
        "ff_norm": norm("ln_ffnetwork"),
    }


def has_heads(criterion: dict | None) -> bool:
    """Whether CPC_audio criterion weights hold prediction heads."""
    return bool(criterion) and any(
        k.startswith("wPrediction.predictors.") for k in criterion
    )


def to_params(model: dict, criterion: dict | None, fields: dict) -> dict:
    """cpcjax params for CPC_audio weights.

    Args:
        model: CPC_audio's CPCModel state dict (gEncoder.*, gAR.*), as numpy.
        criterion: its CPCUnsupersivedCriterion state dict, or None (a
            published checkpoint has none); then there are no predict_heads.
        fields: `model_fields` of the checkpoint's flags.

    Returns:
        {"encoder", "context"[, "predict_heads"]} parameter trees.

    Raises:
        Unsupported: a weight is missing, or the state dict holds weights the
            flags do not explain.
    """
    cell, layers = fields["model.context_cell"], fields["model.context_layers"]
    known = re.compile(
        r"gEncoder\.(conv|batchNorm)\d\.(weight|bias)"
        r"|gEncoder\.batchNorm\d\.(running_mean|running_var|num_batches_tracked)"
        r"|gAR\.baseNet\.(weight|bias)_(ih|hh)_l\d+"
    )
    extra = [k for k in model if not known.fullmatch(k)]
    if extra:
        raise Unsupported(f"unexpected weights {', '.join(sorted(extra)[:3])}")
    deepest = max(int(k.rsplit("_l", 1)[1]) for k in model if k.startswith("gAR."))
    if deepest + 1 != layers:
        raise Unsupported(f"{deepest + 1} recurrent layers, flags say {layers}")
    params = {
        "encoder": _encoder(model, fields["model.norm"]),
        "context": {
            layer_name(cell, i): _recurrent_layer(model, cell, i) for i in range(layers)
        },
    }
    if not has_heads(criterion):
        return params
    steps = fields["model.predict_steps"]
    if fields["model.predict_heads"] == "transformer":
        params["predict_heads"] = {
            f"head{k}": _transformer_head(criterion, f"wPrediction.predictors.{k}.0")
            for k in range(steps)
        }
    else:
        kernels = [
            _take(criterion, f"wPrediction.predictors.{k}.weight").T  # [H, D]
            for k in range(steps)
        ]
        params["predict_heads"] = {"kernel": np.stack(kernels, axis=1)}  # [H, K, D]
    return params
