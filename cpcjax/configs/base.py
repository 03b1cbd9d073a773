"""The base config every method file starts from: model, stages, corpus presets.

Every number of a run lives here or in a method file; decisions the paper
leaves open are marked `[ours]`. A corpus is chosen by the config argument
(`--config=configs/pre_cpc.py:msp_podcast`); what differs between corpora is
the table `PRESETS`, applied field by field.
"""

import os

import ml_collections

from cpcjax.config import CORPORA, ConfigError, set_fields

DEFAULT_DATA_DIR = os.path.join("~", "cpcjax_data")
# The unlabeled corpus that preCPC pretrains on, per emotion corpus.
UNLABELED = {
    "iemocap": "librispeech",
    "msp_podcast": "librispeech",
    "synthetic": "synthetic_unlabeled",
}
# Sections of fields a corpus has of its own: section -> field -> value.
SECTIONS = {
    "synthetic": {
        "synthetic": {
            "seed": 0,  # the corpus' seed; another seed is another corpus
            "unlabeled_speakers": 40,
            "unlabeled_utterances_per_speaker": 10,
            "emotion_utterances_per_speaker": 50,  # x 2 speakers x 5 sessions
        }
    }
}
# What differs between corpora, as dotted field -> value.
PRESETS = {
    "iemocap": {},
    "msp_podcast": {"finetune.patience": 6},  # [ours] early stopping on Development
    # A model and schedule for a laptop CPU: the demo runs all four methods in
    # minutes. Per-frame channel norm slows early CPC learning of so small an
    # encoder badly (InfoNCE 41.1 vs 32.8 after 400 steps): the demo does without.
    "synthetic": {
        "seeds": 2,
        "model.channels": 32,
        "model.norm": "none",
        "model.context_hidden": 64,
        "model.num_negatives": 32,
        "model.negatives_group_size": 4,
        # At 32 channels scoring only the drawn frames is 10x faster than
        # scoring whole groups (docs/performance.md#the-demos-profile).
        "model.negatives": "shared_groups",
        "model.d_model": 64,
        "model.mlp_hidden": 64,
        "pretrain.num_steps": 400,
        "pretrain.batch_size": 8,
        "pretrain.window": 10240,
        "pretrain.learning_rate": 1e-3,
        "pretrain.warmup_steps": 20,
        "pretrain.checkpoint_every": 100,
        "pretrain.log_every": 10,
        "finetune.num_steps": 100,
        "finetune.batch_size": 16,
        # The head learns at 3e-3, the encoder and context network at 1e-3:
        # dev's pick at 100 steps (README, "Where cpcjax differs").
        "finetune.learning_rate": 3e-3,
        "finetune.encoder_lr_scale": 1 / 3,
        "finetune.warmup_steps": 10,
        "finetune.checkpoint_every": 60,
        "finetune.log_every": 10,
        "finetune.buckets": (1.0, 1.5),
        "finetune.eval_batch_size": 32,
        "finetune.eval_every": 25,
    },
}


