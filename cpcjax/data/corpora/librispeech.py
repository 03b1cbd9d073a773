"""TFDS builder of LibriSpeech read from the user's extracted copy (no download).

TFDS's stock `librispeech` builder downloads all 57 GiB and needs pydub and
ffmpeg to prepare. This one, `librispeech_manual`, reads the subsets the user
already extracted:

    LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<n>.flac

libsndfile reads flac, so nothing beyond `soundfile` is needed. Transcripts
(`*.trans.txt`) are not read: the audio is unlabeled pretraining data here.

A config is a selection of subsets, prepared as one "train" split. The
predefined ones are "train-clean-100" (the default, 251 speakers), "train-clean-360",
"train-other-500" and "train-960" (all three); `config_for(...)` makes one for
any other selection, named by its subsets joined with "+" in sorted order,
e.g. "dev-clean+train-clean-100".

A file whose name is not `<speaker>-<chapter>-<n>.flac` or whose audio is
unusable is skipped and listed with its reason in
`prepare_report_librispeech_manual_<config>.tsv` in the data directory.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable

import tensorflow_datasets as tfds

from cpcjax.data.corpora import base

RELEASE_DIR = "LibriSpeech"
# (utterances, speakers) of each subset in the OpenSLR release; they set the
# count a full copy must give, so a partial extraction is noticed.
KNOWN_SUBSETS = {
    "train-clean-100": (28539, 251),
    "train-clean-360": (104014, 921),
    "train-other-500": (148688, 1166),
    "dev-clean": (2703, 40),
    "dev-other": (2864, 33),
    "test-clean": (2620, 40),
    "test-other": (2939, 33),
}
TRAIN_960 = ("train-clean-100", "train-clean-360", "train-other-500")
FILE_NAME = re.compile(r"^(\d+)-(\d+)-(\d+)\.flac$")
BAD_NAME = "name not <speaker>-<chapter>-<n>.flac"
# What TFDS accepts in a config name; "+" joins subsets, so no subset may hold it.
_SUBSET_NAME = re.compile(r"^[\w\-.]+$")

_DESCRIPTION = """\
LibriSpeech (Panayotov et al., 2015): read English audiobook speech, 16 kHz,
from LibriVox, in the subsets of the config. Used here as unlabeled speech for
contrastive pretraining: each example is one utterance's audio with its
speaker, chapter and subset; transcripts are not included.
"""

_CITATION = """\
@inproceedings{panayotov2015librispeech,
  title={Librispeech: an ASR corpus based on public domain audio books},
  author={Panayotov, Vassil and Chen, Guoguo and Povey, Daniel and Khudanpur, Sanjeev},
  booktitle={2015 IEEE International Conference on Acoustics, Speech and Signal
             Processing (ICASSP)},
  pages={5206--5210},
  year={2015}
}
"""


@dataclasses.dataclass(eq=False)
class LibriSpeechConfig(tfds.core.BuilderConfig):
    """A selection of LibriSpeech subsets, prepared as one "train" split.

    Make one with `config_for(subsets)` rather than directly, so that the
    same selection always gets the same name (and so the same prepared data).

    Attributes:
        subsets: folder names under `LibriSpeech/`, e.g. ("train-clean-100",).
            Names outside KNOWN_SUBSETS (e.g. Mini LibriSpeech's
            "train-clean-5") are accepted; the count check is then skipped.
    """

    subsets: tuple[str, ...] = ("train-clean-100",)

    def __post_init__(self):
        self.subsets = tuple(self.subsets)
        if not self.subsets:
            raise ValueError(
                f"{self.name}: subsets is empty; name at least one, "
                f"e.g. train-clean-100"
            )
        bad = [s for s in self.subsets if not _SUBSET_NAME.match(s)]
        if bad:
            raise ValueError(
                f"{self.name}: subsets {bad} are not folder names "
                f"(letters, digits, '-', '_', '.')"
            )
        if len(set(self.subsets)) != len(self.subsets):
            raise ValueError(f"{self.name}: subsets {self.subsets} repeat a subset")

    @property
    def expected_count(self) -> int | None:
        """Utterances of these subsets in the full release; None if one is unknown."""
        if any(s not in KNOWN_SUBSETS for s in self.subsets):
            return None
        return sum(KNOWN_SUBSETS[s][0] for s in self.subsets)


def _describe(subsets: tuple[str, ...]) -> str:
    parts = []
    for s in subsets:
        if s in KNOWN_SUBSETS:
            utterances, speakers = KNOWN_SUBSETS[s]
            parts.append(f"{s} ({utterances} utterances, {speakers} speakers)")
        else:
            parts.append(s)
    return "LibriSpeech " + " + ".join(parts) + ", one 'train' split."


BUILDER_CONFIGS = [
    LibriSpeechConfig(name=name, subsets=subsets, description=_describe(subsets))
    for name, subsets in [
        ("train-clean-100", ("train-clean-100",)),
        ("train-clean-360", ("train-clean-360",)),
        ("train-other-500", ("train-other-500",)),
        ("train-960", TRAIN_960),
    ]
]


def config_for(subsets: str | Iterable[str]) -> LibriSpeechConfig:
    """The config of a selection of subsets, named by the selection.

    The same selection in any order gives the same config: a predefined one
    where it matches ("train-960" for the three training subsets), else one
    named by the sorted subsets joined with "+", e.g.
    "dev-clean+train-clean-100". Predefined objects are returned as they
    are, since TFDS refuses a custom config named like a predefined one.

    Args:
        subsets: subset folder names or predefined config names (such as
            "train-960"), as a sequence or one string joined by "+" or ",".

    Returns:
        The config to pass as `LibriSpeechManual(config=...)`.
    """
    if isinstance(subsets, str):
        subsets = re.split(r"[+,]", subsets)
    # "train-960" is no folder: a predefined name stands for its subsets.
    predefined = {c.name: c.subsets for c in BUILDER_CONFIGS}
    wanted = tuple(
        sorted(
            {
                part
                for s in subsets
                if s.strip()
                for part in predefined.get(s.strip(), (s.strip(),))
            }
        )
    )
    if not wanted:
        raise ValueError(
            "librispeech: no subsets given; name at least one, e.g. train-clean-100"
        )
    for config in BUILDER_CONFIGS:
        if tuple(sorted(config.subsets)) == wanted:
            return config
    name = "+".join(wanted)
    return LibriSpeechConfig(name=name, subsets=wanted, description=_describe(wanted))


@dataclasses.dataclass(frozen=True)
class Utterance:
    """One flac file of the selection.

    Attributes:
        id: "<speaker>-<chapter>-<n>", e.g. "19-198-0001".
        speaker: LibriSpeech speaker id, e.g. "19".
        chapter: chapter id, e.g. "198".
        subset: the subset folder it came from, e.g. "train-clean-100".
        path: the flac file.
    """

    id: str
    speaker: str
    chapter: str
    subset: str
    path: str


class LibriSpeechManual(base.ManualCorpusBuilder):
    """LibriSpeech subsets from an extracted copy, as unlabeled speech."""

    # Not "librispeech": that name is TFDS's stock (downloading) builder,
    # which users who prepared it must still be able to load.
    name = "librispeech_manual"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = BUILDER_CONFIGS
    DEFAULT_CONFIG_NAME = "train-clean-100"
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Download the subsets you want from https://www.openslr.org/12 (e.g.
train-clean-100.tar.gz) and extract them in one folder: each archive unpacks
to `{RELEASE_DIR}/<subset>/`. Pass that `{RELEASE_DIR}/` folder, or the folder
holding it, as the manual dir.
"""
    EXPECTED_LAYOUT = f"""\
{RELEASE_DIR}/                    <- manual_dir (or its parent)
  <subset>/                     e.g. train-clean-100, train-clean-360, dev-clean
    <speaker>/<chapter>/
      <speaker>-<chapter>-<n>.flac     e.g. 19/198/19-198-0001.flac
      <speaker>-<chapter>.trans.txt    (ignored)
"""

    def __init__(
        self, *, config: str | tfds.core.BuilderConfig | None = None, **kwargs
    ):
        # TFDS resolves a string only among the predefined configs; any other
        # selection ("dev-clean+train-clean-100") is built here, so it also
        # works as `tfds.builder("librispeech_manual/dev-clean+train-clean-100")`.
        if isinstance(config, str) and ":" not in config:
            config = config_for(config)
        super().__init__(config=config, **kwargs)

    @property
    def EXPECTED_COUNT(self) -> int | None:  # noqa: N802 (the base's attribute name)
        """Utterances of the config's subsets in the full release (None if unknown)."""
        return self.builder_config.expected_count

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=_DESCRIPTION,
            features=tfds.features.FeaturesDict(
                {
                    "audio": base.audio_feature(),
                    "id": tfds.features.Text(doc="Utterance id, e.g. 19-198-0001."),
                    "speaker": tfds.features.Text(
                        doc="LibriSpeech speaker id, e.g. 19."
                    ),
                    "chapter": tfds.features.Text(
                        doc="Chapter (book section) id, e.g. 198."
                    ),
                    "subset": tfds.features.Text(
                        doc="Subset folder, e.g. train-clean-100."
                    ),
                }
            ),
            supervised_keys=None,
            homepage="https://www.openslr.org/12",
            citation=_CITATION,
        )

    def release_root(self, root: str) -> str:
        """The folder holding the subset folders: `root` or its `LibriSpeech/`.

        Raises:
            base.LayoutError: a subset of the config has no folder there.
        """
        subsets = self.builder_config.subsets
        nested = os.path.join(root, RELEASE_DIR)
        here = any(os.path.isdir(os.path.join(root, s)) for s in subsets)
        if not here and os.path.isdir(nested):
            root = nested
        missing = [s for s in subsets if not os.path.isdir(os.path.join(root, s))]
        if missing:
            found = sorted(
                e.name
                for e in os.scandir(root)
                if e.is_dir() and not e.name.startswith(".")
            )
            raise base.LayoutError(
                f"{self.name}: {root} lacks the subset folder(s) {', '.join(missing)} "
                f"(it holds: {', '.join(found) or 'no folders'}); extract "
                f"{', '.join(m + '.tar.gz' for m in missing)} there or choose other "
                f"subsets; expected layout:\n{self.EXPECTED_LAYOUT}"
            )
        return root

    def utterances(self, root: str) -> list[Utterance]:
        """Every correctly named flac of the config's subsets, in sorted path order.

        Misnamed or misplaced files and ids seen twice are recorded in
        `self.problems`.
        """
        found: dict[str, Utterance] = {}
        for subset in self.builder_config.subsets:
            subset_dir = os.path.join(root, subset)
            for dirpath, dirnames, filenames in os.walk(subset_dir):
                # Sorted for a reproducible report; dot-entries are OS clutter
                # (macOS `._*` resource forks, .DS_Store), not misnamed audio.
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for name in sorted(filenames):
                    if name.startswith(".") or name.endswith(".trans.txt"):
                        continue
                    path = os.path.join(dirpath, name)
                    m = FILE_NAME.match(name)
                    if not m:
                        self.problems.add("audio", path, BAD_NAME)
                        continue
                    speaker, chapter, _ = m.groups()
                    folders = os.path.relpath(dirpath, subset_dir).split(os.sep)
                    if folders != [speaker, chapter]:
                        self.problems.add(
                            "audio",
                            path,
                            f"not in its folder {subset}/{speaker}/{chapter}/",
                        )
                        continue
                    utt_id = name[: -len(".flac")]
                    if utt_id in found:
                        self.problems.add(
                            "audio",
                            path,
                            f"duplicate of {found[utt_id].path} (kept the first)",
                        )
                        continue
                    found[utt_id] = Utterance(utt_id, speaker, chapter, subset, path)
        return list(found.values())

    def _generate_examples(self, utterances: list[Utterance]):
        desc = f"{self.name}/{self.builder_config.name}: decoding"
        for utt, wav in self.decoded(utterances, lambda u: u.path, desc=desc):
            yield (
                utt.id,
                {
                    "audio": wav,
                    "id": utt.id,
                    "speaker": utt.speaker,
                    "chapter": utt.chapter,
                    "subset": utt.subset,
                },
            )
        self.finish()
