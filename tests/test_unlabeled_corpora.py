"""Tests of the unlabeled-speech builders (LibriSpeech copy, any audio folder).

Each test writes a tiny corpus in the real on-disk layout (flac/wav/ogg
written with soundfile, plus the clutter a real copy holds: transcripts,
notes, corrupt and empty files) and prepares it as a user would.
"""

import csv
import os
import re

import numpy as np
import pytest
import tensorflow_datasets as tfds
from conftest import write_wav

from cpcjax import prepare
from cpcjax.data import sources
from cpcjax.data.corpora import audio_folder, base, librispeech

SR = 16000


def _tone(seconds, rate=SR, channels=1, seed=0):
    """A voiced-like test signal: a few harmonics plus noise, well below full scale."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * rate))) / rate
    f0 = 100 + 20 * seed
    x = sum(0.2 / k * np.sin(2 * np.pi * k * f0 * t) for k in range(1, 4))
    x = x + 0.02 * rng.standard_normal(len(t))
    if channels > 1:
        x = np.stack([x * (1 - 0.2 * c) for c in range(channels)], axis=1)
    return x.astype(np.float32)


def _prepare(builder, manual_dir, **kwargs):
    builder.download_and_prepare(
        file_format="array_record",
        download_config=tfds.download.DownloadConfig(
            manual_dir=os.fspath(manual_dir), try_download_gcs=False, **kwargs
        ),
    )
    return builder


def _records(builder):
    source = builder.as_data_source(split="train")
    out = {}
    for i in range(len(source)):
        r = source[i]
        r = {k: v.decode() if isinstance(v, bytes) else v for k, v in r.items()}
        assert r["id"] not in out, f"duplicate id {r['id']}"
        out[r["id"]] = r
    return out


def _report(builder):
    with open(builder.report_path, newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    assert rows[0] == ["kind", "where", "reason"]
    report = {
        os.path.basename(where): (kind, reason) for kind, where, reason in rows[1:]
    }
    assert len(report) == len(rows) - 1, "a file is reported twice"
    return report


# ----------------------------------------------------------------- LibriSpeech

# id -> (subset, seconds); every one a good 16 kHz flac.
LIBRI_GOOD = {
    "19-198-0001": ("train-clean-100", 0.40),
    "19-198-0002": ("train-clean-100", 0.50),
    "19-227-0000": ("train-clean-100", 0.30),
    "26-495-0000": ("train-clean-100", 0.60),
    "26-495-0001": ("train-clean-100", 0.35),
    "84-121123-0000": ("dev-clean", 0.45),
    "84-121123-0001": ("dev-clean", 0.30),
    "1272-128104-0000": ("dev-clean", 0.55),
}


@pytest.fixture(scope="module")
def libri_root(tmp_path_factory):
    """A folder holding `LibriSpeech/` with two subsets, laid out as released."""
    root = tmp_path_factory.mktemp("libri_manual")
    release = root / "LibriSpeech"
    for i, (utt, (subset, seconds)) in enumerate(LIBRI_GOOD.items()):
        speaker, chapter, _ = utt.split("-")
        write_wav(
            str(release / subset / speaker / chapter / f"{utt}.flac"),
            wav=_tone(seconds, seed=i),
            format="FLAC",
            subtype="PCM_16",
        )
    # What else a real copy holds: release notes, transcripts per chapter.
    for name in ("README.TXT", "SPEAKERS.TXT"):
        (release / name).write_text("; LibriSpeech\n")
    (release / "train-clean-100/19/198/19-198.trans.txt").write_text(
        "19-198-0001 NORTHANGER ABBEY\n19-198-0002 THIS LITTLE WORK\n"
    )
    # Damaged files: random bytes under a flac name, an empty file, a stray take.
    rng = np.random.default_rng(7)
    (release / "train-clean-100/26/495/26-495-0002.flac").write_bytes(
        rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()
    )
    (release / "dev-clean/84/121123/84-121123-0002.flac").write_bytes(b"")
    write_wav(
        str(release / "train-clean-100/26/495/26-495-take2.flac"),
        wav=_tone(0.3),
        format="FLAC",
    )
    return root


def _check_examples(records, subsets):
    want = {u: v for u, v in LIBRI_GOOD.items() if v[0] in subsets}
    assert set(records) == set(want)
    for utt, (subset, seconds) in want.items():
        r = records[utt]
        speaker, chapter, _ = utt.split("-")
        assert (r["speaker"], r["chapter"], r["subset"]) == (speaker, chapter, subset)
        assert r["audio"].dtype == np.int16
        assert len(r["audio"]) == int(round(seconds * SR))
        # The stored audio is the file's (lossless flac, no resampling).
        seed = list(LIBRI_GOOD).index(utt)
        assert np.corrcoef(r["audio"], _tone(seconds, seed=seed))[0, 1] > 0.999


def test_librispeech_default_config_from_parent_folder(libri_root, tmp_path, capsys):
    builder = librispeech.LibriSpeechManual(data_dir=tmp_path)
    assert builder.builder_config.name == "train-clean-100"
    _prepare(builder, libri_root)

    records = _records(builder)
    _check_examples(records, {"train-clean-100"})
    assert {r["speaker"] for r in records.values()} == {"19", "26"}

    report = _report(builder)
    assert builder.report_path == os.path.join(
        tmp_path, "prepare_report_librispeech_manual_train-clean-100.tsv"
    )
    assert report["26-495-0002.flac"][0] == "audio"
    assert report["26-495-0002.flac"][1].startswith("unreadable")
    assert report["26-495-take2.flac"] == ("audio", librispeech.BAD_NAME)
    # dev-clean was not selected; transcripts and release notes are not audio.
    assert set(report) == {"26-495-0002.flac", "26-495-take2.flac"}

    out = capsys.readouterr().out
    assert "librispeech_manual: prepared 5 utterances, skipped 2 audio" in out
    assert "the full release has 28539 utterances, this copy gave 5" in out


def test_librispeech_subset_selection_from_release_folder(libri_root, tmp_path):
    # Any order, any spelling of the selection names one dataset.
    config = librispeech.config_for(["train-clean-100", "dev-clean"])
    same = librispeech.config_for("dev-clean+train-clean-100")
    assert config.name == same.name == "dev-clean+train-clean-100"
    assert config.subsets == same.subsets == ("dev-clean", "train-clean-100")
    builder = librispeech.LibriSpeechManual(data_dir=tmp_path, config=config)
    assert builder.EXPECTED_COUNT == 28539 + 2703
    # The manual dir may be `LibriSpeech/` itself.
    _prepare(builder, libri_root / "LibriSpeech")

    records = _records(builder)
    _check_examples(records, {"train-clean-100", "dev-clean"})
    by_subset = {}
    for r in records.values():
        by_subset[r["subset"]] = by_subset.get(r["subset"], 0) + 1
    assert by_subset == {"train-clean-100": 5, "dev-clean": 3}
    assert builder.info.splits["train"].num_examples == 8
    assert builder.data_dir.endswith(
        os.path.join("librispeech_manual", "dev-clean+train-clean-100", "1.0.0")
    )

    report = _report(builder)
    assert set(report) == {
        "26-495-0002.flac",
        "26-495-take2.flac",
        "84-121123-0002.flac",
    }
    assert report["84-121123-0002.flac"][1].startswith(("unreadable", "empty"))


def test_librispeech_missing_subset_names_it_and_the_layout(libri_root, tmp_path):
    builder = librispeech.LibriSpeechManual(
        data_dir=tmp_path,
        config=librispeech.config_for("train-clean-100,train-clean-360"),
    )
    with pytest.raises(base.LayoutError) as e:
        _prepare(builder, libri_root)
    message = str(e.value)
    assert "train-clean-360" in message
    assert "it holds: dev-clean, train-clean-100" in message
    assert librispeech.LibriSpeechManual.EXPECTED_LAYOUT in message
    assert not builder.is_prepared()


def test_librispeech_preparing_twice_does_not_duplicate(libri_root, tmp_path):
    config = librispeech.config_for("dev-clean")
    first = _prepare(
        librispeech.LibriSpeechManual(data_dir=tmp_path, config=config), libri_root
    )
    first_ids = set(_records(first))

    # A new builder finds the prepared data and does nothing.
    again = librispeech.LibriSpeechManual(data_dir=tmp_path, config="dev-clean")
    assert again.is_prepared()
    _prepare(again, libri_root)
    assert set(_records(again)) == first_ids

    # Regenerating with the same builder replaces data and report, not adds.
    _prepare(
        first, libri_root, download_mode=tfds.download.GenerateMode.FORCE_REDOWNLOAD
    )
    assert set(_records(first)) == first_ids and len(first_ids) == 3
    assert list(_report(first)) == ["84-121123-0002.flac"]


def test_librispeech_configs_and_expected_counts():
    names = [c.name for c in librispeech.LibriSpeechManual.BUILDER_CONFIGS]
    assert names == [
        "train-clean-100",
        "train-clean-360",
        "train-other-500",
        "train-960",
    ]
    train_960 = librispeech.config_for(
        ("train-other-500", "train-clean-100", "train-clean-360")
    )
    assert train_960.name == "train-960"
    assert train_960.expected_count == 28539 + 104014 + 148688
    assert librispeech.config_for("train-clean-360").expected_count == 104014
    # A subset outside the release (Mini LibriSpeech) has no known count.
    mini = librispeech.config_for("train-clean-5")
    assert mini.expected_count is None
    assert librispeech.config_for("train-960+dev-clean").subsets == (
        "dev-clean",
        "train-clean-100",
        "train-clean-360",
        "train-other-500",
    )
    with pytest.raises(ValueError, match="no subsets"):
        librispeech.config_for("")


# ----------------------------------------------------------------- AudioFolder


@pytest.fixture(scope="module")
def talks_root(tmp_path_factory):
    """A folder of talks in mixed formats, rates and channel counts."""
    root = tmp_path_factory.mktemp("talks")
    write_wav(
        str(root / "talkA/part1.wav"),
        wav=_tone(0.5, rate=44100, channels=2, seed=1),
        rate=44100,
    )
    write_wav(
        str(root / "talkB/x.ogg"),
        wav=_tone(0.4, seed=2),
        format="OGG",
        subtype="VORBIS",
    )
    write_wav(str(root / "talkB/y.flac"), wav=_tone(0.3, seed=3), format="FLAC")
    write_wav(str(root / "talkB/y.wav"), wav=_tone(0.3, seed=4))  # same id as y.flac
    write_wav(str(root / "talkB/silent.wav"), wav=np.zeros(8000, np.float32))
    write_wav(str(root / "talkC/long.wav"), wav=_tone(2.5, seed=5))
    write_wav(str(root / "intro.wav"), wav=_tone(0.25, seed=6))  # no folder: no speaker
    (root / "notes.txt").write_text("talk list\n")
    write_wav(str(root / ".cache/hidden.wav"), wav=_tone(0.3))
    return root


def test_audio_folder_default_pattern(talks_root, tmp_path, capsys):
    builder = audio_folder.AudioFolder(
        data_dir=tmp_path, config=audio_folder.folder_config("ted")
    )
    _prepare(builder, talks_root)

    records = _records(builder)
    speakers = {i: r["speaker"] for i, r in records.items()}
    assert speakers == {
        "talkA/part1": "talkA",
        "talkB/x": "talkB",
        "talkB/y": "talkB",
        "talkC/long": "talkC",
        "intro": audio_folder.UNKNOWN_SPEAKER,
    }
    lengths = {i: len(r["audio"]) for i, r in records.items()}
    # 0.5 s of 44.1 kHz stereo comes out as 16 kHz mono.
    assert lengths == {
        "talkA/part1": 8000,
        "talkB/x": 6400,
        "talkB/y": 4800,
        "talkC/long": 40000,
        "intro": 4000,
    }
    # y.flac sorts first and is kept.
    assert np.corrcoef(records["talkB/y"]["audio"], _tone(0.3, seed=3))[0, 1] > 0.999

    report = _report(builder)
    assert builder.report_path.endswith("prepare_report_audio_folder_ted.tsv")
    assert report["silent.wav"] == ("audio", "silent")
    assert "same id 'talkB/y'" in report["y.wav"][1]
    assert set(report) == {"silent.wav", "y.wav"}
    out = capsys.readouterr().out
    assert "audio_folder: prepared 5 utterances, skipped 2 audio" in out

    # The settings that prepared the name are kept with it.
    reread = audio_folder.AudioFolder(data_dir=tmp_path, config="ted")
    assert reread.is_prepared()
    metadata = reread.info.metadata
    assert metadata["speaker_pattern"] == audio_folder.DEFAULT_SPEAKER_PATTERN
    assert metadata["chunk_seconds"] == 60.0


def test_audio_folder_custom_pattern_and_chunks(
    talks_root, tmp_path, capsys, monkeypatch
):
    # Progress as it goes to a log (stderr is no terminal here), a line a file.
    monkeypatch.setattr(base, "PROGRESS_SECONDS", 0.0)
    config = audio_folder.folder_config(
        "ted_1s",
        speaker_pattern=r"^talk(?P<speaker>[A-Z])/",
        extensions=("wav", ".OGG"),
        chunk_seconds=1.0,
    )
    builder = _prepare(
        audio_folder.AudioFolder(data_dir=tmp_path, config=config), talks_root
    )

    records = _records(builder)
    # flac is not taken now, so y.wav is the only talkB/y.
    assert {i: r["speaker"] for i, r in records.items()} == {
        "talkA/part1": "A",
        "talkB/x": "B",
        "talkB/y": "B",
        "intro": "unknown",
        "talkC/long#0": "C",
        "talkC/long#1": "C",
        "talkC/long#2": "C",
    }
    # 2.5 s cut into three near-equal chunks of at most 1 s, nothing lost.
    parts = [records[f"talkC/long#{k}"]["audio"] for k in range(3)]
    assert [len(p) for p in parts] == [13334, 13333, 13333]
    assert np.corrcoef(np.concatenate(parts), _tone(2.5, seed=5))[0, 1] > 0.999
    assert records["talkB/y"]["id"] == "talkB/y"

    assert set(_report(builder)) == {"silent.wav"}
    out, err = capsys.readouterr()
    assert "cut 1 files longer than 1 s into 3 chunks" in out
    assert "prepared 7 utterances, skipped 1 audio" in out
    # TFDS's own bars share stderr in a test, not in `cpcjax.prepare`.
    assert re.findall(r"audio_folder/ted_1s: decoding \d+/\d+ files\n", err) == [
        f"audio_folder/ted_1s: decoding {n}/6 files\n" for n in range(1, 7)
    ]


def test_audio_folder_config_errors(tmp_path):
    with pytest.raises(ValueError, match="named group"):
        audio_folder.folder_config("ted", speaker_pattern=r"^([^/]+)/")
    with pytest.raises(ValueError, match="not a regular expression"):
        audio_folder.folder_config("ted", speaker_pattern=r"^(?P<speaker>[^/]+")
    with pytest.raises(ValueError, match="name"):
        audio_folder.folder_config("my talks")
    with pytest.raises(ValueError, match="needs a config"):
        audio_folder.AudioFolder(data_dir=tmp_path)
    # A folder without audio is a layout error, before anything is written.
    empty = tmp_path / "no_audio"
    empty.mkdir()
    (empty / "notes.txt").write_text("nothing here\n")
    builder = audio_folder.AudioFolder(data_dir=tmp_path / "data", config="empty")
    with pytest.raises(base.LayoutError, match="holds no .wav, .flac, .ogg file"):
        _prepare(builder, empty)


# ------------------------------------------------------------ librispeech_tfds


def _fake_stock_librispeech():
    """TFDS's stock `librispeech` builder with three tiny utterances per split in
    place of the 57 GiB download. Its name, version, features and split names
    are the stock builder's, so the stock builder reads what it prepares."""
    from tensorflow_datasets.datasets.librispeech import (
        librispeech_dataset_builder as stock,
    )

    class FakeLibrispeech(stock.Builder, skip_registration=True):
        name = "librispeech"

        @classmethod
        def get_metadata(cls):
            return stock.Builder.get_metadata()

        def _split_generators(self, dl_manager):
            return {
                "train_clean100": self._generate(19),
                "dev_clean": self._generate(84),
            }

        def _generate(self, speaker):
            for n in range(3):
                key = f"{speaker}-198-{n:04d}"
                yield (
                    key,
                    {
                        "id": key,
                        "speaker_id": speaker,
                        "chapter_id": 198,
                        "speech": np.round(_tone(0.3 + 0.1 * n) * 32767).astype(
                            np.int16
                        ),
                        "text": "NORTHANGER ABBEY",
                    },
                )

    return FakeLibrispeech


