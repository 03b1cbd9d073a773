"""Experiment configuration: one base config, four methods, three corpora.

Every number of a run lives here. `configs/<method>.py` files are thin
wrappers: `get_config("synthetic")` gives the CPU-sized demo of the method,
`get_config("iemocap")` / `get_config("msp_podcast")` the paper's setting.
Decisions the paper leaves open are marked `[ours]`.
"""

from __future__ import annotations

import ast
import os
import re

import ml_collections

METHODS = ("sup", "joint_cpc", "mini_cpc", "pre_cpc")
METHOD_NAMES = {
    "sup": "Sup",
    "joint_cpc": "jointCPC",
    "mini_cpc": "miniCPC",
    "pre_cpc": "preCPC",
}
CORPORA = ("synthetic", "iemocap", "msp_podcast")
NORMS = ("none", "channel", "layer")
DTYPES = ("float32", "bfloat16")
DEFAULT_DATA_DIR = os.path.join("~", "cpcjax_data")


class ConfigError(ValueError):
    """A config value that cannot work; the message names the field."""


def base_config(corpus: str = "iemocap") -> ml_collections.ConfigDict:
    """The paper-sized base config for `corpus`, before a method is applied."""
    if corpus not in CORPORA:
        raise ConfigError(
            f"config arg: unknown corpus {corpus!r}; use one of {', '.join(CORPORA)}"
        )
    c = ml_collections.ConfigDict()
    c.method = "pre_cpc"
    c.corpus = corpus
    c.data_dir = os.environ.get("CPCJAX_DATA_DIR", DEFAULT_DATA_DIR)
    c.seed = 0  # base seed; seed s of a table cell uses seed + s
    c.seeds = 3  # [ours] repeated runs per table cell
    c.folds = ()  # empty = every fold of the protocol; e.g. (1,) for one
    c.dtype = "float32"  # computation dtype; params and optimizer stay float32

    m = c.model = ml_collections.ConfigDict()
    m.channels = 512
    m.norm = "channel"  # [ours] per-frame channel norm; none | channel | layer
    m.context_hidden = 256
    m.predict_steps = 12
    m.num_negatives = 128  # [ours] N-1 negatives per prediction
    m.negatives_group_size = 8  # [ours] utterances sharing a negative pool
    m.attention_heads = 4  # [ours]
    m.d_model = 256  # [ours]
    m.mlp_hidden = 256  # [ours]
    m.dropout = 0.1  # [ours] in the regression head

    p = c.pretrain = ml_collections.ConfigDict()
    p.num_steps = 300_000  # van den Oord et al.
    p.batch_size = 64  # [ours] 8 windows x 8 devices of the original CPC
    p.window = 20480  # samples; 128 frames
    p.learning_rate = 2e-4
    p.warmup_steps = 1000  # [ours]
    p.checkpoint_every = 5000
    p.log_every = 100
    # pre_cpc's corpus: librispeech | librispeech_tfds | audio_folder:<name>;
    # mini_cpc uses the emotion corpus' own training audio.
    p.corpus = "librispeech"
    p.librispeech_subsets = ("train-clean-100",)  # [ours] the original CPC's 100 h

    f = c.finetune = ml_collections.ConfigDict()
    f.num_steps = 6000  # [ours]
    f.batch_size = 32  # [ours]
    f.learning_rate = 1e-4  # [ours]
    f.warmup_steps = 200  # [ours]
    f.checkpoint_every = 1000
    f.log_every = 50
    f.freeze_cpc = False  # [ours] pretrained encoder + GRU are fine-tuned
    f.cpc_weight = 0.0  # lambda of jointCPC; 0 for the other methods
    f.alpha = 1.0 / 3  # [ours] CCC weight of activation
    f.beta = 1.0 / 3  # [ours] CCC weight of valence
    f.buckets = (2.0, 4.0, 8.0, 16.0)  # [ours] seconds; longer utterances are cropped
    f.dev_fraction = 0.1  # [ours] IEMOCAP dev split: 10% of training utterances
    f.eval_batch_size = 32
    f.eval_every = 500  # [ours] dev CCC; the best dev avg CCC picks the model
    f.patience = 0  # [ours] evaluations without a new best before stopping; 0 = never
    f.input = "context"  # [ours] recognizer reads c_t; "context" only for now

    a = c.analysis = ml_collections.ConfigDict()
    a.probe = True  # linear probe of the frozen CPC features (CPC methods)
    a.plots = True  # training curves, predicted vs true, t-SNE

    if corpus == "msp_podcast":
        f.patience = 6  # [ours] early stopping on Development
    if corpus == "synthetic":
        _size_for_cpu(c)
    return c


