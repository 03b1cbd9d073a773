"""TFDS builder of IEMOCAP, read from the user's extracted `IEMOCAP_full_release/`.

One "train" split holds all 10,039 utterances; the `session` feature gives the
five leave-one-session-out folds.

Labels come from the summary line of each utterance block in
`Session{n}/dialog/EmoEvaluation/<dialog>.txt`:

    [6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]

The bracket is [valence, activation, dominance]; cpcjax stores every label
triple in the order (activation, valence, dominance), as the paper reports
them. Evaluator lines (`C-E2:`, `A-E3:`, ...) and the `%` header are not read:
the bracket already is the mean of the external evaluators' ratings.

Outlier rule: the scale is 1-5, but 4 utterances of the release have valence
5.5 and 3 have dominance 0.5. `labels` clips to [1, 5] (so those become 5.0
and 1.0: a CCC target outside the scale would only stretch the regression
range for 7 of 10,039 utterances), and `labels_raw` keeps the bracket values
as written (same order) for anyone who decides otherwise.

Every utterance whose label line does not parse, whose wav is missing, or
whose audio is unusable is skipped and listed with its reason in
`prepare_report_iemocap.tsv` in the data directory.
"""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np
import tensorflow_datasets as tfds

from cpcjax.data.corpora import base

SESSIONS = (1, 2, 3, 4, 5)
CATEGORIES = (
    "neu",
    "hap",
    "exc",
    "sad",
    "ang",
    "fru",
    "sur",
    "fea",
    "dis",
    "oth",
    "xxx",
)
# Outlier rule (see module docstring): labels are clipped to the rating scale.
LABEL_RANGE = (1.0, 5.0)
RELEASE_DIR = "IEMOCAP_full_release"

# Group 3 is the dialog type, group 4 the speaker's letter (the letter after
# "Ses0n" is only the actor wearing motion-capture markers).
UTT_ID = re.compile(
    r"^Ses0([1-5])([MF])_(impro0[1-9][ab]?|script0[1-3]_[1-3]b?)_([MF])(\d{3})$"
)
# Tolerant of spaces around every part; values are checked by float() later,
# so a garbled number is reported as such rather than as an unparsable line.
_SUMMARY = re.compile(
    r"^\[\s*(\S+)\s*-\s*(\S+)\s*\]\s+(\S+)\s+(\S+)\s+"
    r"\[\s*([^,\s\]]+)\s*,\s*([^,\s\]]+)\s*,\s*([^,\s\]]+)\s*\]\s*$"
)

_DESCRIPTION = """\
IEMOCAP (Interactive Emotional Dyadic Motion Capture), the speech of its
10,039 utterances: 5 sessions of one female and one male actor, improvised
and scripted dialogs, about 12.4 h of 16 kHz speech. Each utterance has a
majority emotion category (xxx: no majority) and activation, valence and
dominance ratings on a 1-5 scale, stored as (activation, valence, dominance).
`labels` is clipped to [1, 5]; `labels_raw` is the file's mean rating as
written. One 'train' split; the `session` feature drives
leave-one-session-out folds.
"""

_CITATION = """\
@article{busso2008iemocap,
  title={IEMOCAP: Interactive emotional dyadic motion capture database},
  author={Busso, Carlos and Bulut, Murtaza and Lee, Chi-Chun and Kazemzadeh, Abe
          and Mower, Emily and Kim, Samuel and Chang, Jeannette N. and
          Lee, Sungbok and Narayanan, Shrikanth S.},
  journal={Language Resources and Evaluation},
  volume={42},
  number={4},
  pages={335--359},
  year={2008}
}
"""


@dataclasses.dataclass(frozen=True)
class Utterance:
    """One labeled utterance found in the EmoEvaluation files.

    Attributes:
        id: utterance id, e.g. "Ses01F_impro01_F000".
        session: 1-5.
        dialog: the id without its last token, e.g. "Ses01F_impro01".
        category: one of CATEGORIES.
        labels_raw: the bracket's values as (activation, valence, dominance).
        start: start time in the dialog, seconds.
        end: end time in the dialog, seconds.
        wav: path of the utterance's wav file.
    """

    id: str
    session: int
    dialog: str
    category: str
    labels_raw: tuple[float, float, float]
    start: float
    end: float
    wav: str

    @property
    def speaker(self) -> str:
        """Session and sex of the speaking actor, e.g. "Ses01M"."""
        return f"Ses0{self.session}{self.id[-4]}"

    @property
    def improvised(self) -> bool:
        return "_impro" in self.dialog


