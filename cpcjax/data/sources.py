"""Corpora by name -> TFDS builders -> indexed, random-access `Utterances`.

Emotion corpora (`config.corpus`): synthetic, iemocap, msp_podcast.
Pretraining corpora (`config.pretrain.corpus`): librispeech (our builder over
an extracted copy, subsets from `config.pretrain.librispeech_subsets`),
librispeech_tfds (TFDS's stock `librispeech`, prepared or converted to
ArrayRecord with `cpcjax.prepare librispeech_tfds`),
audio_folder:<name> (any folder prepared with `cpcjax.prepare audio_folder`),
synthetic_unlabeled, and emotion_train (miniCPC: the fold's training audio).
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np

from cpcjax import paths
from cpcjax.data import index, pipeline

# What follows `python -m cpcjax.prepare` to prepare each corpus.
PREPARE_ARGS = {
    "iemocap": "iemocap --manual_dir=/path/to/IEMOCAP_full_release",
    "msp_podcast": "msp_podcast --manual_dir=/path/to/MSP-PODCAST-Publish-1.x",
    "librispeech": "librispeech --manual_dir=/path/to/LibriSpeech --subsets={subsets}",
    "audio_folder": "audio_folder --manual_dir=/path/to/folder --name={name}",
    "librispeech_tfds": "librispeech_tfds",
}
# TFDS's stock librispeech names its splits without the dash.
STOCK_LIBRISPEECH_SPLITS = {
    "train-clean-100": "train_clean100",
    "train-clean-360": "train_clean360",
    "train-other-500": "train_other500",
    "dev-clean": "dev_clean",
    "dev-other": "dev_other",
    "test-clean": "test_clean",
    "test-other": "test_other",
}
MSP_PARTITIONS = ("train", "development", "test1", "test2")


class CorpusNotPrepared(RuntimeError):
    """A corpus that must be prepared from the user's own files first."""


def data_dir(config) -> str:
    return paths.resolve(config.data_dir)


def builder_for(
    corpus: str,
    root: str,
    subsets=("train-clean-100",),
    name=None,
    speaker_pattern=None,
    audio_dir="Audios",
    labels_dir="Labels",
):
    """The TFDS builder of `corpus` in data dir `root` (prepared or not)."""
    if corpus == "iemocap":
        from cpcjax.data.corpora import iemocap

        return iemocap.Iemocap(data_dir=root)
    if corpus == "msp_podcast":
        from cpcjax.data.corpora import msp_podcast

        return msp_podcast.MspPodcast(
            data_dir=root,
            config=msp_podcast.MspPodcastConfig(
                name="default", audio_dir=audio_dir, labels_dir=labels_dir
            ),
        )
    if corpus == "librispeech":
        from cpcjax.data.corpora import librispeech

        return librispeech.LibriSpeechManual(
            data_dir=root, config=librispeech.config_for(tuple(subsets))
        )
    if corpus == "audio_folder":
        from cpcjax.data.corpora import audio_folder

        kwargs = {} if speaker_pattern is None else {"speaker_pattern": speaker_pattern}
        return audio_folder.AudioFolder(
            data_dir=root, config=audio_folder.folder_config(name, **kwargs)
        )
    if corpus == "librispeech_tfds":
        import tensorflow_datasets as tfds

        return tfds.builder("librispeech", data_dir=root)
    raise ValueError(f"unknown corpus {corpus!r}")


def _pretrain_builder(config):
    name = config.pretrain.corpus
    if name.startswith("audio_folder:"):
        return "audio_folder", {"name": name.split(":", 1)[1]}
    if name == "librispeech":
        return name, {"subsets": tuple(config.pretrain.librispeech_subsets)}
    return name, {}


def _hint(corpus: str, **options) -> str:
    args = PREPARE_ARGS[corpus].format(
        **{k: ",".join(v) if isinstance(v, tuple) else v for k, v in options.items()}
    )
    return f"python -m cpcjax.prepare {args}"


def _not_prepared(corpus: str, root: str, **options) -> CorpusNotPrepared:
    how = "" if corpus == "librispeech_tfds" else " from your own copy"
    return CorpusNotPrepared(
        f"corpus {corpus!r} is not prepared in {root}: prepare it once{how} with "
        f"`{_hint(corpus, **options)}` (add --data_dir={root} if that is not the "
        f"default)"
    )


def random_access(builder) -> bool:
    """Whether a prepared dataset holds files `as_data_source` reads (ArrayRecord).

    TFDS prepares TFRecord files unless told otherwise, and its `is_prepared`
    says yes to them, but they can only be streamed.
    """
    import tensorflow_datasets as tfds

    formats = builder.info.available_file_formats()
    return bool(formats & set(tfds.core.FileFormat.with_random_access()))


def _prepared(corpus: str, root: str, **options):
    builder = builder_for(corpus, root, **options)
    if not builder.is_prepared():
        raise _not_prepared(corpus, root, **options)
    if not random_access(builder):
        raise CorpusNotPrepared(
            f"corpus {corpus!r} in {builder.data_dir} is prepared as "
            f"{builder.info.file_format.value} only, which cpcjax cannot read at "
            f"random: add an ArrayRecord copy once with "
            f"`{_hint(corpus, **options)} --data_dir={root}`"
        )
    return builder