def _size_for_cpu(c: ml_collections.ConfigDict) -> None:
    """Shrinks the model and schedule so the demo runs on a laptop CPU."""
    s = c.synthetic = ml_collections.ConfigDict()
    s.seed = 0  # the corpus' seed; another seed is another corpus
    s.unlabeled_speakers = 40
    s.unlabeled_utterances_per_speaker = 10
    s.emotion_utterances_per_speaker = 50  # x 2 speakers x 5 sessions
    c.seeds = 2
    c.model.channels = 32
    # Per-frame channel norm slows early CPC learning of so small an encoder
    # badly (InfoNCE 41.1 vs 32.8 after 400 steps): the demo does without.
    c.model.norm = "none"
    c.model.context_hidden = 64
    c.model.num_negatives = 32
    c.model.negatives_group_size = 4
    c.model.d_model = 64
    c.model.mlp_hidden = 64
    c.pretrain.corpus = "synthetic_unlabeled"
    c.pretrain.num_steps = 400
    c.pretrain.batch_size = 8
    c.pretrain.window = 10240
    c.pretrain.learning_rate = 1e-3
    c.pretrain.warmup_steps = 20
    c.pretrain.checkpoint_every = 100
    c.pretrain.log_every = 10
    c.finetune.num_steps = 100
    c.finetune.batch_size = 16
    c.finetune.learning_rate = 1e-3
    c.finetune.warmup_steps = 10
    c.finetune.checkpoint_every = 60
    c.finetune.log_every = 10
    c.finetune.buckets = (1.0, 1.5)
    c.finetune.eval_batch_size = 32
    c.finetune.eval_every = 25


def apply_method(
    c: ml_collections.ConfigDict, method: str
) -> ml_collections.ConfigDict:
    """Sets the fields that make `c` one of the paper's four methods."""
    if method not in METHODS:
        raise ConfigError(
            f"method: unknown {method!r}; use one of {', '.join(METHODS)}"
        )
    c = ml_collections.ConfigDict(c.to_dict())
    c.method = method
    if method == "joint_cpc":
        c.finetune.cpc_weight = 1.0  # [ours] lambda
    if method == "mini_cpc":
        c.pretrain.corpus = "emotion_train"  # the fold's own training audio
    return c


def parse_arg(arg: str) -> tuple[str, dict]:
    """Splits "synthetic,seeds=1,pretrain.num_steps=10" into corpus + overrides."""
    # Split only at commas that start a new FIELD=, so "folds=(1,2)" stays whole.
    parts = [p for p in re.split(r",(?=[A-Za-z_][\w.]*=)", arg or "iemocap") if p]
    corpus, overrides = parts[0], {}
    for part in parts[1:]:
        if "=" not in part:
            raise ConfigError(f"config arg: {part!r} is not FIELD=VALUE")
        key, value = part.split("=", 1)
        try:
            overrides[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key] = value
    return corpus, overrides


def apply_overrides(c: ml_collections.ConfigDict, overrides: dict) -> None:
    """Sets dotted fields, e.g. {"pretrain.num_steps": 10}; unknown fields fail."""
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        target = c
        for name in parents:
            target = (
                target.get(name)
                if isinstance(target, ml_collections.ConfigDict)
                else None
            )
        if not isinstance(target, ml_collections.ConfigDict) or leaf not in target:
            raise ConfigError(f"config override: no field {key!r}")
        target[leaf] = value


def method_config(method: str, arg: str = "iemocap") -> ml_collections.ConfigDict:
    """`get_config` of `configs/<method>.py`."""
    corpus, overrides = parse_arg(arg)
    c = apply_method(base_config(corpus), method)
    apply_overrides(c, overrides)
    return c


def uses_pretraining(c: ml_collections.ConfigDict) -> bool:
    return c.method in ("mini_cpc", "pre_cpc")


def validate(c: ml_collections.ConfigDict) -> None:
    """Fails before anything compiles, naming the field at fault."""

    def need(ok: bool, field: str, why: str) -> None:
        if not ok:
            raise ConfigError(f"config.{field}: {why} (got {_get(c, field)!r})")

    need(c.method in METHODS, "method", f"must be one of {METHODS}")
    need(c.corpus in CORPORA, "corpus", f"must be one of {CORPORA}")
    need(isinstance(c.seeds, int) and c.seeds >= 1, "seeds", "must be an int >= 1")
    need(c.dtype in DTYPES, "dtype", f"must be one of {DTYPES}")
    need(c.model.norm in NORMS, "model.norm", f"must be one of {NORMS}")
    for stage in ("pretrain", "finetune"):
        for field in ("num_steps", "batch_size", "checkpoint_every", "log_every"):
            value = c[stage][field]
            need(
                isinstance(value, int) and value >= 1,
                f"{stage}.{field}",
                "must be an int >= 1",
            )
        need(c[stage].learning_rate > 0, f"{stage}.learning_rate", "must be > 0")
    need(
        c.pretrain.window % 160 == 0 and c.pretrain.window >= 160 * 32,
        "pretrain.window",
        "must be a multiple of 160 samples and >= 5120",
    )
    frames = c.pretrain.window // 160
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
    need(
        c.finetune.input == "context",
        "finetune.input",
        "only 'context' (c_t) is supported",
    )
    if c.corpus != "msp_podcast":
        need(all(1 <= int(f) <= 5 for f in c.folds), "folds", "folds are sessions 1..5")


def _get(c, dotted: str):
    for name in dotted.split("."):
        c = c[name]
    return c
