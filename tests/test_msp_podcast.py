"""Tests of the MSP-Podcast builder on tiny releases in the real layout.

Label lines are the real ones of `shared/data_formats/msp_podcast_label_examples.txt`
(FileName..Gender as published; Split_Set and a few rows changed to cover every
case); the wavs are short synthesized tones with noise.
"""

import csv
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from conftest import write_wav
from releases import (
    V18_ROWS,
    V111_COUNTS,
    V111_ROWS,
    prepare_msp,
    write_msp_release,
)

from cpcjax.data.corpora import base, msp_podcast

V18_LINE = {row.split(",")[0][:-4]: i + 2 for i, row in enumerate(V18_ROWS)}
V18_COUNTS = {"train": 3, "development": 2, "test1": 2}


def _records(builder, split):
    source = builder.as_data_source(split)
    return {r["id"].decode(): r for r in (source[i] for i in range(len(source)))}


def _counts(builder):
    return {s: builder.info.splits[s].num_examples for s in builder.info.splits}


def _report(data_dir):
    path = os.path.join(data_dir, "prepare_report_msp_podcast.tsv")
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


@pytest.fixture(scope="module")
def v18(tmp_path_factory):
    """A v1.8-like release, prepared once: (manual dir, data dir, builder, stdout)."""
    tmp = tmp_path_factory.mktemp("v18")
    root = write_msp_release(
        tmp / "MSP-PODCAST-Publish-1.8",
        V18_ROWS,
        "Audios",
        "Labels",
        "labels_concensus.csv",
        skip_wavs={"MSP-PODCAST_0001_0020"},
    )
    audio_dir = os.path.join(root, "Audios")
    write_wav(
        os.path.join(audio_dir, "MSP-PODCAST_1023_0235.wav"),
        seconds=0.5,
        rate=44100,
        channels=2,
    )
    open(os.path.join(audio_dir, "MSP-PODCAST_0001_0016.wav"), "w").close()
    truncated = os.path.join(audio_dir, "MSP-PODCAST_0001_0019.wav")
    with open(truncated, "r+b") as f:
        f.truncate(44 + 1000)
    data_dir = tmp / "data"
    builder = prepare_msp(root, data_dir)
    return root, str(data_dir), builder


def test_v18_splits_counts_and_labels(v18):
    _, _, builder = v18
    assert _counts(builder) == V18_COUNTS
    train = _records(builder, "train")
    row = train["MSP-PODCAST_0001_0008"]
    # EmoAct 2.2, EmoVal 4.0, EmoDom 2.6 -> (activation, valence, dominance).
    np.testing.assert_allclose(row["labels"], [2.2, 4.0, 2.6], rtol=1e-6)
    assert row["labels"].dtype == np.float32
    assert row["speaker"].decode() == "30" and row["gender"].decode() == "male"
    assert builder.info.features["category"].int2str(row["category"]) == "N"
    assert row["session"] == 0
    angry = train["MSP-PODCAST_1023_0235"]
    assert builder.info.features["category"].int2str(angry["category"]) == "A"
    # Validation is v1.8's name for development.
    dev = _records(builder, "development")
    assert sorted(dev) == ["MSP-PODCAST_0002_0033", "MSP-PODCAST_0002_0039"]
    np.testing.assert_allclose(dev["MSP-PODCAST_0002_0033"]["labels"], [4.8, 4.2, 5.4])
    assert sorted(_records(builder, "test1")) == [
        "MSP-PODCAST_0001_0011",
        "MSP-PODCAST_0001_0013",
    ]
    assert "test3" not in builder.info.splits


def test_unknown_speaker_and_gender_are_lowercase_unknown(v18):
    dev = _records(v18[2], "development")
    assert {k: r["speaker"].decode() for k, r in dev.items()} == {
        "MSP-PODCAST_0002_0033": "unknown",
        "MSP-PODCAST_0002_0039": "unknown",
    }
    assert dev["MSP-PODCAST_0002_0033"]["gender"].decode() == "unknown"
    assert dev["MSP-PODCAST_0002_0039"]["gender"].decode() == "female"