def check_prepared(config) -> None:
    """Fails in one line, before any work, if a corpus the run needs is missing."""
    root = data_dir(config)
    if config.corpus != "synthetic":
        _prepared(config.corpus, root)
    if config.pretrain.init_from:
        return  # no pretraining: its corpus is not read
    if config.pretrain.corpus not in ("none", "emotion_train", "synthetic_unlabeled"):
        corpus, options = _pretrain_builder(config)
        _prepared(corpus, root, **options)


def _synthetic(config, part: str):
    """The synthetic corpus' builder for `part`; sizes other than the default
    get a config name of their own so both can live in one data dir."""
    from cpcjax.data.corpora import synthetic

    s = config.synthetic
    if part == "emotion":
        sizes = dict(utterances_per_speaker=s.emotion_utterances_per_speaker)
    else:
        sizes = dict(
            num_speakers=s.unlabeled_speakers,
            utterances_per_speaker=s.unlabeled_utterances_per_speaker,
        )
    default = synthetic.SyntheticSpeechConfig(name=part, part=part)
    if s.seed == default.seed and all(
        getattr(default, k) == v for k, v in sizes.items()
    ):
        return synthetic.load_synthetic(part, data_dir(config))
    name = f"{part}_seed{s.seed}_" + "_".join(
        f"{k}{v}" for k, v in sorted(sizes.items())
    )
    return synthetic.load_synthetic(
        synthetic.SyntheticSpeechConfig(name=name, part=part, seed=s.seed, **sizes),
        data_dir(config),
    )


class ConcatSource:
    """Random access over several sources, one after the other."""

    def __init__(self, sources):
        self.sources = list(sources)
        self.starts = np.cumsum([0] + [len(s) for s in self.sources])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, i: int):
        k = int(np.searchsorted(self.starts, i, side="right")) - 1
        return self.sources[k][i - int(self.starts[k])]


class RenamedSource:
    """A source whose examples carry their fields under other names."""

    def __init__(self, source, names: dict[str, str]):
        self.source, self.names = source, names

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int):
        ex = self.source[i]
        return {self.names.get(k, k): v for k, v in ex.items()}


class AudioCache:
    """A source whose examples stay in host memory once read, up to a budget.

    Training reads every utterance again each epoch; reading its record and
    parsing the example again costs the host more than a small model's step,
    on the cores the step needs. Examples past the budget are read each time.
    """

    def __init__(self, source, budget_bytes: int):
        self.source, self.budget = source, budget_bytes
        self.kept: dict[int, dict] = {}
        self.used = 0
        self.lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int):
        ex = self.kept.get(i)
        if ex is not None:
            return ex
        ex = self.source[i]
        size = sum(np.asarray(v).nbytes for v in ex.values())
        with self.lock:
            if i not in self.kept and self.used + size <= self.budget:
                self.kept[i] = ex
                self.used += size
        return ex


def _cached(config, utts: pipeline.Utterances) -> pipeline.Utterances:
    budget = int(config.audio_cache_gib * 2**30)
    if budget <= 0:
        return utts
    return dataclasses.replace(utts, source=AudioCache(utts.source, budget))


def emotion_corpus(config) -> pipeline.Utterances:
    """The labeled corpus of `config.corpus`, from its index (no audio read),
    its audio kept in memory once read (`config.audio_cache_gib`)."""
    return _cached(config, _emotion_corpus(config))


def _emotion_corpus(config) -> pipeline.Utterances:
    """The labeled corpus of `config.corpus`, from its index (no audio read).

    MSP-Podcast's official partitions are concatenated; `partitions` says
    which one each utterance belongs to.
    """
    root = data_dir(config)
    if config.corpus == "synthetic":
        builder = _synthetic(config, "emotion")
        return index.utterances(builder, ["train"], labeled=True, desc="emotion corpus")
    builder = _prepared(config.corpus, root)
    if config.corpus == "iemocap":
        return index.utterances(builder, ["train"], labeled=True, desc="iemocap")
    splits = [s for s in MSP_PARTITIONS if s in builder.info.splits]
    return index.utterances(
        builder, splits, labeled=True, desc="msp_podcast", partitions=True
    )


def unlabeled_corpus(config) -> pipeline.Utterances:
    """The unlabeled pretraining corpus `config.pretrain.corpus`, from its index,
    its audio kept in memory once read (`config.audio_cache_gib`)."""
    return _cached(config, _unlabeled_corpus(config))


def _unlabeled_corpus(config) -> pipeline.Utterances:
    if config.pretrain.corpus == "synthetic_unlabeled":
        builder = _synthetic(config, "unlabeled")
        return index.utterances(
            builder, ["train"], labeled=False, desc="unlabeled corpus"
        )
    corpus, options = _pretrain_builder(config)
    builder = _prepared(corpus, data_dir(config), **options)
    splits = ["train"]
    if corpus == "librispeech_tfds":
        subsets = config.pretrain.librispeech_subsets
        splits = [STOCK_LIBRISPEECH_SPLITS[s] for s in subsets]
    return index.utterances(builder, splits, labeled=False, desc=config.pretrain.corpus)


def category_names(config) -> list[str]:
    """Names of the emotion corpus' category codes, in label order."""
    if config.corpus == "synthetic":
        builder = _synthetic(config, "emotion")
    else:
        builder = _prepared(config.corpus, data_dir(config))
    return list(builder.info.features["category"].names)
