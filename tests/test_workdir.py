"""The workdir layout: claiming a workdir, the config hash, finding runs and
stages, and merging the reports of several workdirs."""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from cpcjax import config as config_lib
from cpcjax import report
from cpcjax import workdir as workdir_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_workdir_refuses_another_experiment_but_not_more_steps(tmp_path):
    c = config_lib.load("pre_cpc:synthetic")
    workdir_lib.claim(c, str(tmp_path))
    c.pretrain.num_steps += 100
    c.seeds = 5
    workdir_lib.claim(c, str(tmp_path))  # a longer run continues
    with open(tmp_path / workdir_lib.CONFIG_FILE) as f:
        assert json.load(f)["seeds"] == 5
    c.model.channels = 64
    with pytest.raises(
        config_lib.ConfigError, match=r"another config \(model\.channels differ"
    ):
        workdir_lib.claim(c, str(tmp_path))
    # A process that only checks leaves the file as it was.
    c.model.channels = 256
    c.seeds = 7
    workdir_lib.claim(c, str(tmp_path / "other"), write=False)
    assert not (tmp_path / "other" / workdir_lib.CONFIG_FILE).exists()


def test_the_config_hash_ignores_resizable_fields_only():
    c = config_lib.load("pre_cpc:synthetic")
    before = workdir_lib.config_hash(c)
    assert len(before) == 12
    c.seeds = c.seeds + 3
    c.finetune.num_steps += 1
    c.analysis.plots = not c.analysis.plots
    assert workdir_lib.config_hash(c) == before
    c.finetune.learning_rate *= 2
    assert workdir_lib.config_hash(c) != before


def test_the_path_helpers_spell_the_documented_layout(tmp_path):
    m = str(tmp_path)
    assert workdir_lib.pretrain_dir(m) == os.path.join(m, "pretrain")
    assert workdir_lib.pretrain_dir(m, 2) == os.path.join(m, "pretrain", "fold2")
    run = workdir_lib.run_dir(m, 1, 0)
    assert run == os.path.join(m, "finetune", "fold1", "seed0")
    assert workdir_lib.checkpoint_dir(run) == os.path.join(run, "checkpoints")
    assert workdir_lib.best_dir(run) == os.path.join(run, "best")
    assert workdir_lib.method_dir(m, "sup") == os.path.join(m, "sup")
    assert workdir_lib.method_dir(m) == m
    assert workdir_lib.finished_steps(run) == 0  # nothing trained yet
    assert workdir_lib.read_result(run) is None
    os.makedirs(run)
    workdir_lib.write_result(run, {"fold": 1})
    assert workdir_lib.read_result(run) == {"fold": 1}


def test_importing_it_starts_neither_jax_nor_tensorflow():
    code = (
        "import sys, cpcjax.workdir; "
        "print(sorted(m for m in ('jax', 'tensorflow', 'clu', 'orbax') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True
    )
    assert out.stdout.strip() == "[]", out.stderr[-2000:]


@pytest.mark.parametrize("demo_format", ["list", "method_order"])
def test_demo_workdirs_default_to_the_last_method_and_runs_to_the_best_dev(
    tmp_path, demo_format
):
    if demo_format == "list":
        demo = {"methods": ["sup", "pre_cpc"]}
    else:  # per-method fields under `methods`, their order in `method_order`
        demo = {
            "methods": {"pre_cpc": {}, "sup": {}},
            "method_order": ["sup", "pre_cpc"],
        }
    (tmp_path / "config.json").write_text(json.dumps(demo))
    for method in ("sup", "pre_cpc"):
        (tmp_path / method).mkdir()
        (tmp_path / method / "config.json").write_text(json.dumps({"method": method}))
    for run, avg in (
        ("fold1/seed0", 0.2),
        ("fold2/seed0", 0.5),
        ("fold2/seed1", float("nan")),
        ("fold3/seed0", 0.5),
    ):
        d = tmp_path / "pre_cpc" / "finetune" / run
        d.mkdir(parents=True)
        (d / "result.json").write_text(json.dumps({"dev": {"ccc": {"avg": avg}}}))
    unfinished = tmp_path / "pre_cpc" / "finetune" / "fold4" / "seed0"
    unfinished.mkdir(parents=True)

    method_dir, config = workdir_lib.method_workdir(str(tmp_path))
    assert method_dir == str(tmp_path / "pre_cpc") and config["method"] == "pre_cpc"
    assert workdir_lib.method_workdir(str(tmp_path), "sup")[0] == str(tmp_path / "sup")
    with pytest.raises(workdir_lib.WorkdirError, match="not 'joint_cpc'"):
        workdir_lib.method_workdir(str(tmp_path), "joint_cpc")
    with pytest.raises(workdir_lib.WorkdirError, match="no config.json"):
        workdir_lib.method_workdir(str(tmp_path / "pre_cpc" / "finetune"))
    run, _, why = workdir_lib.choose_run(method_dir)
    assert run == os.path.join("finetune", "fold2", "seed0")  # the first of the best
    assert "0.5000" in why and "of 4 finished runs" in why
    with pytest.raises(workdir_lib.WorkdirError, match="not a finished run"):
        workdir_lib.choose_run(method_dir, "finetune/fold4/seed0")
    with pytest.raises(workdir_lib.WorkdirError, match="no finished"):
        workdir_lib.choose_run(str(tmp_path / "sup"))


