"""Inference and the prediction CLI on a tiny trained workdir: golden numbers,
resampling, chunking, folders, bad files and bad workdirs."""

import csv
import json
import logging
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
import soxr

from cpcjax import experiment, inference, predict, report
from cpcjax import workdir as workdir_lib
from cpcjax.data import sources

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = os.path.join("finetune", "fold1", "seed0")
RATE = 16000
# Four steps leave the model's predictions about 1e-3 apart from utterance to
# utterance, and float32 reproduces one to about 1e-7: between the two.
ATOL = 1e-5


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_config):
    """(config, workdir, the report experiment.run returned) of a tiny Sup run."""
    c = tiny_config("sup")
    c.data_dir = str(tmp_path_factory.mktemp("data"))
    workdir = str(tmp_path_factory.mktemp("workdir"))
    return c, workdir, experiment.run(c, workdir)


@pytest.fixture(scope="module")
def trained(finished):
    """(workdir, result.json, {test utterance name: float waveform})."""
    c, workdir, _ = finished
    result = workdir_lib.read_result(os.path.join(workdir, RUN))
    emo = sources.emotion_corpus(c)
    row = {name: i for i, name in enumerate(emo.names)}
    audio = {name: emo.audio(row[name]) for name in result["test"]["names"]}
    return workdir, result, audio


@pytest.fixture(scope="module")
def test_folder(trained, tmp_path_factory):
    """The run's test utterances as 16 kHz wav files, named after them."""
    _, _, audio = trained
    folder = tmp_path_factory.mktemp("test_utterances")
    for name, wav in audio.items():
        # FLOAT keeps the corpus' samples exactly.
        sf.write(folder / f"{name}.wav", wav, RATE, subtype="FLOAT")
    return str(folder)


def _preds(rows):
    return np.array([[r["activation"], r["valence"], r["dominance"]] for r in rows])


def test_the_returned_report_is_the_one_written(finished):
    _, workdir, returned = finished
    with open(os.path.join(workdir, workdir_lib.REPORT_MD)) as f:
        assert report.markdown(returned) == f.read()
    with open(os.path.join(workdir, workdir_lib.REPORT_JSON)) as f:
        assert json.load(f) == returned


def test_the_cli_module_reexports_the_library():
    for name in predict.__all__:
        assert getattr(predict, name) is getattr(
            inference if hasattr(inference, name) else workdir_lib, name
        )


def test_predictions_match_the_runs_test_predictions(trained, test_folder):
    workdir, result, _ = trained
    rows, errors = inference.predict_files(workdir, [test_folder])
    assert errors == []
    names = [os.path.basename(r["file"])[: -len(".wav")] for r in rows]
    assert names == sorted(result["test"]["names"])  # folders are read in sorted order
    order = [result["test"]["names"].index(n) for n in names]
    np.testing.assert_allclose(
        _preds(rows), np.asarray(result["test"]["preds"])[order], atol=ATOL
    )
    assert all(r["chunks"] == 1 for r in rows)
    info = inference.load(workdir).info
    assert info["run"] == RUN and "highest dev CCC avg" in info["chosen"]


def test_runs_without_model_selection_restore_their_latest_checkpoint(
    trained, test_folder, tmp_path
):
    workdir, _, _ = trained
    rows, _ = inference.predict_files(workdir, [test_folder])
    older = tmp_path / "workdir"
    shutil.copytree(workdir, older)
    # As a run without a dev split leaves it; its last step is the selected one here.
    os.remove(older / RUN / "best.json")
    shutil.rmtree(older / RUN / "best")
    predictor = inference.load(str(older), run=RUN)
    assert predictor.info["params"] == "latest checkpoint, step 4"
    assert predictor.info["chosen"] == "the run asked for"
    np.testing.assert_allclose(
        _preds(predictor.predict_files([test_folder])[0]), _preds(rows), atol=ATOL
    )


def test_44khz_stereo_predicts_like_the_16khz_mono_original(trained, tmp_path):
    workdir, result, audio = trained
    name = result["test"]["names"][0]
    mono = audio[name]
    wide = soxr.resample(mono, RATE, 44100, quality="HQ")
    sf.write(tmp_path / "mono.wav", mono, RATE, subtype="FLOAT")
    sf.write(
        tmp_path / "stereo.wav", np.stack([wide, wide], axis=1), 44100, subtype="FLOAT"
    )
    rows, errors = inference.predict_files(
        workdir, [str(tmp_path / "mono.wav"), str(tmp_path / "stereo.wav")]
    )
    assert errors == []
    assert abs(rows[1]["seconds"] - rows[0]["seconds"]) < 2 / RATE
    # The 16 -> 44.1 -> 16 kHz round trip keeps the waveform to about 50 dB
    # SNR (soxr HQ drops only the top of the band), so the prediction must stay
    # far closer to the original's than to another utterance's: within 5% of
    # the spread of the run's test predictions (it moves by about 0.1%).
    spread = np.asarray(result["test"]["preds"]).std(axis=0)
    np.testing.assert_array_less(
        np.abs(_preds(rows)[1] - _preds(rows)[0]), 0.05 * spread
    )


