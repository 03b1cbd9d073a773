"""The index a prepared corpus carries, so that starting a run reads no audio.

Each test prepares a tiny corpus as a user would (the synthetic one, or a
release in IEMOCAP's or MSP-Podcast's layout) and checks its index against
what reading every example gives.
"""

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT
from etils import epath
from releases import (
    V111_COUNTS,
    V111_ROWS,
    prepare_iemocap,
    prepare_msp,
    write_iemocap_release,
    write_msp_release,
)
from tensorflow_datasets.core.data_sources import array_record

from cpcjax.data import index, pipeline, sources
from cpcjax.data.corpora import synthetic


def _tiny_synthetic(part, name=None):
    sizes = (
        dict(num_sessions=2, utterances_per_speaker=3)
        if part == "emotion"
        else dict(num_speakers=3, utterances_per_speaker=2)
    )
    return synthetic.SyntheticSpeechConfig(
        name=name or f"index_{part}", part=part, **sizes
    )


@pytest.fixture
def reads(monkeypatch):
    """Counts the examples read from prepared (ArrayRecord) data."""
    counter = {"examples": 0}
    cls = array_record.ArrayRecordDataSource
    getitem, getitems = cls.__getitem__, cls.__getitems__

    def counted_getitem(self, key):
        counter["examples"] += 1
        return getitem(self, key)

    def counted_getitems(self, keys):
        counter["examples"] += len(keys)
        return getitems(self, keys)

    monkeypatch.setattr(cls, "__getitem__", counted_getitem)
    monkeypatch.setattr(cls, "__getitems__", counted_getitems)
    return counter


@pytest.fixture
def index_log(caplog, monkeypatch):
    """caplog, seeing the index's lines even where `cpcjax.logs.setup` has cut
    the cpcjax loggers off from the root logger."""
    logger = logging.getLogger(index.__name__)
    monkeypatch.setattr(logger, "propagate", False)
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger=index.__name__)
    yield caplog
    logger.removeHandler(caplog.handler)


def _index_lines(caplog, level="INFO"):
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == index.__name__ and r.levelname == level
    ]


def _decoded(source, labeled):
    """The samplers' fields as reading every example gives them."""
    return pipeline.index_source(source, labeled=labeled, desc="decoded")


def _assert_same(utts, decoded, labeled):
    np.testing.assert_array_equal(utts.lengths, decoded.lengths)
    np.testing.assert_array_equal(utts.speakers, decoded.speakers)
    np.testing.assert_array_equal(utts.names, decoded.names)
    if labeled:
        np.testing.assert_array_equal(utts.labels, decoded.labels)
        np.testing.assert_array_equal(utts.sessions, decoded.sessions)
        np.testing.assert_array_equal(utts.categories, decoded.categories)
    else:
        assert utts.labels is None and utts.sessions is None
    assert len(set(utts.names)) == len(utts) > 0
    # Rows still point at their own audio.
    for row in (0, len(utts) - 1):
        assert len(utts.audio(row)) == utts.lengths[row]


@pytest.mark.parametrize("part", ["emotion", "unlabeled"])
def test_synthetic_index_matches_decoding(tmp_path, part, reads):
    builder = synthetic.load_synthetic(_tiny_synthetic(part), tmp_path)
    path = index.index_path(builder)
    assert path == epath.Path(builder.data_dir) / "cpcjax_index_v1.npz"
    assert path.exists()
    labeled = part == "emotion"
    reads["examples"] = 0
    utts = index.utterances(builder, ["train"], labeled=labeled, desc=part)
    assert reads["examples"] == 0
    _assert_same(utts, _decoded(builder.as_data_source("train"), labeled), labeled)
    if labeled:
        assert set(utts.sessions) == {1, 2}
        assert utts.labels.shape == (len(utts), 3)


