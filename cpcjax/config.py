"""Config loading, expansion and validation; the configs themselves are data.

The experiment configs live in `cpcjax/configs/` (`configs/` in a checkout):
`base.py` holds every number and the per-corpus presets, and one file per
method states its stages: `pretrain.corpus` (which audio the CPC stage reads,
or none), `finetune.init_from` (where the recognizer's encoder and context
network start) and `finetune.cpc_weight` (jointCPC's lambda). No code reads
the method's name to decide what to run; the name labels reports and folders.
Overrides go through ml_collections' flags: `--config.pretrain.num_steps=10`.
"""

from __future__ import annotations

import difflib
import importlib.util
import os

import ml_collections

from cpcjax import paths
from cpcjax.constants import DEV_SPLITS, FRAME_HOP, NORMS

CORPORA = ("synthetic", "iemocap", "msp_podcast")
DTYPES = ("float32", "bfloat16")
# How a method is named in tables, after the paper.
METHOD_NAMES = {
    "sup": "Sup",
    "joint_cpc": "jointCPC",
    "mini_cpc": "miniCPC",
    "pre_cpc": "preCPC",
}
NO_PRETRAINING = "none"
OWN_AUDIO = "emotion_train"  # a fold's own training audio (miniCPC)
UNLABELED_CORPORA = ("librispeech", "librispeech_tfds", "synthetic_unlabeled")
FROM_PRETRAINING = "pretrain"


class ConfigError(ValueError):
    """A config value that cannot work; the message names the field."""


def label(config) -> str:
    """The method's name in tables: "preCPC" for "pre_cpc"."""
    return METHOD_NAMES.get(config.method, config.method)


def flatten(tree: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}: a config dict by dotted field name."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _close_match(name: str, candidates) -> str:
    match = difflib.get_close_matches(name, list(candidates), n=1)
    return f"; did you mean {match[0]!r}?" if match else ""


def set_fields(c: ml_collections.ConfigDict, fields: dict) -> None:
    """Sets dotted fields, e.g. {"pretrain.num_steps": 10}; unknown fields fail."""
    for key, value in fields.items():
        *parents, leaf = key.split(".")
        target = c
        for name in parents:
            target = target[name]
        if leaf not in target:
            raise ConfigError(f"config: no field {key!r}{_close_match(leaf, target)}")
        target[leaf] = value


def check_fields(c: ml_collections.ConfigDict, fields) -> None:
    """Fails on the first dotted field name that `c` does not have."""
    for key in fields:
        target = c
        for name in key.split("."):
            if not isinstance(target, ml_collections.ConfigDict) or name not in target:
                options = (
                    target if isinstance(target, ml_collections.ConfigDict) else ()
                )
                raise ConfigError(
                    f"--config.{key}: no such field{_close_match(name, options)} "
                    f"(python -m cpcjax.main --help lists them)"
                )
            target = target[name]


def differences(
    config: ml_collections.ConfigDict, base: ml_collections.ConfigDict
) -> ml_collections.ConfigDict:
    """The fields of `config` whose values differ from `base`, nested as in it."""
    out = ml_collections.ConfigDict()
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            sub = differences(value, base[key]) if key in base else value
            if sub:
                out[key] = sub
        elif key not in base or base[key] != value:
            out[key] = value
    return out


def _merge(target: ml_collections.ConfigDict, delta: ml_collections.ConfigDict):
    for key, value in delta.items():
        if isinstance(value, ml_collections.ConfigDict) and key in target:
            _merge(target[key], value)
        else:
            target[key] = value


def expand(config: ml_collections.ConfigDict) -> list[ml_collections.ConfigDict]:
    """The method configs of `config`: itself, or one per name in a demo's
    `method_order`, each the shared fields with that method's own on top."""
    if "methods" not in config:
        return [config]
    shared = ml_collections.ConfigDict(config.to_dict())
    del shared["methods"], shared["method_order"]
    out = []
    for name in config.method_order:
        if name not in config.methods:
            raise ConfigError(
                f"config.method_order: no method {name!r} in config.methods"
                f"{_close_match(name, config.methods)}"
            )
        c = ml_collections.ConfigDict(shared.to_dict())
        _merge(c, config.methods[name])
        c.method = name
        out.append(c)
    return out