def test_long_files_are_chunked_and_averaged_by_length(trained, tmp_path):
    workdir, result, audio = trained
    wav = np.concatenate([audio[n] for n in result["test"]["names"][:4]])
    seconds = len(wav) / RATE
    assert seconds > 2.5  # several chunks of at most 1 s
    sf.write(tmp_path / "long.wav", wav, RATE, subtype="FLOAT")
    chunks = np.array_split(wav, int(np.ceil(seconds)))
    for i, chunk in enumerate(chunks):
        sf.write(tmp_path / f"chunk{i}.wav", chunk, RATE, subtype="FLOAT")

    rows, errors = inference.predict_files(
        workdir, [str(tmp_path / "long.wav")], max_seconds=1.0
    )
    parts, _ = inference.predict_files(
        workdir,
        [str(tmp_path / f"chunk{i}.wav") for i in range(len(chunks))],
        max_seconds=1.0,
    )
    assert errors == []
    assert rows[0]["chunks"] == int(np.ceil(seconds)) == len(parts)
    assert all(p["chunks"] == 1 and p["seconds"] <= 1.0 for p in parts)
    weights = np.array([p["seconds"] for p in parts])
    np.testing.assert_allclose(
        _preds(rows)[0], weights @ _preds(parts) / weights.sum(), atol=ATOL
    )
    whole, _ = inference.predict_files(workdir, [str(tmp_path / "long.wav")])
    assert whole[0]["chunks"] == 1  # under the default 16 s
    # Read whole, it is another input: the chunks' mean is not the same number.
    assert np.abs(_preds(whole)[0] - _preds(rows)[0]).max() > 3 * ATOL


def test_attention_weights_cover_the_frames_and_sum_to_one(trained, test_folder):
    workdir, result, audio = trained
    name = result["test"]["names"][0]
    path = os.path.join(test_folder, f"{name}.wav")
    step, weights = inference.attention_weights(workdir, path)
    assert step == 0.01
    assert abs(len(weights) - len(audio[name]) / 160) <= 1
    assert np.all(weights >= 0) and weights.sum() == pytest.approx(1.0, abs=1e-4)
    _, chunked = inference.attention_weights(workdir, path, max_seconds=1.0)
    assert abs(len(chunked) - len(weights)) <= 2 and chunked.sum() == pytest.approx(
        1.0, abs=1e-4
    )


MP3 = "MP3" in sf.available_formats()


@pytest.fixture
def mixed_folder(trained, tmp_path):
    """A folder of one utterance as mp3, and files no folder search reads."""
    _, result, audio = trained
    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    if MP3:
        sf.write(folder / "sub" / "a.mp3", audio[result["test"]["names"][0]], RATE)
    else:  # a libsndfile before 1.1 neither writes nor reads it
        (folder / "sub" / "a.mp3").write_bytes(b"ID3" + b"\0" * 100)
    (folder / "notes.txt").write_text("not audio")
    (folder / "b.m4a").write_bytes(b"\0" * 100)
    return folder


def test_folders_read_mp3_and_name_the_files_they_pass_over(
    trained, mixed_folder, caplog
):
    workdir, result, audio = trained
    with caplog.at_level(logging.WARNING, logger="cpcjax.inference"):
        rows, errors = inference.predict_files(workdir, [str(mixed_folder)])
    assert errors == []
    (note,) = [r.getMessage() for r in caplog.records]
    skipped = [str(mixed_folder / "b.m4a"), str(mixed_folder / "notes.txt")]
    if MP3:
        assert [r["file"] for r in rows] == [str(mixed_folder / "sub" / "a.mp3")]
        seconds = len(audio[result["test"]["names"][0]]) / RATE
        assert rows[0]["seconds"] == pytest.approx(seconds, abs=0.01)
    else:
        assert rows == []
        skipped.insert(1, str(mixed_folder / "sub" / "a.mp3"))
    assert note.startswith(f"skipped {len(skipped)} file(s) in the folders")
    assert ": " + ", ".join(skipped) + " (" in note


