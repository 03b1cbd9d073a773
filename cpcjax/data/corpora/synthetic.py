"""TFDS builder of the embedded synthetic corpus (see `cpcjax.data.synth`).

Two configs: "unlabeled", many speakers without labels (stands in for
LibriSpeech), and "emotion", five sessions of one female and one male speaker
with activation/valence/dominance labels (stands in for IEMOCAP). Nothing is
downloaded; the audio is generated from the config's seed.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np
import tensorflow_datasets as tfds
from absl import logging as absl_logging
from tensorflow_datasets.core.utils import tqdm_utils

from cpcjax import paths
from cpcjax.constants import SAMPLE_RATE
from cpcjax.data import index, synth

_DESCRIPTION = """\
Synthesized speech-like audio, not recorded speech. A source-filter model
(glottal pulses at a speaker- and emotion-dependent F0 contour through
formant resonators, syllable envelopes, noise bursts for consonants) renders
utterances of synthetic speakers who differ in vocal-tract length and pitch.
In the "emotion" config each utterance has an emotion category and
activation/valence/dominance labels on the IEMOCAP 1-5 scale that are known
functions of its prosody (pitch level and range, speaking rate, loudness,
spectral tilt, jitter) plus rater noise, in 5 sessions of 2 speakers. The
"unlabeled" config holds other speakers without labels.