@pytest.fixture
def stock_librispeech(monkeypatch):
    """While the test runs, `tfds.builder("librispeech")` prepares the fake,
    until `monkeypatch.undo()` gives TFDS's real one back."""
    fake, real = _fake_stock_librispeech(), tfds.builder
    monkeypatch.setattr(
        tfds,
        "builder",
        lambda name, **kw: fake(**kw) if name == "librispeech" else real(name, **kw),
    )
    return fake


def _read_through_stock_builder(config, monkeypatch):
    """The pretraining corpus as the reader indexes it, with TFDS's real stock
    builder reading the prepared files."""
    monkeypatch.undo()
    utts = sources.unlabeled_corpus(config)
    # config.pretrain.librispeech_subsets is train-clean-100: speaker 19 only.
    assert sorted(utts.names) == ["19-198-0000", "19-198-0001", "19-198-0002"]
    assert sorted(utts.lengths) == [4800, 6400, 8000]


def test_librispeech_tfds_is_prepared_as_array_record(
    stock_librispeech, monkeypatch, tmp_path, tiny_config, capsys
):
    config = tiny_config(pretrain__corpus="librispeech_tfds", data_dir=str(tmp_path))
    with pytest.raises(sources.CorpusNotPrepared, match="cpcjax.prepare librispeech"):
        sources.check_prepared(config)

    builder = prepare.prepare("librispeech_tfds", str(tmp_path))
    assert builder.info.file_format == tfds.core.FileFormat.ARRAY_RECORD
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"librispeech_tfds: prepared in {builder.data_dir}"
    sources.check_prepared(config)
    _read_through_stock_builder(config, monkeypatch)


