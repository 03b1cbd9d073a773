"""Corpora by name -> indexed, random-access `Utterances`."""

from __future__ import annotations

import os

from cpcjax.data import pipeline

PREPARE_HINT = {
    "iemocap": "python -m cpcjax.prepare iemocap --manual_dir=/path/to/IEMOCAP_full_release",
    "msp_podcast": "python -m cpcjax.prepare msp_podcast --manual_dir=/path/to/MSP-PODCAST-Publish-1.x",
    "librispeech": "python -m cpcjax.prepare librispeech --manual_dir=/path/to/LibriSpeech",
}


class CorpusNotPrepared(RuntimeError):
    """A corpus that must be prepared from the user's own files first."""


def _not_prepared(name: str, data_dir: str) -> CorpusNotPrepared:
    return CorpusNotPrepared(
        f"corpus {name!r} is not prepared in {data_dir}: it is built once from your "
        f"licensed copy with `{PREPARE_HINT[name]}` (that builder is not part of this "
        f"release yet); run a config with :synthetic meanwhile"
    )


def data_dir(config) -> str:
    return os.path.expanduser(config.data_dir)


def check_prepared(config) -> None:
    """Fails in one line, before any work, if a corpus the run needs is missing."""
    needed = [config.corpus]
    if config.method == "pre_cpc" and config.pretrain.corpus != "synthetic_unlabeled":
        needed.append(config.pretrain.corpus)
    for name in needed:
        if name in PREPARE_HINT:
            raise _not_prepared(name, data_dir(config))


def _synthetic(config, part: str):
    """The synthetic corpus' builder for `part`; sizes other than the default
    get a config name of their own so both can live in one data dir."""
    from cpcjax.data.corpora import synthetic

    s = config.synthetic
    if part == "emotion":
        sizes = dict(utterances_per_speaker=s.emotion_utterances_per_speaker)
    else:
        sizes = dict(num_speakers=s.unlabeled_speakers,
                     utterances_per_speaker=s.unlabeled_utterances_per_speaker)
    default = synthetic.SyntheticSpeechConfig(name=part, part=part)
    if s.seed == default.seed and all(getattr(default, k) == v for k, v in sizes.items()):
        return synthetic.load_synthetic(part, data_dir(config))
    name = f"{part}_seed{s.seed}_" + "_".join(f"{k}{v}" for k, v in sorted(sizes.items()))
    return synthetic.load_synthetic(
        synthetic.SyntheticSpeechConfig(name=name, part=part, seed=s.seed, **sizes),
        data_dir(config))


def emotion_corpus(config) -> pipeline.Utterances:
    """The labeled corpus of `config.corpus`, indexed."""
    if config.corpus != "synthetic":
        raise _not_prepared(config.corpus, data_dir(config))
    builder = _synthetic(config, "emotion")
    return pipeline.index_source(builder.as_data_source("train"), labeled=True,
                                 desc="emotion corpus")


def unlabeled_corpus(config) -> pipeline.Utterances:
    """The pretraining corpus of preCPC (`config.pretrain.corpus`), indexed."""
    name = config.pretrain.corpus
    if name != "synthetic_unlabeled":
        raise _not_prepared(name, data_dir(config))
    builder = _synthetic(config, "unlabeled")
    return pipeline.index_source(builder.as_data_source("train"), labeled=False,
                                 desc="unlabeled corpus")