def get_config(corpus: str = "iemocap") -> ml_collections.ConfigDict:
    """The base config for `corpus`: supervised only, no pretraining stage."""
    if corpus not in CORPORA:
        raise ConfigError(
            f"config argument: unknown corpus {corpus!r}; use one of "
            f"{', '.join(CORPORA)}"
        )
    c = ml_collections.ConfigDict()
    c.method = "sup"  # the method's name in reports and folder names
    c.corpus = corpus
    c.data_dir = os.environ.get("CPCJAX_DATA_DIR", DEFAULT_DATA_DIR)
    c.seed = 0  # base seed; seed s of a table cell uses seed + s
    c.seeds = 3  # [ours] repeated runs per table cell
    c.folds = ()  # empty = every fold of the protocol; e.g. (1,) for one
    c.dtype = "float32"  # computation dtype; params and optimizer stay float32
    # [ours] Decoded audio kept in host memory once read, per corpus and
    # process (IEMOCAP's 12 h take 1.4 GiB); 0 reads every record each time.
    c.audio_cache_gib = 2.0
    # [ours] Independent stages (the fine-tuning runs of every fold and seed,
    # the per-fold CPC stages) one process trains at once, on threads. Each
    # gives the same numbers as alone; a small model leaves CPU cores idle
    # between its ops, which a second run fills. 0 = 2 on a CPU backend with
    # one process, else 1 (a multi-process run issues its programs in one
    # order on every process, so it always runs 1).
    c.concurrent_runs = 0

    m = c.model = ml_collections.ConfigDict()
    m.channels = 512
    # [ours] per-frame channel norm. none | channel | layer | instance; in
    # CPC_audio's --normMode names: ID = none, layerNorm = channel (its
    # ChannelNorm), instanceNorm = instance. Its batchNorm is not offered.
    m.norm = "channel"
    m.context_hidden = 256
    m.context_cell = "gru"  # gru | lstm (CPC_audio's --arMode, default LSTM)
    m.context_layers = 1  # stacked recurrent layers (CPC_audio's --nLevelsGRU)
    m.predict_steps = 12
    # linear: one bias-free map per step (the paper); transformer: CPC_audio's
    # default one-layer transformer heads, which need context_hidden ==
    # channels and run only on pretraining windows (not with jointCPC).
    m.predict_heads = "linear"
    m.score = "raw"  # raw: zhat . z; scaled: zhat . z / channels (CPC_audio's)
    m.num_negatives = 128  # [ours] N-1 negatives per prediction
    # groups: [ours] from fixed groups of negatives_group_size utterances, per
    # step; every prediction is scored against every frame of its group in one
    # matmul, then its negatives are picked (fastest when the channels are many
    # and memory allows T^2 per group). shared_groups: the same pools, one
    # draw per frame shared by the K steps as CPC_audio shares them; only the
    # drawn frames are scored (fastest when the channels are few, and memory
    # grows with T). speaker: from the batch's utterances of the same speaker,
    # shared by the steps (CPC_audio's default; pretraining only).
    m.negatives = "groups"
    m.negatives_group_size = 8  # [ours] utterances sharing a negative pool
    m.attention_heads = 4  # [ours]
    m.d_model = 256  # [ours]
    m.mlp_hidden = 256  # [ours]
    m.dropout = 0.1  # [ours] in the regression head

    p = c.pretrain = ml_collections.ConfigDict()
    # The CPC stage's audio: none (no CPC stage); emotion_train (each fold's own
    # training audio, labels unused); or an unlabeled corpus: librispeech
    # (subsets below), librispeech_tfds (TFDS's stock builder),
    # audio_folder:<name> (a folder prepared with `cpcjax.prepare audio_folder`),
    # synthetic_unlabeled.
    p.corpus = "none"
    # An earlier CPC stage (a workdir's pretrain/ or pretrain/fold<k>/) or an
    # import_cpc_audio folder: no pretraining is run, fine-tuning starts from
    # it (finetune.init_from="pretrain"), and its model config wins.
    p.init_from = ""
    p.librispeech_subsets = ("train-clean-100",)  # [ours] the original CPC's 100 h
    p.num_steps = 300_000  # van den Oord et al.
    p.batch_size = 64  # [ours] 8 windows x 8 devices of the original CPC
    p.window = 20480  # samples; 128 frames
    p.learning_rate = 2e-4
    p.warmup_steps = 1000  # [ours]
    p.checkpoint_every = 5000
    p.log_every = 100

    f = c.finetune = ml_collections.ConfigDict()
    # Where the encoder and context network start: "" (random init), "pretrain"
    # (this run's CPC stage), or the checkpoints/ directory of another CPC stage.
    f.init_from = ""
    f.cpc_weight = 0.0  # lambda of InfoNCE added to the CCC loss (jointCPC)
    f.freeze_cpc = False  # [ours] pretrained encoder + GRU are fine-tuned
    # [ours] The encoder and context network's learning rate, relative to the
    # head's, and the steps they are held still at the start (the head alone
    # learns; then theirs warms up).
    f.encoder_lr_scale = 1.0
    f.freeze_steps = 0
    f.num_steps = 6000  # [ours]
    f.batch_size = 32  # [ours]
    f.learning_rate = 1e-4  # [ours]
    f.warmup_steps = 200  # [ours]
    f.checkpoint_every = 1000
    f.log_every = 50
    f.alpha = 1.0 / 3  # [ours] CCC weight of activation
    f.beta = 1.0 / 3  # [ours] CCC weight of valence
    f.buckets = (2.0, 4.0, 8.0, 16.0)  # [ours] seconds; longer ones are cropped
    # [ours] The IEMOCAP dev split: whole held-out speakers of the training
    # sessions, unseen in training as the test's are ("utterances": random
    # utterances instead), holding at least dev_fraction of the utterances.
    f.dev_split = "speakers"
    f.dev_fraction = 0.1
    f.eval_batch_size = 32
    f.eval_every = 500  # [ours] dev CCC; the best dev avg CCC picks the model
    f.patience = 0  # [ours] evaluations without a new best before stopping; 0 = never

    a = c.analysis = ml_collections.ConfigDict()
    a.probe = True  # linear probe of the frozen CPC features (with a CPC stage)
    a.plots = True  # training curves, predicted vs true, t-SNE

    for section, fields in SECTIONS.get(corpus, {}).items():
        c[section] = ml_collections.ConfigDict(fields)
    set_fields(c, PRESETS[corpus])
    return c
