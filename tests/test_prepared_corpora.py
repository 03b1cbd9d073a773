"""`python -m cpcjax.prepare` on tiny trees in the real layouts, then a method
config end to end on what it prepared."""

import json
import os
import subprocess
import sys

from test_iemocap import write_release as write_iemocap
from test_main import ROOT, TINY_RUN, run_main


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


def test_iemocap_prepared_then_mini_cpc_runs_a_fold(tmp_path):
    release = write_iemocap(str(tmp_path / "src"))
    data_dir = tmp_path / "data"
    proc = prepare("iemocap", release, data_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "iemocap: prepared 9 utterances, skipped" in proc.stdout
    assert "warning: the full release has 10039 utterances" in proc.stdout
    again = prepare("iemocap", release, data_dir)
    assert "already prepared" in again.stdout

    config = ",".join(["configs/mini_cpc.py:iemocap", "folds=(2,)", *TINY_RUN])
    run = run_main(config, tmp_path / "run", str(data_dir))
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


def test_msp_podcast_prepared_then_sup_runs_on_the_official_partitions(tmp_path):
    from test_msp_podcast import V18_ROWS, _release

    release = _release(
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

    config = ",".join(["configs/sup.py:msp_podcast", *TINY_RUN])
    run = run_main(config, tmp_path / "run", str(data_dir))
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
