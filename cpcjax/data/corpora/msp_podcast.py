"""TFDS builder of MSP-Podcast from the user's extracted release.

The corpus is licensed (UT Dallas), so nothing is downloaded: the builder
reads the release the user extracted into the manual dir, e.g.
`MSP-PODCAST-Publish-1.11/`, with its audio in `Audios/` and its consensus
labels in `Labels/labels_consensus.csv` (`labels_concensus.csv` up to v1.8).

Conventions of the prepared corpus:
- Splits follow `Split_Set`: Train -> "train", Development (called
  Validation up to v1.8) -> "development", Test1 -> "test1", Test2 ->
  "test2". Test3 has no public labels: its rows are left out, counted in the
  summary line, and are not problems (nothing is wrong with them). Only
  splits that have rows exist.
- "labels" are the consensus scores on the 1-7 scale in the order
  (activation, valence, dominance), i.e. (EmoAct, EmoVal, EmoDom); the file
  itself has activation first too, but other tools reorder them.
- "speaker" is `SpkrID` as written ("30"), except that `Unknown` or an empty
  id becomes "unknown": all such utterances share that one name, so code that
  needs speaker identity must treat "unknown" as "no speaker", not as one
  person. "gender" is `Gender` in lower case ("male", "female", "unknown").
- "category" is the `EmoClass` code. A code outside the ten documented ones
  is recorded as a label problem and its row skipped: it most likely means
  the file's format changed, which a silent mapping to "X" would hide.
- "session" is always 0, so every emotion corpus has the same fields.
- Label values of the same file change between releases, so the release
  (manual dir name, labels file and its SHA-256) is stored in
  `builder.info.metadata`.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import math
import os
import re

import numpy as np
import tensorflow_datasets as tfds

from cpcjax.data import audio
from cpcjax.data.corpora import base

_DESCRIPTION = """\
MSP-Podcast (Lotfian & Busso, UT Dallas): spontaneous emotional speech from
podcast recordings, in utterances of about 3-11 s, with crowd-sourced
consensus labels: an emotion category and activation, valence and dominance
scores on a 1-7 scale. Prepared from the user's licensed copy of a release;
the official Train / Development / Test1 / Test2 partitions are kept as splits
(Test3 has no public labels and is left out).
"""

_CITATION = """\
@article{lotfian2019building,
  title={Building Naturalistic Emotionally Balanced Speech Corpus by
         Retrieving Emotional Speech from Existing Podcast Recordings},
  author={Lotfian, Reza and Busso, Carlos},
  journal={IEEE Transactions on Affective Computing},
  volume={10}, number={4}, pages={471--483}, year={2019}
}
"""

HOMEPAGE = "https://ecs.utdallas.edu/research/researchlabs/msp-lab/MSP-Podcast.html"

# EmoClass codes: Angry, Sad, Happy, sUrprise, Fear, Disgust, Contempt,
# Neutral, Other, X = no agreement among raters.
CATEGORIES = ("A", "S", "H", "U", "F", "D", "C", "N", "O", "X")
COLUMNS = (
    "FileName",
    "EmoClass",
    "EmoAct",
    "EmoVal",
    "EmoDom",
    "SpkrID",
    "Gender",
    "Split_Set",
)
# Split_Set value -> split name; v1.8 and older call Development "Validation".
SPLITS = {
    "Train": "train",
    "Development": "development",
    "Validation": "development",
    "Test1": "test1",
    "Test2": "test2",
}
SPLIT_ORDER = ("train", "development", "test1", "test2")
UNLABELED_SPLIT = "Test3"
SCALE = (1.0, 7.0)
UNKNOWN = "unknown"

# Correct spelling first: a copy holding both is a newer release with a
# leftover old file.
LABELS_FILES = ("labels_consensus.csv", "labels_concensus.csv")
# Folder names seen in copies, tried when the config keeps the default.
AUDIO_DIRS = ("Audios", "Audio")
LABELS_DIRS = ("Labels", "labels", "label")

_LABELS_DOC = (
    "Consensus rater scores on the 1-7 scale, in the order (activation, "
    "valence, dominance) = (EmoAct, EmoVal, EmoDom)."
)


@dataclasses.dataclass(eq=False)
class MspPodcastConfig(tfds.core.BuilderConfig):
    """Where the release keeps its files, relative to the manual dir.

    The folder names only say how the user's copy is laid out; the prepared
    corpus does not depend on them, so a config that changes them may keep
    the name "default" (and with it the prepared data's directory).

    Attributes:
        audio_dir: folder of the wav files; when left at "Audios", "Audio" is
            tried as well.
        labels_dir: folder of the labels csv; when left at "Labels", "labels"
            and "label" are tried as well.
    """

    audio_dir: str = AUDIO_DIRS[0]
    labels_dir: str = LABELS_DIRS[0]


DEFAULT = MspPodcastConfig(
    name="default",
    description="The labeled partitions of one MSP-Podcast release (Test3 left out).",
)


@dataclasses.dataclass(frozen=True)
class Utterance:
    """One usable row of the labels file."""

    id: str  # file name without .wav, the example key
    split: str
    wav: str
    category: str
    labels: tuple[float, float, float]  # (activation, valence, dominance)
    speaker: str
    gender: str


@dataclasses.dataclass
class Labels:
    """The labels file read: usable utterances per split, and what was left out."""

    by_split: dict[str, list[Utterance]]
    unlabeled: int  # Test3 rows


def read_labels(path: str, audio_dir: str, problems: audio.Problems) -> Labels:
    """Reads a `labels_consensus.csv` by column name.

    Rows that cannot be used (missing or extra fields, unknown split or
    category, non-numeric or out-of-scale scores, duplicates, no wav in
    `audio_dir`) are recorded in `problems` as kind "label" with
    "<path>:<line>" and skipped. Test3 rows are only counted.

    Args:
        path: the labels csv.
        audio_dir: the folder holding the wav files.
        problems: where skipped rows are recorded.

    Returns:
        Usable utterances per split (split order, sorted by id within a
        split; only splits with rows) and the number of Test3 rows.

    Raises:
        base.LayoutError: the header lacks one of `COLUMNS`.
    """
    # One listing instead of a stat per row: the release has >100k files and
    # often sits on a network disk.
    wavs = {e.name for e in os.scandir(audio_dir) if e.is_file()}
    by_split: dict[str, list[Utterance]] = {}
    first_line: dict[str, int] = {}
    unlabeled = 0
    # utf-8-sig: a copy re-saved by a spreadsheet program starts with a BOM.
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        reader.fieldnames = [name.strip() for name in reader.fieldnames or []]
        missing = [c for c in COLUMNS if c not in reader.fieldnames]
        if missing:
            raise base.LayoutError(
                f"msp_podcast: {path} has no column {', '.join(missing)}; its header "
                f"is {','.join(reader.fieldnames) or '(empty)'}, expected at least "
                f"{','.join(COLUMNS)}"
            )
        for row in reader:
            where = f"{path}:{reader.line_num}"
            reason, utt = _parse_row(row, audio_dir, wavs)
            if reason == UNLABELED_SPLIT:
                unlabeled += 1
                continue
            if reason is None and utt.id in first_line:
                reason = f"duplicate of line {first_line[utt.id]}"
            if reason is not None:
                problems.add("label", where, reason)
                continue
            first_line[utt.id] = reader.line_num
            by_split.setdefault(utt.split, []).append(utt)
    ordered = {
        s: sorted(by_split[s], key=lambda u: u.id) for s in SPLIT_ORDER if s in by_split
    }
    return Labels(by_split=ordered, unlabeled=unlabeled)


def _parse_row(
    row: dict, audio_dir: str, wavs: set[str]
) -> tuple[str | None, Utterance | None]:
    """(None, utterance), or (why the row is unusable, None); UNLABELED_SPLIT
    as the reason for a Test3 row."""
    if row.get(None):  # DictReader puts fields beyond the header under None
        return f"{len(row[None])} more field(s) than the header", None
    absent = [c for c in COLUMNS if row.get(c) is None]
    if absent:
        return f"missing column(s) {', '.join(absent)}", None
    value = {c: row[c].strip() for c in COLUMNS}
    split_set = value["Split_Set"]
    if split_set == UNLABELED_SPLIT:
        return UNLABELED_SPLIT, None
    if split_set not in SPLITS:
        return (
            f"unknown Split_Set {split_set!r} (expected one of "
            f"{', '.join([*SPLITS, UNLABELED_SPLIT])})"
        ), None
    name = value["FileName"]
    if not name:
        return "empty FileName", None
    if value["EmoClass"] not in CATEGORIES:
        return (
            f"unknown EmoClass {value['EmoClass']!r} (expected one of "
            f"{' '.join(CATEGORIES)})"
        ), None
    scores = []
    for column in ("EmoAct", "EmoVal", "EmoDom"):
        try:
            score = float(value[column])
        except ValueError:
            return f"non-numeric {column} {value[column]!r}", None
        # float() accepts "nan" and "inf", which no rater gave.
        if not math.isfinite(score) or not SCALE[0] <= score <= SCALE[1]:
            return f"{column} {value[column]} outside the 1-7 scale", None
        scores.append(score)
    utt_id = name[:-4] if name.lower().endswith(".wav") else name
    if f"{utt_id}.wav" not in wavs:
        return f"wav missing: {os.path.join(audio_dir, utt_id + '.wav')}", None
    speaker = value["SpkrID"]
    return None, Utterance(
        id=utt_id,
        split=SPLITS[split_set],
        wav=os.path.join(audio_dir, f"{utt_id}.wav"),
        category=value["EmoClass"],
        labels=tuple(scores),
        speaker=UNKNOWN if speaker.lower() in ("", UNKNOWN) else speaker,
        gender=value["Gender"].lower() or UNKNOWN,
    )


def release_name(manual_dir: str, labels_file: str) -> str:
    """The release of a copy: its folder name, with the era its labels file
    implies when the name carries no version (e.g. a folder called "msp")."""
    name = os.path.basename(os.path.normpath(manual_dir))
    if re.search(r"\d+\.\d+", name):
        return name
    era = "v1.6-v1.8" if os.path.basename(labels_file) == LABELS_FILES[1] else "v1.10+"
    return f"{name} ({era}, {os.path.basename(labels_file)})"


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class MspPodcast(base.ManualCorpusBuilder):
    """MSP-Podcast prepared from an extracted release in the manual dir."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [DEFAULT]
    DEFAULT_CONFIG_NAME = "default"
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
MSP-Podcast is licensed by the MSP lab of UT Dallas. Request it at
{HOMEPAGE}
(academic licence agreement), extract the release you receive, and pass the
extracted folder (e.g. MSP-PODCAST-Publish-1.11/) as the manual dir. It must
hold the wav files in Audios/ (or Audio/) and the labels in
Labels/labels_consensus.csv (labels_concensus.csv in v1.6-v1.8; the folder may
be called labels/ or label/). Other folder names: set audio_dir / labels_dir
of MspPodcastConfig.
"""
    EXPECTED_LAYOUT = """\
  MSP-PODCAST-Publish-1.11/          <- the manual dir
    Audios/                          (or Audio/)
      MSP-PODCAST_0001_0008.wav      (newer releases: MSP-PODCAST_0001_0008_0001.wav)
      ...
    Labels/                          (or labels/, label/)
      labels_consensus.csv           (v1.6-v1.8: labels_concensus.csv)
        FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set
        MSP-PODCAST_0001_0008.wav,N,2.2,4.0,2.6,30,Male,Train"""

    def _info(self) -> tfds.core.DatasetInfo:
        features = tfds.features.FeaturesDict(
            {
                "audio": base.audio_feature(),
                "id": tfds.features.Text(doc="File name without .wav."),
                "speaker": tfds.features.Text(
                    doc=f"SpkrID; '{UNKNOWN}' when the release does not know it."
                ),
                "gender": tfds.features.Text(doc="Gender in lower case."),
                "category": tfds.features.ClassLabel(
                    names=CATEGORIES,
                    doc="EmoClass: Angry, Sad, Happy, sUrprise, Fear, Disgust, "
                    "Contempt, Neutral, Other, X (no agreement).",
                ),
                "labels": tfds.features.Tensor(
                    shape=(3,), dtype=np.float32, doc=_LABELS_DOC
                ),
                "session": tfds.features.Scalar(
                    dtype=np.int32, doc="Always 0: MSP-Podcast has no sessions."
                ),
            }
        )
        return self.dataset_info_from_configs(
            description=_DESCRIPTION,
            features=features,
            supervised_keys=None,
            homepage=HOMEPAGE,
            citation=_CITATION,
            metadata=tfds.core.MetadataDict(),
        )

    def _create_builder_config(self, builder_config, version):
        # TFDS refuses a config instance that is not the registered one under
        # a registered name; ours differ only in where the copy keeps its
        # files, which does not change the prepared corpus.
        if (
            isinstance(builder_config, MspPodcastConfig)
            and builder_config.name in self.builder_configs
        ):
            return builder_config
        return super()._create_builder_config(builder_config, version)

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = self.manual_root(dl_manager)
        config = self.builder_config
        audio_dir = self._find_dir(root, config.audio_dir, AUDIO_DIRS)
        labels_dir = self._find_dir(root, config.labels_dir, LABELS_DIRS)
        labels_path = self._find_labels_file(labels_dir)
        labels = read_labels(labels_path, audio_dir, self.problems)

        self.info.metadata.update(
            release=release_name(root, labels_path),
            labels_file=os.path.relpath(labels_path, root),
            labels_sha256=_sha256(labels_path),
        )
        self._unlabeled = labels.unlabeled
        self._pending = set(labels.by_split)
        self._counts: dict[str, int] = {}
        if not labels.by_split:
            self.problems.write(self.report_path)
            raise base.LayoutError(
                f"{self.name}: {labels_path} has no usable labeled row; reasons in "
                f"{self.report_path}"
            )
        return {
            split: self._generate_examples(items, split)
            for split, items in labels.by_split.items()
        }

    def _find_dir(self, root: str, configured: str, known: tuple[str, ...]) -> str:
        """The configured folder, or a known alias when the default is absent."""
        names = (configured,)
        if configured == known[0]:
            names += known[1:]
        for name in names:
            if os.path.isdir(os.path.join(root, name)):
                return os.path.join(root, name)
        raise base.LayoutError(
            f"{self.name}: {root} has no folder {' or '.join(n + '/' for n in names)}; "
            f"expected layout:\n{self.EXPECTED_LAYOUT}"
        )

    def _find_labels_file(self, labels_dir: str) -> str:
        for name in LABELS_FILES:
            if os.path.isfile(os.path.join(labels_dir, name)):
                return os.path.join(labels_dir, name)
        hint = ""
        if os.path.exists(os.path.join(labels_dir, "Labels.txt")):
            hint = (
                " (only the older Labels.txt is there: use a release with "
                "labels_consensus.csv, v1.6 or later)"
            )
        raise base.LayoutError(
            f"{self.name}: {labels_dir} has neither {' nor '.join(LABELS_FILES)}"
            f"{hint}; expected layout:\n{self.EXPECTED_LAYOUT}"
        )

    def _generate_examples(self, items: list[Utterance], split: str):
        kept = 0
        try:
            decoded = self.decoded(items, lambda u: u.wav, desc=f"{self.name} {split}")
            for utt, wav in decoded:
                kept += 1
                yield (
                    utt.id,
                    {
                        "audio": wav,
                        "id": utt.id,
                        "speaker": utt.speaker,
                        "gender": utt.gender,
                        "category": utt.category,
                        "labels": np.asarray(utt.labels, np.float32),
                        "session": 0,
                    },
                )
        except GeneratorExit:  # TFDS stopped early (max_examples_per_split)
            self._split_done(split, kept)
            raise
        if not kept:
            # TFDS would only say "No examples were yielded": write the report
            # now and name the split.
            self.problems.write(self.report_path)
            raise base.LayoutError(
                f"{self.name}: none of the {len(items)} wavs of split {split} is "
                f"usable; reasons in {self.report_path}"
            )
        self._split_done(split, kept)

    def _split_done(self, split: str, kept: int) -> None:
        """TFDS runs one generator per split: report once the last one ends."""
        self._counts[split] = kept
        self._pending.discard(split)
        if self._pending:
            return
        self.finish()
        counts = ", ".join(f"{s} {n}" for s, n in self._counts.items())
        print(
            f"{self.name}: {counts}; {self._unlabeled} Test3 utterances left out "
            f"(no public labels); release {self.info.metadata['release']}",
            flush=True,
        )
