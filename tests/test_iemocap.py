"""Tests of the IEMOCAP builder on a tiny tree in the real release layout."""

import csv
import os
import re

import numpy as np
import pytest
import tensorflow_datasets as tfds
from conftest import write_wav

from cpcjax.data.corpora import base, iemocap

HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]"

# Per dialog: (summary line, evaluator lines, wav to write). Wav kinds:
# seconds at 16 kHz mono, "44k" (44.1 kHz stereo), "cut" (truncated after
# writing), "empty" (0 bytes) or None (no wav). The first two summary lines
# are copied from real files (data_formats/); the others follow their format.
DIALOGS = {
    ("Session1", "Ses01F_impro05"): [
        (
            "[140.2250 - 145.6000]\tSes01F_impro05_F019\tang\t[1.5000, 4.0000, 4.5000]",
            [
                "C-E1:\tAnger;\t()",
                "A-E3:\tval 2; act 4; dom  4;\t()",
                "A-E4:\tval 1; act 4; dom  5;\t(threatening, belligerent)",
            ],
            0.8,
        ),
        (
            "[146.0100 - 148.2000]\tSes01F_impro05_M003\tneu\t[2.5000, 2.5000, 2.5000]",
            ["C-E2:\tNeutral;\t()", "A-E1:\tval 3; act 2; dom  2;\t()"],
            "44k",
        ),
        (
            "[150.5000 - 152.1000]\tSes01F_impro05_F020\texc\t[5.5000, 3.5000, 3.0000]",
            ["C-E3:\tExcited;\t()", "A-E3:\tval 5; act 3; dom  3;\t()"],
            0.6,
        ),
        (
            "[153.0000 - 155.0000]\tSes01F_impro05_M004\tsad\t[2.0000, 2.0000, 0.5000]",
            ["C-E1:\tSadness;\t()"],
            0.5,
        ),
        # Two ratings where three belong: malformed.
        (
            "[156.0000 - 157.5000]\tSes01F_impro05_F021\tneu\t[2.5000, 2.5000]",
            ["C-E1:\tNeutral;\t()"],
            0.5,
        ),
    ],
    ("Session1", "Ses01M_impro07"): [
        (
            "[204.8100 - 206.6000]\tSes01M_impro07_M033\thap\t[3.5000, 2.5000, 1.5000]",
            [
                "C-E1:\tExcited;\t()",
                "C-E2:\tHappiness;\t()",
                "A-E1:\tval 3; act 2; dom  2;\t()",
                "A-M1:\tval 4; act 3; dom  3;\t()",
            ],
            0.7,
        ),
        (
            "[207.0000 - 209.1000]\tSes01M_impro07_F012\txxx\t[3.0000, 2.5000, 2.0000]",
            ["C-E1:\tFrustration;\t()", "C-E2:\tNeutral;\t()"],
            0.5,
        ),
        (
            "[210.0000 - 211.0000]\tSes01M_impro07_F013\tneu\t[3.0000, 3.0000, 3.0000]",
            ["C-E1:\tNeutral;\t()"],
            None,
        ),
    ],
    ("Session2", "Ses02M_script01_1"): [
        (
            "[10.1000 - 12.3000]\t"
            "Ses02M_script01_1_F005\tfru\t[2.0000, 3.5000, 2.5000]",
            ["C-E1:\tFrustration;\t()"],
            0.9,
        ),
        (
            "[13.0000 - 15.0000]\t"
            "Ses02M_script01_1_M007\txxx\t[3.0000, 2.5000, 2.0000]",
            ["C-E2:\tAnger;\t()"],
            0.5,
        ),
        # Spaces where the release has TABs: still a summary line.
        (
            "[ 16.0000 - 17.5000 ]  "
            "Ses02M_script01_1_M008  neu  [2.0000,3.0000,  4.0000]",
            [],
            0.5,
        ),
        (
            "[18.0000 - 19.0000]\t"
            "Ses02M_script01_1_F006\tsad\t[1.5000, 1.5000, 2.0000]",
            ["C-E1:\tSadness;\t()"],
            "cut",
        ),
        (
            "[20.0000 - 21.0000]\t"
            "Ses02M_script01_1_M009\tneu\t[3.0000, 3.0000, 3.0000]",
            ["C-E1:\tNeutral;\t()"],
            "empty",
        ),
    ],
}
KEPT = {
    "Ses01F_impro05_F019",
    "Ses01F_impro05_M003",
    "Ses01F_impro05_F020",
    "Ses01F_impro05_M004",
    "Ses01M_impro07_M033",
    "Ses01M_impro07_F012",
    "Ses02M_script01_1_F005",
    "Ses02M_script01_1_M007",
    "Ses02M_script01_1_M008",
}