class Iemocap(base.ManualCorpusBuilder):
    """IEMOCAP utterances with categorical and dimensional emotion labels."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
IEMOCAP is licensed: request it at https://sail.usc.edu/iemocap/ (a release
form signed for your institution). Extract the archive you receive and pass
its `{RELEASE_DIR}/` folder (the one holding Session1 ... Session5) as the
manual dir; its parent folder works too.
"""
    EXPECTED_LAYOUT = f"""\
{RELEASE_DIR}/          <- manual_dir (or its parent)
  Session1/ ... Session5/
    sentences/wav/<dialog>/<utt>.wav
        e.g. sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav
    dialog/EmoEvaluation/<dialog>.txt
        e.g. dialog/EmoEvaluation/Ses01F_impro01.txt (its sub-folders are ignored)
"""
    EXPECTED_COUNT = 10039
    LABEL_RANGE = LABEL_RANGE

    def _info(self) -> tfds.core.DatasetInfo:
        triple = "(activation, valence, dominance) on the 1-5 scale"
        return self.dataset_info_from_configs(
            description=_DESCRIPTION,
            features=tfds.features.FeaturesDict(
                {
                    "audio": base.audio_feature(),
                    "id": tfds.features.Text(
                        doc="Utterance id, e.g. Ses01F_impro01_F000."
                    ),
                    "speaker": tfds.features.Text(
                        doc="Session and sex of the speaker (last id token), "
                        "e.g. Ses01M."
                    ),
                    "session": tfds.features.Scalar(dtype=np.int32, doc="Session 1-5."),
                    "dialog": tfds.features.Text(doc="Dialog, e.g. Ses01F_impro01."),
                    "improvised": tfds.features.Scalar(
                        dtype=np.bool_, doc="Improvised (True) or scripted dialog."
                    ),
                    "category": tfds.features.ClassLabel(names=CATEGORIES),
                    "labels": tfds.features.Tensor(
                        shape=(3,),
                        dtype=np.float32,
                        doc=f"Mean evaluator rating {triple}, clipped to [1, 5].",
                    ),
                    "labels_raw": tfds.features.Tensor(
                        shape=(3,),
                        dtype=np.float32,
                        doc=f"Mean evaluator rating {triple}, as written "
                        "(not clipped).",
                    ),
                    "start": tfds.features.Scalar(
                        dtype=np.float32, doc="Start in the dialog recording, seconds."
                    ),
                    "end": tfds.features.Scalar(
                        dtype=np.float32, doc="End in the dialog recording, seconds."
                    ),
                }
            ),
            supervised_keys=None,
            homepage="https://sail.usc.edu/iemocap/",
            citation=_CITATION,
        )

    def release_root(self, root: str) -> str:
        """The folder holding the Session folders: `root` or its IEMOCAP_full_release/.

        Raises:
            base.LayoutError: no session folder, or one without its wav or
                label folder.
        """

        def sessions_in(folder):
            return [
                n
                for n in SESSIONS
                if os.path.isdir(os.path.join(folder, f"Session{n}"))
            ]

        nested = os.path.join(root, RELEASE_DIR)
        if not sessions_in(root) and sessions_in(nested):
            root = nested
        present = sessions_in(root)
        if not present:
            raise base.LayoutError(
                f"{self.name}: {root} holds no Session1 ... Session5 folder; "
                f"expected layout:\n{self.EXPECTED_LAYOUT}"
            )
        missing = [
            os.path.join(f"Session{n}", sub)
            for n in present
            for sub in ("sentences/wav", "dialog/EmoEvaluation")
            if not os.path.isdir(os.path.join(root, f"Session{n}", sub))
        ]
        if missing:
            raise base.LayoutError(
                f"{self.name}: {root} lacks {', '.join(missing)}; "
                f"expected layout:\n{self.EXPECTED_LAYOUT}"
            )
        if len(present) < len(SESSIONS):
            # A partial copy still prepares, but the folds will be incomplete.
            absent = ", ".join(f"Session{n}" for n in SESSIONS if n not in present)
            print(f"{self.name}: warning: {root} has no {absent}", flush=True)
        return root

    def utterances(self, root: str) -> list[Utterance]:
        """Every utterance with a parsable label line and a wav, sorted by id.

        Skipped lines and missing wavs are recorded in `self.problems`.
        """
        found: dict[str, Utterance] = {}
        for session in SESSIONS:
            labels_dir = os.path.join(
                root, f"Session{session}", "dialog", "EmoEvaluation"
            )
            if not os.path.isdir(labels_dir):
                continue
            # Only the top level: Attribute/, Categorical/ and Self-evaluation/
            # hold per-evaluator files, and `._*` are macOS resource forks.
            names = sorted(
                e.name
                for e in os.scandir(labels_dir)
                if e.is_file()
                and e.name.endswith(".txt")
                and not e.name.startswith("._")
            )
            for name in names:
                for where, utt in self._parse_label_file(
                    root, session, os.path.join(labels_dir, name)
                ):
                    if utt.id in found:
                        self.problems.add(
                            "label", where, f"duplicate of {utt.id} (kept the first)"
                        )
                    elif not os.path.isfile(utt.wav):
                        self.problems.add("label", where, f"wav missing: {utt.wav}")
                    else:
                        found[utt.id] = utt
        return [found[k] for k in sorted(found)]

    def _parse_label_file(self, root: str, session: int, path: str):
        """Yields ("file:line", Utterance) for every valid summary line of a file."""
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            self.problems.add("label", path, f"unreadable ({e})")
            return
        for lineno, line in enumerate(lines, start=1):
            line = line.strip()
            if not line.startswith("["):
                continue  # header, evaluator lines, blank lines
            where = f"{path}:{lineno}"
            utt, reason = _parse_summary(line, session)
            if utt is None:
                self.problems.add("label", where, reason)
                continue
            wav = os.path.join(
                root,
                f"Session{session}",
                "sentences",
                "wav",
                utt["dialog"],
                utt["id"] + ".wav",
            )
            yield where, Utterance(wav=wav, **utt)

    def _generate_examples(self, utterances: list[Utterance]):
        for utt, audio in self.decoded(
            utterances, lambda u: u.wav, desc=f"{self.name}: decoding"
        ):
            raw = np.asarray(utt.labels_raw, dtype=np.float32)
            yield (
                utt.id,
                {
                    "audio": audio,
                    "id": utt.id,
                    "speaker": utt.speaker,
                    "session": utt.session,
                    "dialog": utt.dialog,
                    "improvised": utt.improvised,
                    "category": utt.category,
                    "labels": np.clip(raw, *self.LABEL_RANGE),
                    "labels_raw": raw,
                    "start": utt.start,
                    "end": utt.end,
                },
            )
        self.finish()


def _parse_summary(line: str, session: int) -> tuple[dict | None, str]:
    """The fields of one summary line, or (None, why it is malformed)."""
    m = _SUMMARY.match(line)
    if not m:
        return None, f"malformed label line: {line[:100]!r}"
    start, end, utt_id, category, v, a, d = m.groups()
    id_match = UTT_ID.match(utt_id)
    if not id_match:
        return None, f"not an IEMOCAP utterance id: {utt_id!r}"
    if int(id_match.group(1)) != session:
        return None, f"{utt_id} listed under Session{session}"
    if category not in CATEGORIES:
        return None, f"unknown category {category!r} for {utt_id}"
    try:
        start, end, v, a, d = (float(x) for x in (start, end, v, a, d))
    except ValueError:
        return None, f"non-numeric time or rating in {line[:100]!r}"
    if not all(np.isfinite((start, end, v, a, d))):
        return None, f"non-finite time or rating in {line[:100]!r}"
    return dict(
        id=utt_id,
        session=session,
        dialog=utt_id.rsplit("_", 1)[0],
        category=category,
        labels_raw=(a, v, d),  # bracket is [V, A, D]
        start=start,
        end=end,
    ), ""