def test_stereo_44k_is_downmixed_and_resampled(v18):
    train = _records(v18[2], "train")
    stereo = train["MSP-PODCAST_1023_0235"]["audio"]
    assert stereo.dtype == np.int16 and stereo.ndim == 1
    assert abs(len(stereo) - 8000) <= 1  # 0.5 s at 16 kHz
    assert len(train["MSP-PODCAST_0001_0008"]["audio"]) == 8000


def test_release_survives_preparation(v18):
    root, data_dir, _ = v18
    reloaded = msp_podcast.MspPodcast(data_dir=data_dir)
    assert reloaded.is_prepared()
    metadata = reloaded.info.metadata
    assert metadata["release"] == "MSP-PODCAST-Publish-1.8"
    assert metadata["labels_file"] == os.path.join("Labels", "labels_concensus.csv")
    assert len(metadata["labels_sha256"]) == 64


def test_report_lists_every_skipped_row_with_its_reason(v18):
    root, data_dir, _ = v18
    labels = os.path.join(root, "Labels", "labels_concensus.csv")
    audio_dir = os.path.join(root, "Audios")
    rows = {(r["kind"], r["where"]): r["reason"] for r in _report(data_dir)}
    where = {k: f"{labels}:{n}" for k, n in V18_LINE.items()}
    empty = os.path.join(audio_dir, "MSP-PODCAST_0001_0016.wav")
    truncated = os.path.join(audio_dir, "MSP-PODCAST_0001_0019.wav")
    assert rows[("audio", empty)] == "empty (0 bytes)"
    assert rows[("audio", truncated)].startswith("truncated")
    assert rows[("label", where["MSP-PODCAST_0001_0020"])] == (
        f"wav missing: {os.path.join(audio_dir, 'MSP-PODCAST_0001_0020.wav')}"
    )
    assert rows[("label", where["MSP-PODCAST_0001_0024"])] == (
        "non-numeric EmoDom '2.4x'"
    )
    assert rows[("label", where["MSP-PODCAST_0001_0027"])].startswith(
        "missing column(s) EmoDom, SpkrID"
    )
    assert rows[("label", where["MSP-PODCAST_0001_0030"])].startswith(
        "unknown EmoClass 'Q'"
    )
    # Test3 rows are left out but are not problems.
    assert len(rows) == 6


def test_preparing_again_does_not_duplicate(v18, tmp_path):
    root, data_dir, builder = v18
    before = _report(data_dir)
    again = prepare_msp(root, data_dir)  # already prepared: reused as is
    assert again.info.splits["train"].num_examples == V18_COUNTS["train"]
    assert _report(data_dir) == before
    # Regenerating with one builder instance reports each problem once.
    fresh = tmp_path / "data"
    twice = prepare_msp(root, fresh)
    twice.download_and_prepare(
        file_format="array_record",
        download_config=tfds.download.DownloadConfig(
            manual_dir=root,
            try_download_gcs=False,
            download_mode=tfds.download.GenerateMode.FORCE_REDOWNLOAD,
        ),
    )
    assert len(_records(twice, "train")) == V18_COUNTS["train"]
    assert _report(str(fresh)) == before


def test_v111_layout_found_automatically_or_named_in_config(tmp_path, capsys):
    root = write_msp_release(
        tmp_path / "MSP-PODCAST-Publish-1.11",
        V111_ROWS,
        "Audio",
        "labels",
        "labels_consensus.csv",
    )
    found = prepare_msp(root, tmp_path / "auto")
    assert _counts(found) == V111_COUNTS
    assert "MSP-PODCAST_0001_0008_0001" in _records(found, "train")
    assert "MSP-PODCAST_0002_0033" in _records(found, "development")
    assert found.info.metadata["release"] == "MSP-PODCAST-Publish-1.11"
    out = capsys.readouterr().out
    assert "msp_podcast: prepared 4 utterances, skipped nothing" in out
    assert "train 2, development 1, test2 1; 1 Test3 utterances left out" in out

    # The same corpus via a config naming the folders, under the name
    # "default" as cpcjax.data.sources builds it.
    config = msp_podcast.MspPodcastConfig(
        name="default", audio_dir="Audio", labels_dir="labels"
    )
    named = prepare_msp(root, tmp_path / "named", config=config)
    assert _records(named, "test2").keys() == _records(found, "test2").keys()
    assert named.data_path.parent.name == "default"