def _speech_like(seconds, rate, seed, channels=1):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * 180 * t) + 0.02 * rng.standard_normal(len(t))
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def _write_kind(path, kind, seed):
    """A wav of IEMOCAP's shape, or a broken one: `kind` is seconds, "44k"
    (a stereo 44.1 kHz file), "empty" or "cut" (truncated mid-data)."""
    if kind == "44k":
        wav = _speech_like(0.75, 44100, seed, channels=2)
        write_wav(path, wav=wav, rate=44100, subtype="PCM_16")
    elif kind == "empty":
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "wb").close()
    elif kind == "cut":
        write_wav(path, wav=_speech_like(0.6, 16000, seed), subtype="PCM_16")
        with open(path, "r+b") as f:
            f.truncate(44 + 1000)  # header + 500 samples of the 9600 it declares
    else:
        write_wav(path, wav=_speech_like(kind, 16000, seed), subtype="PCM_16")


def write_release(root):
    """Writes a tiny IEMOCAP_full_release/ under `root`; returns its path."""
    release = os.path.join(root, "IEMOCAP_full_release")
    seed = 0
    for (session, dialog), blocks in DIALOGS.items():
        labels_dir = os.path.join(release, session, "dialog", "EmoEvaluation")
        os.makedirs(labels_dir, exist_ok=True)
        lines = [HEADER, ""]
        for summary, evaluators, wav in blocks:
            lines += [summary, *evaluators, ""]
            utt = re.search(r"Ses0\S+", summary).group()
            if wav is not None:
                seed += 1
                _write_kind(
                    os.path.join(
                        release, session, "sentences", "wav", dialog, f"{utt}.wav"
                    ),
                    wav,
                    seed,
                )
        with open(os.path.join(labels_dir, f"{dialog}.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
    labels_dir = os.path.join(release, "Session1", "dialog", "EmoEvaluation")
    # macOS resource fork: binary, would be a malformed file if read.
    with open(os.path.join(labels_dir, "._Ses01F_impro05.txt"), "wb") as f:
        f.write(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        [garbage\n")
    # Sub-folder and non-.txt files: lines that would change labels or be
    # reported if they were read.
    os.makedirs(os.path.join(labels_dir, "Attribute"))
    with open(os.path.join(labels_dir, "Attribute", "Ses01F_impro05_e3.txt"), "w") as f:
        f.write(
            "Ses01F_impro05_F019 :act 4; val 2; dom 4; ()\n"
            "[1.0 - 2.0]\tSes01F_impro05_F019\tneu\t[1.0000, 1.0000, 1.0000]\n"
            "[not a summary line\n"
        )
    with open(os.path.join(labels_dir, "Ses01F_impro05.txt~"), "w") as f:
        f.write("[1.0 - 2.0]\tSes01F_impro05_F019\tneu\t[1.0000, 1.0000, 1.0000]\n")
    return release


def _prepare(data_dir, manual_dir):
    builder = iemocap.Iemocap(data_dir=str(data_dir))
    builder.download_and_prepare(
        file_format="array_record",
        download_config=tfds.download.DownloadConfig(
            manual_dir=str(manual_dir), try_download_gcs=False
        ),
    )
    return builder


def _line_of(release, utt):
    """ "<label file>:<line>" of the summary line of `utt`."""
    path = os.path.join(
        release,
        f"Session{int(utt[4])}",
        "dialog",
        "EmoEvaluation",
        utt.rsplit("_", 1)[0] + ".txt",
    )
    with open(path) as f:
        lineno = next(i for i, line in enumerate(f, start=1) if utt in line)
    return f"{path}:{lineno}"


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """(release dir, data dir, builder, {id: example}) of one preparation."""
    tmp = tmp_path_factory.mktemp("iemocap")
    release = write_release(str(tmp))
    builder = _prepare(tmp / "tfds", release)
    source = builder.as_data_source("train")
    examples = {_text(ex["id"]): ex for ex in (source[i] for i in range(len(source)))}
    return release, tmp / "tfds", builder, examples


def test_keeps_every_good_utterance_once(prepared):
    _, _, builder, examples = prepared
    assert set(examples) == KEPT
    assert builder.kept == len(KEPT)
    assert builder.info.splits["train"].num_examples == len(KEPT)


def _assert_labels(example, labels, raw=None):
    np.testing.assert_array_equal(example["labels"], labels)
    np.testing.assert_array_equal(example["labels_raw"], labels if raw is None else raw)


def test_labels_reordered_to_activation_valence_dominance(prepared):
    examples = prepared[3]
    # Bracket [V, A, D] = [1.5, 4.0, 4.5] (angry: high activation, low valence).
    _assert_labels(examples["Ses01F_impro05_F019"], [4.0, 1.5, 4.5])
    _assert_labels(examples["Ses01M_impro07_M033"], [2.5, 3.5, 1.5])
    # Tolerant parse of a space-separated line.
    _assert_labels(examples["Ses02M_script01_1_M008"], [3.0, 2.0, 4.0])


def test_outliers_clipped_raw_kept(prepared):
    examples = prepared[3]
    _assert_labels(examples["Ses01F_impro05_F020"], [3.5, 5.0, 3.0], [3.5, 5.5, 3.0])
    _assert_labels(examples["Ses01F_impro05_M004"], [2.0, 2.0, 1.0], [2.0, 2.0, 0.5])
    assert iemocap.Iemocap.LABEL_RANGE == (1.0, 5.0)


def test_metadata_fields(prepared):
    examples = prepared[3]
    ex = examples["Ses01F_impro05_M003"]
    # The speaker is the last token's actor, not the "Ses01F" prefix's.
    assert _text(ex["speaker"]) == "Ses01M"
    assert _text(examples["Ses01M_impro07_F012"]["speaker"]) == "Ses01F"
    assert _text(examples["Ses02M_script01_1_F005"]["speaker"]) == "Ses02F"
    assert {_text(e["speaker"]) for e in examples.values()} == {
        "Ses01F",
        "Ses01M",
        "Ses02F",
        "Ses02M",
    }
    assert _text(ex["dialog"]) == "Ses01F_impro05"
    assert _text(examples["Ses02M_script01_1_M007"]["dialog"]) == "Ses02M_script01_1"
    assert ex["session"] == 1 and examples["Ses02M_script01_1_M007"]["session"] == 2
    assert bool(ex["improvised"])
    assert not bool(examples["Ses02M_script01_1_M007"]["improvised"])
    assert ex["start"] == pytest.approx(146.01) and ex["end"] == pytest.approx(148.2)
    names = list(iemocap.CATEGORIES)
    assert examples["Ses01F_impro05_F019"]["category"] == names.index("ang") == 4
    assert examples["Ses01M_impro07_F012"]["category"] == names.index("xxx") == 10
    assert examples["Ses01F_impro05_F020"]["category"] == names.index("exc")


def test_audio_16k_mono_int16(prepared):
    examples = prepared[3]
    assert examples["Ses01F_impro05_F019"]["audio"].dtype == np.int16
    assert examples["Ses01F_impro05_F019"]["audio"].shape == (int(0.8 * 16000),)
    # 0.75 s of 44.1 kHz stereo: downmixed and resampled to 12000 samples.
    resampled = examples["Ses01F_impro05_M003"]["audio"]
    assert resampled.ndim == 1 and abs(len(resampled) - 12000) <= 2
    # The sine survives at about its amplitude (0.3 of full scale).
    assert 0.25 < np.abs(resampled).max() / 32767 < 0.4


def test_report_lists_every_skipped_item_with_reason(prepared):
    release, data_dir, builder, _ = prepared
    with open(data_dir / "prepare_report_iemocap.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert len(rows) == 4 == len(builder.problems)
    by_where = {r["where"]: r for r in rows}
    cut = os.path.join(
        release,
        "Session2",
        "sentences",
        "wav",
        "Ses02M_script01_1",
        "Ses02M_script01_1_F006.wav",
    )
    empty = cut.replace("F006", "M009")
    assert by_where[cut]["kind"] == "audio" and "truncated" in by_where[cut]["reason"]
    assert (
        by_where[empty]["kind"] == "audio"
        and by_where[empty]["reason"] == "empty (0 bytes)"
    )
    malformed = by_where[_line_of(release, "Ses01F_impro05_F021")]
    assert malformed["kind"] == "label" and "malformed" in malformed["reason"]
    missing = by_where[_line_of(release, "Ses01M_impro07_F013")]
    assert missing["kind"] == "label"
    assert missing["reason"] == "wav missing: " + os.path.join(
        release,
        "Session1",
        "sentences",
        "wav",
        "Ses01M_impro07",
        "Ses01M_impro07_F013.wav",
    )
    # Nothing from the sub-folder, the resource fork or the backup file.
    assert not any("Attribute" in w or "._" in w or "~" in w for w in by_where)


def test_second_prepare_reuses_the_dataset(prepared):
    release, data_dir, _, _ = prepared
    report = data_dir / "prepare_report_iemocap.tsv"
    stamp = os.stat(report).st_mtime_ns
    again = _prepare(data_dir, release)
    assert again.kept == 0 and len(again.problems) == 0  # nothing regenerated
    assert os.stat(report).st_mtime_ns == stamp
    assert len(again.as_data_source("train")) == len(KEPT)


def test_parent_of_the_release_is_accepted(prepared):
    release = prepared[0]
    builder = prepared[2]
    assert builder.release_root(os.path.dirname(release)) == release
    assert builder.release_root(release) == release


def test_missing_manual_dir_names_the_layout(tmp_path):
    with pytest.raises(base.LayoutError, match="Session1/ ... Session5/"):
        _prepare(tmp_path / "tfds", tmp_path / "nowhere")


def test_dir_without_sessions_names_the_layout(tmp_path):
    manual = tmp_path / "downloads"
    manual.mkdir()
    (manual / "README.txt").write_text("not IEMOCAP\n")
    with pytest.raises(base.LayoutError, match="holds no Session1") as e:
        _prepare(tmp_path / "tfds", manual)
    assert "sentences/wav/<dialog>/<utt>.wav" in str(e.value)
    assert not iemocap.Iemocap(data_dir=str(tmp_path / "tfds")).is_prepared()


def test_session_without_label_folder_is_a_layout_error(tmp_path):
    os.makedirs(tmp_path / "Session1" / "sentences" / "wav")
    with pytest.raises(base.LayoutError, match="EmoEvaluation"):
        iemocap.Iemocap(data_dir=str(tmp_path / "tfds")).release_root(str(tmp_path))