def test_iemocap_index_matches_decoding(tmp_path, reads):
    builder = prepare_iemocap(tmp_path / "data", write_iemocap_release(str(tmp_path)))
    assert index.index_path(builder).exists()
    reads["examples"] = 0
    utts = index.utterances(builder, ["train"], labeled=True, desc="iemocap")
    assert reads["examples"] == 0
    decoded = _decoded(builder.as_data_source("train"), labeled=True)
    _assert_same(utts, decoded, labeled=True)
    assert {s[:5] for s in utts.names} == {"Ses01", "Ses02"}


def test_msp_podcast_index_keeps_each_partition(tmp_path, reads):
    root = write_msp_release(
        tmp_path / "MSP-PODCAST-Publish-1.11",
        V111_ROWS,
        "Audio",
        "labels",
        "labels_consensus.csv",
    )
    builder = prepare_msp(root, tmp_path / "data")
    splits = list(V111_COUNTS)
    reads["examples"] = 0
    utts = index.utterances(
        builder, splits, labeled=True, desc="msp_podcast", partitions=True
    )
    assert reads["examples"] == 0
    decoded = _decoded(
        sources.ConcatSource(builder.as_data_source(s) for s in splits), labeled=True
    )
    _assert_same(utts, decoded, labeled=True)
    assert {p: int(np.sum(utts.partitions == p)) for p in splits} == V111_COUNTS


def test_a_run_reads_no_audio_before_its_first_batch(tiny_config, tmp_path, reads):
    config = tiny_config(data_dir=str(tmp_path))
    # Prepared before the run starts, as `cpcjax.prepare` or a first run does.
    sources.unlabeled_corpus(config)
    sources.emotion_corpus(config)

    reads["examples"] = 0
    unlabeled = sources.unlabeled_corpus(config)
    emotion = sources.emotion_corpus(config)
    batches = pipeline.CropBatches(unlabeled, 5120, 8, 0, slice(None))
    assert reads["examples"] == 0
    assert len(unlabeled) == 12 and len(emotion) == 5 * 2 * 6
    batches.batch(0)
    assert reads["examples"] == 8  # the batch's own rows, nothing else


def _drop_index(builder):
    path = index.index_path(builder)
    path.unlink()
    return path


def test_an_old_preparation_is_indexed_once_then_read_from_its_cache(
    tmp_path, reads, index_log
):
    builder = synthetic.load_synthetic(_tiny_synthetic("emotion"), tmp_path)
    expected = _decoded(builder.as_data_source("train"), labeled=True)
    path = _drop_index(builder)  # as prepared before cpcjax wrote indexes

    reads["examples"] = 0
    first = index.utterances(builder, ["train"], labeled=True, desc="old corpus")
    assert reads["examples"] == len(expected)
    (line,) = _index_lines(index_log)
    assert line.startswith(f"old corpus: no index in {path.parent}")
    assert "cached there" in line
    assert path.exists()
    _assert_same(first, expected, labeled=True)

    index_log.clear()
    reads["examples"] = 0
    again = index.utterances(builder, ["train"], labeled=True, desc="old corpus")
    assert reads["examples"] == 0 and not _index_lines(index_log)
    _assert_same(again, expected, labeled=True)


def test_a_read_only_data_dir_is_indexed_without_caching(
    tmp_path, reads, index_log, monkeypatch
):
    builder = synthetic.load_synthetic(_tiny_synthetic("unlabeled"), tmp_path)
    path = _drop_index(builder)

    def refuse(self, data):
        raise PermissionError(13, "Read-only file system", os.fspath(self))

    monkeypatch.setattr(type(path), "write_bytes", refuse)
    for _ in range(2):
        reads["examples"] = 0
        utts = index.utterances(builder, ["train"], labeled=False, desc="ro")
        assert reads["examples"] == len(utts) == 6
    assert not path.exists()
    assert not list(epath.Path(builder.data_dir).glob("*.incomplete-*"))
    warnings = _index_lines(index_log, "WARNING")
    assert len(warnings) == 2
    assert "could not cache the index" in warnings[0]
    assert "PermissionError" in warnings[0]


