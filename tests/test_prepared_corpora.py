"""`python -m cpcjax.prepare` on tiny trees in the real layouts, then a method
config end to end on what it prepared."""

import json
import os
import subprocess
import sys

from conftest import ROOT, TINY_RUN, write_wav
from releases import write_iemocap_release


def prepare(corpus, manual_dir, data_dir, *flags):
    env = dict(os.environ, CPCJAX_DATA_DIR=str(data_dir))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "cpcjax.prepare",
            corpus,
            f"--manual_dir={manual_dir}",
            f"--data_dir={data_dir}",
            *flags,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_iemocap_prepared_then_mini_cpc_runs_a_fold(tmp_path, run_main):
    release = write_iemocap_release(str(tmp_path / "src"))
    data_dir = tmp_path / "data"
    proc = prepare("iemocap", release, data_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "iemocap: prepared 9 utterances, skipped" in proc.stdout
    assert "warning: the full release has 10039 utterances" in proc.stdout
    again = prepare("iemocap", release, data_dir)
    assert "already prepared" in again.stdout

    run = run_main(
        "configs/mini_cpc.py:iemocap",
        tmp_path / "run",
        data_dir,
        fields={**TINY_RUN, "folds": (2,)},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    (row,) = report["rows"]
    assert (
        report["corpus"] == "iemocap" and report["protocol"] == "leave-one-session-out"
    )
    assert row["method"] == "miniCPC" and row["folds"] == [2]
    assert row["num_test_utterances"] == 3  # the kept utterances of session 2
    result = json.loads(
        (tmp_path / "run" / "finetune" / "fold2" / "seed0" / "result.json").read_text()
    )
    assert all(name.startswith("Ses02") for name in result["test"]["names"])
    assert not any(name.startswith("Ses02") for name in result["dev"]["names"])


def test_a_wrong_manual_dir_shows_the_expected_layout(tmp_path):
    (tmp_path / "empty_release").mkdir()
    (tmp_path / "empty_release" / "README").write_text("not IEMOCAP")
    proc = prepare("iemocap", tmp_path / "empty_release", tmp_path / "data")
    assert proc.returncode == 2
    assert "error: " in proc.stderr and "Session" in proc.stderr
    assert "sentences/wav" in proc.stderr


def test_prepare_prints_only_its_own_lines(tmp_path):
    talks, data = tmp_path / "talks", tmp_path / "data"
    for n, speaker in enumerate(("talkA", "talkA", "talkB")):
        write_wav(talks / speaker / f"part{n}.wav", seed=n)
    (talks / "talkB" / "cut.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVE")
    report = data / "prepare_report_audio_folder_talks.tsv"
    first = prepare("audio_folder", talks, data, "--name=talks")
    again = prepare("audio_folder", talks, data, "--name=talks")
    for proc in (first, again):
        assert proc.returncode == 0, proc.stderr[-3000:]
        lines = (proc.stdout + proc.stderr).splitlines()
        # No TFDS banner, absl warning, TF start-up notice or tqdm bar.
        assert all(line.startswith("audio_folder: ") for line in lines), lines
        assert "\r" not in proc.stdout + proc.stderr
    assert (
        f"audio_folder: prepared 3 utterances, skipped 1 audio (reasons in {report})"
        in first.stdout.splitlines()
    )
    assert "already prepared" in again.stdout


def test_a_folder_without_usable_audio_stops_in_one_line(tmp_path):
    folder = tmp_path / "recordings"
    (folder / "spk").mkdir(parents=True)
    for n in range(3):
        (folder / "spk" / f"take{n}.wav").write_bytes(os.urandom(3000))
    proc = prepare("audio_folder", folder, tmp_path / "data", "--name=recordings")
    assert proc.returncode == 2
    report = tmp_path / "data" / "prepare_report_audio_folder_recordings.tsv"
    assert proc.stderr.splitlines() == [
        f"error: audio_folder/recordings: no usable audio in {folder} (skipped 3 "
        f"audio; reasons in {report})"
    ]
    assert len(report.read_text().splitlines()) == 1 + 3  # header, a line a file


def test_msp_podcast_prepared_then_sup_runs_on_the_official_partitions(
    tmp_path, run_main
):
    from releases import V18_ROWS, write_msp_release

    release = write_msp_release(
        tmp_path / "MSP-PODCAST-Publish-1.8",
        V18_ROWS,
        "Audios",
        "Labels",
        "labels_concensus.csv",
        skip_wavs={"MSP-PODCAST_0001_0020"},
    )
    data_dir = tmp_path / "data"
    proc = prepare("msp_podcast", release, data_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "msp_podcast: prepared" in proc.stdout

    run = run_main(
        "configs/sup.py:msp_podcast", tmp_path / "run", data_dir, fields=TINY_RUN
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    (row,) = report["rows"]
    assert report["protocol"].startswith("official partitions")
    assert row["folds"] == ["test1"]
    assert row["num_test_utterances"] == 2  # the Test1 rows
    result = json.loads(
        (
            tmp_path / "run" / "finetune" / "foldtest1" / "seed0" / "result.json"
        ).read_text()
    )
    assert sorted(result["test"]["names"]) == [
        "MSP-PODCAST_0001_0011",
        "MSP-PODCAST_0001_0013",
    ]
    assert len(result["dev"]["names"]) == 2  # Validation, read as Development