It exists so the quickstart and the tests can run without licensed corpora:
it checks that the machinery learns. It is not a benchmark of emotion
recognition, and numbers measured on it say nothing about real speech.
"""

_LABELS_DOC = (
    "Mean rater scores on the 1-5 scale, in the order (activation, valence, dominance)."
)


@dataclasses.dataclass(eq=False)
class SyntheticSpeechConfig(tfds.core.BuilderConfig):
    """Which part of the synthetic corpus to build, and how much of it.

    Attributes:
        part: "unlabeled" or "emotion".
        seed: corpus seed; the same seed gives the same audio and labels.
        num_speakers: speakers of the unlabeled part.
        num_sessions: sessions of the emotion part (two speakers each).
        utterances_per_speaker: utterances per speaker; None for the part's
            default.
        min_seconds: shortest utterance; None for the part's default.
        max_seconds: longest utterance; None for the part's default.
    """

    part: str = "unlabeled"
    seed: int = 0
    num_speakers: int = synth.UNLABELED_SPEAKERS
    num_sessions: int = synth.LABELED_SESSIONS
    utterances_per_speaker: int | None = None
    min_seconds: float | None = None
    max_seconds: float | None = None

    def __post_init__(self):
        if self.part == "unlabeled":
            utterances, (shortest, longest) = (
                synth.UNLABELED_UTTERANCES_PER_SPEAKER,
                synth.UNLABELED_SECONDS,
            )
        elif self.part == "emotion":
            utterances, (shortest, longest) = (
                synth.LABELED_UTTERANCES_PER_SPEAKER,
                synth.LABELED_SECONDS,
            )
        else:
            raise ValueError(
                f"part must be 'unlabeled' or 'emotion', got {self.part!r}"
            )
        if self.utterances_per_speaker is None:
            self.utterances_per_speaker = utterances
        if self.min_seconds is None:
            self.min_seconds = shortest
        if self.max_seconds is None:
            self.max_seconds = longest


UNLABELED = SyntheticSpeechConfig(
    name="unlabeled",
    description=(
        f"{synth.UNLABELED_SPEAKERS} speakers x "
        f"{synth.UNLABELED_UTTERANCES_PER_SPEAKER} unlabeled utterances of "
        f"{synth.UNLABELED_SECONDS[0]}-{synth.UNLABELED_SECONDS[1]} s."
    ),
    part="unlabeled",
)
EMOTION = SyntheticSpeechConfig(
    name="emotion",
    description=(
        f"{synth.LABELED_SESSIONS} sessions x 2 speakers x "
        f"{synth.LABELED_UTTERANCES_PER_SPEAKER} labeled utterances of "
        f"{synth.LABELED_SECONDS[0]}-{synth.LABELED_SECONDS[1]} s; one "
        "'train' split, the session field drives leave-one-session-out folds."
    ),
    part="emotion",
)


class SyntheticSpeech(index.IndexedBuilder, tfds.core.GeneratorBasedBuilder):
    """Synthesized speech-like audio with known emotion labels."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [UNLABELED, EMOTION]
    DEFAULT_CONFIG_NAME = "unlabeled"

    def _info(self) -> tfds.core.DatasetInfo:
        features = {
            "audio": tfds.features.Audio(
                shape=(None,), dtype=np.int16, sample_rate=SAMPLE_RATE
            ),
            "id": tfds.features.Text(),
            "speaker": tfds.features.Text(),
        }
        if self.builder_config.part == "emotion":
            features.update(
                session=tfds.features.Scalar(
                    dtype=np.int32, doc="Session 1-5; its two speakers are in no other."
                ),
                category=tfds.features.ClassLabel(names=synth.CATEGORIES),
                labels=tfds.features.Tensor(
                    shape=(3,), dtype=np.float32, doc=_LABELS_DOC
                ),
            )
        return self.dataset_info_from_configs(
            description=_DESCRIPTION,
            features=tfds.features.FeaturesDict(features),
            supervised_keys=None,
            homepage="https://arxiv.org/abs/2102.06357",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # Everything is generated from the seed.
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        config = self.builder_config
        if config.part == "unlabeled":
            yield from synth.unlabeled_examples(
                seed=config.seed,
                num_speakers=config.num_speakers,
                utterances_per_speaker=config.utterances_per_speaker,
                min_seconds=config.min_seconds,
                max_seconds=config.max_seconds,
            )
        else:
            yield from synth.labeled_examples(
                seed=config.seed,
                num_sessions=config.num_sessions,
                utterances_per_speaker=config.utterances_per_speaker,
                min_seconds=config.min_seconds,
                max_seconds=config.max_seconds,
            )


def load_synthetic(
    config_name: str | SyntheticSpeechConfig, data_dir: str | os.PathLike
) -> SyntheticSpeech:
    """Returns the synthetic corpus's builder, prepared under `data_dir`.

    Generates the corpus (with a progress bar) only if it is not prepared
    yet; nothing is downloaded. Read it with
    `builder.as_data_source(split="train")` (random access) or
    `builder.as_dataset(split="train")`.

    A prepared corpus is found by config name and version, so a custom
    config with other sizes or seed needs a name of its own.

    Args:
        config_name: "unlabeled" or "emotion", or a `SyntheticSpeechConfig`
            with another name (e.g. a tiny corpus for tests).
        data_dir: the TFDS data directory.

    Returns:
        The prepared builder, in array_record format.
    """
    data_dir = paths.resolve(data_dir)
    builder = SyntheticSpeech(config=config_name, data_dir=data_dir)
    if builder.is_prepared():
        return builder
    download_config = tfds.download.DownloadConfig(
        try_download_gcs=False,
        download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS,
    )
    # Generation takes seconds to minutes; cpcjax says so in its own line,
    # and TFDS's bars and banners stay off.
    name = builder.builder_config.name
    logging.getLogger("cpcjax").info(
        "synthetic corpus: generating %s in %s (once; later runs read it)",
        name,
        data_dir,
    )
    was_shown = getattr(tqdm_utils, "_active", True)
    tfds.disable_progress_bar()
    absl_logging.set_verbosity(absl_logging.ERROR)
    # ArrayRecord writes local files only: a remote data dir gets a copy.
    try:
        with paths.staged_dir(data_dir, exclude=paths.TFDS_SCRATCH) as local:
            staged = SyntheticSpeech(config=config_name, data_dir=local)
            # TFDS prints its banners with print(), whatever the log level.
            staged._log_download_bytes = staged._log_download_done = lambda: None
            staged.download_and_prepare(
                file_format="array_record", download_config=download_config
            )
    finally:
        tfds.display_progress_bar(was_shown)
    return SyntheticSpeech(config=config_name, data_dir=data_dir)