def test_only_process_zero_writes_the_cache(tmp_path, monkeypatch):
    builder = synthetic.load_synthetic(_tiny_synthetic("unlabeled"), tmp_path)
    path = _drop_index(builder)
    monkeypatch.setattr(index, "_is_main_process", lambda: False)
    assert len(index.utterances(builder, ["train"], labeled=False, desc="p1")) == 6
    assert not path.exists()


def test_a_stale_or_foreign_index_is_not_trusted(tmp_path, reads):
    builder = synthetic.load_synthetic(_tiny_synthetic("unlabeled"), tmp_path)
    fields = index.read(builder)["train"]
    # An index of another count (e.g. a copy from another preparation).
    index.write(builder, {"train": {k: v[:-1] for k, v in fields.items()}})
    assert index.read(builder) == {}
    reads["examples"] = 0
    utts = index.utterances(builder, ["train"], labeled=False, desc="stale")
    assert reads["examples"] == len(utts) == 6
    np.testing.assert_array_equal(index.read(builder)["train"]["names"], utts.names)
    # Not an index at all.
    index.index_path(builder).write_bytes(b"not a zip file")
    assert index.read(builder) == {}


def test_prepare_indexes_a_dataset_prepared_before_indexes(tmp_path, capsys):
    from cpcjax import prepare

    release = write_iemocap_release(str(tmp_path))
    builder = prepare_iemocap(tmp_path / "data", release)
    path = _drop_index(builder)
    capsys.readouterr()
    prepare.prepare("iemocap", str(tmp_path / "data"), release)
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"iemocap: indexed 9 utterances in {path}"
    assert path.exists()


def test_bench_startup_case_prints_one_json_line(tmp_path):
    env = dict(
        os.environ,
        CPCJAX_DATA_DIR=str(tmp_path),
        XLA_FLAGS="--xla_force_host_platform_device_count=1",
    )
    cmd = [
        sys.executable,
        "-m",
        "cpcjax.bench",
        "--cases=startup",
        "--startup_utterances=10,30",
        "--dtypes=float32",
        "--batch_size=4",
        "--startup_repeats=1",
    ]
    # The second run starts the smaller size only: it is there to find it
    # prepared.
    runs = [
        subprocess.run(
            args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
        )
        for args in (cmd, [*cmd, "--startup_utterances=10"])
    ]
    lines = []
    for proc in runs:
        assert proc.returncode == 0, proc.stderr[-3000:]
        (line,) = [l for l in proc.stdout.splitlines() if l.startswith("{")]
        lines.append(json.loads(line))
    first, second = lines
    assert set(first) == {
        "case",
        "cpu",
        "platform",
        "batch",
        "window",
        "utterance_s",
        "utterances",
        "startup_s",
        "open_s",
        "prepare_s",
        "ratio",
        "repeats",
    }
    assert first["case"] == "startup" and first["utterances"] == [10, 30]
    assert first["batch"] == 4 and first["window"] == 8000
    assert all(s > 0 for s in first["startup_s"] + first["prepare_s"])
    # The data's part of each start is a part of it.
    assert all(0 < o < s for o, s in zip(first["open_s"], first["startup_s"]))
    assert first["ratio"] == pytest.approx(
        first["startup_s"][1] / first["startup_s"][0], rel=0.01
    )
    # The second run reuses the corpora the first prepared.
    assert second["utterances"] == [10] and second["prepare_s"] == [None]


def test_bench_refuses_startup_sizes_it_cannot_build(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "cpcjax.bench", "--cases=startup"]
        + ["--startup_utterances=1000,12345"],
        cwd=ROOT,
        env=dict(os.environ, CPCJAX_DATA_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--startup_utterances: '1000,12345': give positive multiples of 10" in (
        proc.stderr
    )