def resolve(spec: str) -> str:
    """The file of a `--config` value: a path (`configs/pre_cpc.py:arg`), or a
    config shipped with cpcjax by name (`pre_cpc:arg`). The `:arg` is kept.

    Raises:
      ConfigError: no such file and no shipped config of that name.
    """
    from cpcjax import configs

    path, sep, arg = spec.partition(":")
    if os.path.isfile(path):
        return spec
    name = os.path.basename(path)
    name = name[:-3] if name.endswith(".py") else name
    if name in configs.NAMES:
        return os.path.join(configs.DIRECTORY, f"{name}.py") + sep + arg
    raise ConfigError(
        f"--config: no file {path!r} and no shipped config of that name; use a "
        f"path or one of {', '.join(configs.NAMES)}"
    )


def load(spec: str) -> ml_collections.ConfigDict:
    """The config of a `--config` value, e.g. load("pre_cpc:synthetic")."""
    path, _, arg = resolve(spec).partition(":")
    module_spec = importlib.util.spec_from_file_location("_cpcjax_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()


CONTEXT_CELLS = ("gru", "lstm")
PREDICT_HEADS = ("linear", "transformer")
SCORES = ("raw", "scaled")
NEGATIVES = ("groups", "shared_groups", "speaker")


def _validate_cpc_variants(c: ml_collections.ConfigDict, need) -> None:
    """The CPC_audio variants of config.model, and where each can run."""
    m = c.model
    need(
        m.context_cell in CONTEXT_CELLS, "model.context_cell", f"one of {CONTEXT_CELLS}"
    )
    need(
        isinstance(m.context_layers, int) and m.context_layers >= 1,
        "model.context_layers",
        "must be an int >= 1",
    )
    need(
        m.predict_heads in PREDICT_HEADS,
        "model.predict_heads",
        f"one of {PREDICT_HEADS}",
    )
    need(m.score in SCORES, "model.score", f"must be one of {SCORES}")
    need(m.negatives in NEGATIVES, "model.negatives", f"must be one of {NEGATIVES}")
    if m.predict_heads == "transformer":
        need(
            m.context_hidden == m.channels,
            "model.predict_heads",
            "transformer heads need model.context_hidden == model.channels",
        )
        need(
            c.finetune.cpc_weight == 0,
            "model.predict_heads",
            "transformer heads have a fixed sequence size (the pretraining "
            "window) and cannot score jointCPC's variable-length batches; use "
            "linear heads with finetune.cpc_weight > 0",
        )
    if m.negatives == "speaker":
        need(
            c.finetune.cpc_weight == 0,
            "model.negatives",
            "speaker pools need speaker ids, which only pretraining batches "
            "carry; use groups with finetune.cpc_weight > 0",
        )


def validate(c: ml_collections.ConfigDict) -> None:
    """Fails before anything compiles, naming the field at fault."""

    def need(ok: bool, field: str, why: str) -> None:
        if not ok:
            raise ConfigError(f"config.{field}: {why} (got {_get(c, field)!r})")

    need(c.corpus in CORPORA, "corpus", f"must be one of {CORPORA}")
    need(isinstance(c.seeds, int) and c.seeds >= 1, "seeds", "must be an int >= 1")
    need(c.dtype in DTYPES, "dtype", f"must be one of {DTYPES}")
    need(c.audio_cache_gib >= 0, "audio_cache_gib", "must be >= 0 (0: no cache)")
    need(
        isinstance(c.concurrent_runs, int) and c.concurrent_runs >= 0,
        "concurrent_runs",
        "must be an int >= 0 (0: 2 on a CPU backend, else 1)",
    )
    need(c.model.norm in NORMS, "model.norm", f"must be one of {NORMS}")
    _validate_cpc_variants(c, need)
    for stage in ("pretrain", "finetune"):
        for field in ("num_steps", "batch_size", "checkpoint_every", "log_every"):
            value = c[stage][field]
            need(
                isinstance(value, int) and value >= 1,
                f"{stage}.{field}",
                "must be an int >= 1",
            )
        need(c[stage].learning_rate > 0, f"{stage}.learning_rate", "must be > 0")
    corpus = c.pretrain.corpus
    need(
        corpus in (NO_PRETRAINING, OWN_AUDIO, *UNLABELED_CORPORA)
        or corpus.startswith("audio_folder:"),
        "pretrain.corpus",
        f"must be {NO_PRETRAINING}, {OWN_AUDIO}, audio_folder:<name> or one of "
        f"{', '.join(UNLABELED_CORPORA)}",
    )
    init = c.finetune.init_from
    if init == FROM_PRETRAINING:
        need(
            corpus != NO_PRETRAINING,
            "finetune.init_from",
            f"{FROM_PRETRAINING!r} needs a CPC stage: set pretrain.corpus",
        )
    else:
        need(
            corpus == NO_PRETRAINING,
            "pretrain.corpus",
            f"a CPC stage is only trained for finetune.init_from={FROM_PRETRAINING!r}",
        )
    need(
        c.pretrain.init_from == "" or init == FROM_PRETRAINING,
        "pretrain.init_from",
        f"is what fine-tuning starts from only with "
        f"finetune.init_from={FROM_PRETRAINING!r}",
    )
    need(
        c.pretrain.init_from == "" or paths.isdir(paths.resolve(c.pretrain.init_from)),
        "pretrain.init_from",
        "must be '' or an existing folder: a CPC stage or an import_cpc_audio output",
    )
    need(
        init in ("", FROM_PRETRAINING) or paths.isdir(paths.resolve(init)),
        "finetune.init_from",
        f"must be '', {FROM_PRETRAINING!r}, or an existing checkpoints/ directory",
    )
    need(
        c.pretrain.window % FRAME_HOP == 0 and c.pretrain.window >= FRAME_HOP * 32,
        "pretrain.window",
        f"must be a multiple of {FRAME_HOP} samples and >= {FRAME_HOP * 32}",
    )
    frames = c.pretrain.window // FRAME_HOP
    need(
        c.model.predict_steps < frames,
        "model.predict_steps",
        f"must be < the {frames} frames of a pretraining window",
    )
    g = c.model.negatives_group_size
    for stage in ("pretrain", "finetune"):
        need(
            c[stage].batch_size % g == 0,
            f"{stage}.batch_size",
            f"must be a multiple of model.negatives_group_size={g}",
        )
    need(
        c.model.d_model % c.model.attention_heads == 0,
        "model.d_model",
        f"must be divisible by model.attention_heads={c.model.attention_heads}",
    )
    need(
        c.finetune.encoder_lr_scale >= 0,
        "finetune.encoder_lr_scale",
        "must be >= 0 (0 holds the encoder and context network still)",
    )
    need(
        isinstance(c.finetune.freeze_steps, int) and c.finetune.freeze_steps >= 0,
        "finetune.freeze_steps",
        "must be an int >= 0",
    )
    need(
        0 <= c.finetune.alpha + c.finetune.beta <= 1,
        "finetune.alpha",
        "alpha + beta must lie in [0, 1]",
    )
    need(
        isinstance(c.finetune.eval_every, int) and c.finetune.eval_every >= 1,
        "finetune.eval_every",
        "must be an int >= 1",
    )
    need(
        isinstance(c.finetune.patience, int) and c.finetune.patience >= 0,
        "finetune.patience",
        "must be an int >= 0",
    )
    need(
        c.finetune.dev_split in DEV_SPLITS,
        "finetune.dev_split",
        f"must be one of {', '.join(DEV_SPLITS)}",
    )
    need(
        0 < c.finetune.dev_fraction < 0.5,
        "finetune.dev_fraction",
        "must be in (0, 0.5)",
    )
    need(
        len(c.finetune.buckets) >= 1
        and list(c.finetune.buckets) == sorted(c.finetune.buckets),
        "finetune.buckets",
        "must be increasing lengths in seconds",
    )
    if c.corpus != "msp_podcast":
        need(all(1 <= int(f) <= 5 for f in c.folds), "folds", "folds are sessions 1..5")


def _get(c, dotted: str):
    for name in dotted.split("."):
        c = c[name]
    return c