def test_stages_are_found_with_their_method_and_result(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"methods": ["sup", "mini_cpc"]}))
    (tmp_path / "mini_cpc").mkdir()
    (tmp_path / "mini_cpc" / "config.json").write_text('{"method": "mini_cpc"}')
    for stage in (
        "mini_cpc/pretrain/fold1",
        "mini_cpc/finetune/fold1/seed0",
        "sup/finetune/fold1/seed0",  # a method folder without its config
        "mini_cpc/plots",  # no stage, though it held a metrics file
    ):
        os.makedirs(tmp_path / stage)
        (tmp_path / stage / "metrics.jsonl").write_text('{"step": 1}\n')
    os.makedirs(tmp_path / "mini_cpc" / "finetune" / "fold2" / "seed0")  # no metrics
    (tmp_path / "mini_cpc/finetune/fold1/seed0/result.json").write_text('{"fold": 1}')

    stages = workdir_lib.find_stages(str(tmp_path))
    assert [(s["kind"], s["method"], s["name"], s["result"]) for s in stages] == [
        ("finetune", "mini_cpc", "fold1/seed0", {"fold": 1}),
        ("pretrain", "mini_cpc", "fold1", None),
        ("finetune", "sup", "fold1/seed0", None),
    ]
    assert stages[0]["metrics"] == str(
        tmp_path / "mini_cpc" / "finetune" / "fold1" / "seed0" / "metrics.jsonl"
    )


def _workdir_with_report(path, method, seed):
    rng = np.random.default_rng(seed)
    targets = rng.uniform(1, 5, (20, 3))
    runs = [
        {
            "fold": 1,
            "seed": 0,
            "preds": targets + rng.normal(0, 0.5, (20, 3)),
            "targets": targets,
        }
    ]
    os.makedirs(path)
    with open(os.path.join(path, workdir_lib.CONFIG_FILE), "w") as f:
        json.dump({"method": method}, f)
    rows = [report.method_row(method, runs, config_hash=f"hash{seed}")]
    return report.write(str(path), "iemocap", "leave one session out", rows)


def test_report_reruns_over_a_glob_of_its_own_output(tmp_path, capsys):
    runs = tmp_path / "runs" / "iemocap"
    _workdir_with_report(runs / "sup", "sup", 0)
    _workdir_with_report(runs / "pre_cpc", "pre_cpc", 1)

    def merge_glob():
        # What `python -m cpcjax.report runs/iemocap/* --out=runs/iemocap` gets.
        argv = sorted(glob.glob(str(runs / "*"))) + [f"--out={runs}"]
        proc = subprocess.run(
            [sys.executable, "-m", "cpcjax.report", *argv],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == (runs / "report.md").read_text().strip()
        return (runs / "report.md").read_text(), proc.stderr

    first, err = merge_glob()
    assert err == ""
    assert "| preCPC (paper) |" in first and "| Sup |" in first
    second, err = merge_glob()  # the glob now holds report.json and report.md
    assert second == first
    assert err.splitlines() == [
        f"report: skipped {runs / name}: a file, not a workdir"
        for name in ("report.json", "report.md")
    ]
    merged = json.loads((runs / "report.json").read_text())
    assert merged["merged_from"] == [str(runs / "pre_cpc"), str(runs / "sup")]
    assert [r["method"] for r in merged["rows"]] == ["preCPC", "Sup"]

    # A folder holding a merge is passed over too: its rows are in the inputs.
    other = tmp_path / "other"
    assert report.run([str(runs), str(runs / "sup")], out=str(other)) == 0
    err = capsys.readouterr().err
    assert (
        err == f"report: skipped {runs}: its report.json is a merge of other workdirs\n"
    )
    assert [
        r["method"] for r in json.loads((other / "report.json").read_text())["rows"]
    ] == ["Sup"]
    # A run's own workdir is never overwritten with a merge.
    assert report.run([str(runs / "pre_cpc")], out=str(runs / "sup")) == 2
    assert "is the workdir of a run" in capsys.readouterr().err
    assert report.run([str(runs / "report.md")]) == 2  # nothing left to merge


def test_report_std_is_over_seeds_with_ddof_1_and_says_what_it_covers():
    rng = np.random.default_rng(0)
    targets = rng.uniform(1, 5, (30, 3))
    runs = [
        {
            "fold": 1,
            "seed": s,
            "preds": targets + rng.normal(0, n, (30, 3)),
            "targets": targets,
        }
        for s, n in enumerate((0.3, 0.8, 1.5))
    ]
    row = report.method_row("pre_cpc", runs, pretrained_once=True)
    per_seed = [p["avg"] for p in row["per_seed"]]
    assert row["ccc"]["avg"]["std"] == pytest.approx(np.std(per_seed, ddof=1))
    assert row["ccc"]["avg"]["std"] > np.std(per_seed)
    text = report.markdown(
        {"corpus": "iemocap", "protocol": "leave one session out", "rows": [row]}
    )
    assert "sample standard deviation (ddof = 1)" in text
    assert "preCPC: one CPC pretraining served every seed, so its ± covers " in text
    sup = report.method_row("sup", runs[:1])
    assert sup["ccc"]["avg"]["std"] == 0.0 and not sup["pretrained_once"]