def _cli(args, cwd=ROOT):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one device
    return subprocess.run(
        [sys.executable, "-m", "cpcjax.predict", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_reports_bad_files_and_writes_the_good_ones(
    trained, test_folder, mixed_folder, tmp_path
):
    workdir, result, _ = trained
    good = os.path.join(test_folder, f"{result['test']['names'][0]}.wav")
    missing = str(tmp_path / "missing.wav")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.flac"
    corrupt.write_bytes(b"fLaC" + np.random.default_rng(0).bytes(3000))
    out = str(tmp_path / "out" / "preds")

    proc = _cli(
        [
            f"--workdir={workdir}",
            f"--out={out}",
            missing,
            str(empty),
            good,
            str(corrupt),
            str(mixed_folder),
        ]
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    errors = [l for l in proc.stderr.splitlines() if l.startswith("error: ")]
    assert [l.split(": ")[1] for l in errors] == [missing, str(empty), str(corrupt)]
    assert (
        "no such file" in errors[0]
        and "empty" in errors[1]
        and "unreadable" in errors[2]
    )
    assert f"run {RUN} of" in proc.stderr and "highest dev CCC avg" in proc.stderr
    assert os.path.basename(good) in proc.stdout
    notes = [l for l in proc.stderr.splitlines() if "skipped" in l]
    assert len(notes) == 1 and "in the folders that are not .wav" in notes[0]
    assert "notes.txt" in notes[0] and "b.m4a" in notes[0]
    predicted = [good] + ([str(mixed_folder / "sub" / "a.mp3")] if MP3 else [])

    with open(f"{out}.csv") as f:
        table = list(csv.DictReader(f))
    with open(f"{out}.json") as f:
        saved = json.load(f)
    assert list(table[0]) == [
        "file",
        "seconds",
        "activation",
        "valence",
        "dominance",
        "chunks",
    ]
    assert (
        [r["file"] for r in table]
        == predicted
        == [r["file"] for r in saved["predictions"]]
    )
    assert [e["file"] for e in saved["errors"]] == [missing, str(empty), str(corrupt)]
    assert saved["run"]["run"] == RUN
    assert saved["label_scale"]["range"] == [1, 5]
    assert saved["label_scale"]["mean"] == result["label_mean"]
    # One device in the CLI, eight here: the same numbers.
    rows, _ = inference.predict_files(workdir, [good])
    np.testing.assert_allclose(
        _preds(saved["predictions"][:1]), _preds(rows), atol=ATOL
    )
    np.testing.assert_allclose(
        float(table[0]["valence"]), rows[0]["valence"], atol=ATOL
    )


@pytest.mark.parametrize("contents", ["nothing", "config_only"])
def test_cli_refuses_a_workdir_without_a_finished_run(trained, tmp_path, contents):
    workdir, _, _ = trained
    bad = tmp_path / "workdir"
    bad.mkdir()
    if contents == "config_only":
        with open(os.path.join(workdir, "config.json")) as f:
            (bad / "config.json").write_text(f.read())
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(RATE, np.float32), RATE)
    proc = _cli([f"--workdir={bad}", f"--out={tmp_path / 'p'}", str(wav)])
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert ("no config.json" if contents == "nothing" else "no finished") in lines[0]
    assert not (tmp_path / "p.csv").exists()


def test_decoding_threads_keep_the_order_the_errors_and_the_numbers(
    trained, test_folder, tmp_path, monkeypatch
):
    workdir, _, _ = trained
    good = sorted(os.path.join(test_folder, f) for f in os.listdir(test_folder))
    corrupt = tmp_path / "corrupt.flac"
    corrupt.write_bytes(b"fLaC" + np.random.default_rng(0).bytes(3000))
    missing = str(tmp_path / "missing.wav")
    inputs = [good[0], str(corrupt), *good[1:3], missing, *good[3:]]
    predictor = inference.load(workdir)
    # Several groups, and decoding a few files ahead of the one grouped.
    monkeypatch.setattr(inference, "GROUP_CHUNKS", 3)
    monkeypatch.setattr(inference, "DECODE_AHEAD", 2)
    serial = predictor.predict_files(inputs, workers=0)
    # Earlier files take longer to decode, so the threads finish them last.
    load = inference.audio.load
    delay = {path: 0.01 * (len(inputs) - i) for i, path in enumerate(inputs)}

    def slow_load(path):
        time.sleep(delay[path])
        return load(path)

    monkeypatch.setattr(inference.audio, "load", slow_load)
    rows, errors = predictor.predict_files(inputs, workers=4)
    assert [r["file"] for r in rows] == good
    assert [p for p, _ in errors] == [str(corrupt), missing]
    assert "unreadable" in errors[0][1] and errors[1][1] == "no such file"
    # Decoded on threads or in turn, the same batches: the same numbers.
    assert (rows, errors) == serial
    np.testing.assert_array_equal(_preds(rows), _preds(serial[0]))
