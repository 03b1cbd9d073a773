"""Tests of the IEMOCAP builder on a tiny tree in the real release layout."""

import csv
import os

import numpy as np
import pytest
from releases import prepare_iemocap, write_iemocap_release

from cpcjax.data.corpora import base, iemocap

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
    release = write_iemocap_release(str(tmp))
    builder = prepare_iemocap(tmp / "tfds", release)
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
    again = prepare_iemocap(data_dir, release)
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
        prepare_iemocap(tmp_path / "tfds", tmp_path / "nowhere")


def test_dir_without_sessions_names_the_layout(tmp_path):
    manual = tmp_path / "downloads"
    manual.mkdir()
    (manual / "README.txt").write_text("not IEMOCAP\n")
    with pytest.raises(base.LayoutError, match="holds no Session1") as e:
        prepare_iemocap(tmp_path / "tfds", manual)
    assert "sentences/wav/<dialog>/<utt>.wav" in str(e.value)
    assert not iemocap.Iemocap(data_dir=str(tmp_path / "tfds")).is_prepared()


def test_session_without_label_folder_is_a_layout_error(tmp_path):
    os.makedirs(tmp_path / "Session1" / "sentences" / "wav")
    with pytest.raises(base.LayoutError, match="EmoEvaluation"):
        iemocap.Iemocap(data_dir=str(tmp_path / "tfds")).release_root(str(tmp_path))