def test_librispeech_tfds_prepared_as_tfrecord_is_refused_then_converted(
    stock_librispeech, monkeypatch, tmp_path, tiny_config, capsys
):
    # As TFDS prepares it by default, e.g. with `tfds build librispeech`.
    stock_librispeech(data_dir=tmp_path).download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False)
    )
    config = tiny_config(pretrain__corpus="librispeech_tfds", data_dir=str(tmp_path))
    with pytest.raises(sources.CorpusNotPrepared) as e:
        sources.check_prepared(config)
    (line,) = str(e.value).splitlines()
    assert "prepared as tfrecord only" in line
    assert line.endswith(
        f"`python -m cpcjax.prepare librispeech_tfds --data_dir={tmp_path}`"
    )

    capsys.readouterr()
    builder = prepare.prepare("librispeech_tfds", str(tmp_path))
    out = capsys.readouterr().out
    assert "librispeech_tfds: train_clean100: 1 shards copied" in out
    assert "librispeech_tfds: dev_clean: 1 shards copied" in out
    # The TFRecord files stay, for whoever streams them with tf.data.
    suffixes = {
        name.split(".")[1].split("-")[0]
        for name in os.listdir(builder.data_dir)
        if name.startswith("librispeech-")
    }
    assert suffixes == {"tfrecord", "array_record"}
    sources.check_prepared(config)
    _read_through_stock_builder(config, monkeypatch)