def test_split_without_usable_audio_names_the_split(tmp_path):
    root = write_msp_release(
        tmp_path / "MSP-PODCAST-Publish-1.11",
        V111_ROWS,
        "Audio",
        "labels",
        "labels_consensus.csv",
    )
    empty = os.path.join(root, "Audio", "MSP-PODCAST_0001_0016.wav")
    open(empty, "w").close()
    with pytest.raises(base.LayoutError, match="none of the 1 wavs of split test2"):
        prepare_msp(root, tmp_path / "data")
    assert [r["where"] for r in _report(tmp_path / "data")] == [empty]


def test_config_naming_an_absent_folder_is_a_layout_error(tmp_path):
    root = write_msp_release(
        tmp_path / "MSP-PODCAST-Publish-1.11",
        V111_ROWS[:1],
        "Audios",
        "Labels",
        "labels_consensus.csv",
    )
    config = msp_podcast.MspPodcastConfig(name="default", audio_dir="Wavs")
    with pytest.raises(base.LayoutError, match="no folder Wavs/"):
        prepare_msp(root, tmp_path / "data", config=config)


def test_missing_manual_dir_is_a_layout_error(tmp_path):
    with pytest.raises(base.LayoutError) as error:
        prepare_msp(tmp_path / "MSP-PODCAST-Publish-1.11", tmp_path / "data")
    assert msp_podcast.MspPodcast.EXPECTED_LAYOUT in str(error.value)


def test_release_without_labels_is_a_layout_error(tmp_path):
    root = tmp_path / "MSP-PODCAST-Publish-1.11"
    os.makedirs(root / "Audios")
    write_wav(root / "Audios" / "MSP-PODCAST_0001_0008.wav")
    with pytest.raises(
        base.LayoutError, match="no folder Labels/ or labels/ or label/"
    ) as error:
        prepare_msp(root, tmp_path / "data")
    assert msp_podcast.MspPodcast.EXPECTED_LAYOUT in str(error.value)
    os.makedirs(root / "Labels")
    with pytest.raises(base.LayoutError, match="neither labels_consensus.csv") as error:
        prepare_msp(root, tmp_path / "data")
    assert msp_podcast.MspPodcast.EXPECTED_LAYOUT in str(error.value)


def test_header_without_a_column_is_a_layout_error(tmp_path):
    root = write_msp_release(
        tmp_path / "release", V111_ROWS[:1], "Audios", "Labels", "labels_consensus.csv"
    )
    path = os.path.join(root, "Labels", "labels_consensus.csv")
    with open(path, "w") as f:
        f.write("FileName,EmoClass,EmoAct,EmoVal,SpkrID,Gender,Split_Set\n")
    with pytest.raises(base.LayoutError, match="no column EmoDom"):
        msp_podcast.read_labels(
            path, os.path.join(root, "Audios"), msp_podcast.audio.Problems()
        )


def test_release_name_without_version_uses_the_labels_file():
    assert (
        msp_podcast.release_name(
            "/data/MSP-PODCAST-Publish-1.11/", "x/labels_consensus.csv"
        )
        == "MSP-PODCAST-Publish-1.11"
    )
    assert msp_podcast.release_name("/data/msp", "msp/Labels/labels_concensus.csv") == (
        "msp (v1.6-v1.8, labels_concensus.csv)"
    )
