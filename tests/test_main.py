"""The entry point, end to end on a tiny synthetic corpus, on 1 and 8 devices."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, logged_losses

from cpcjax import config as config_lib


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("data"))


def test_one_and_eight_devices_give_the_same_losses(tmp_path, data_dir, run_main):
    runs = {}
    for devices in (1, 8):
        workdir = tmp_path / f"dev{devices}"
        proc = run_main("configs/pre_cpc.py:synthetic", workdir, data_dir, devices)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[devices] = workdir
    for stage in ("pretrain", os.path.join("finetune", "fold1", "seed0")):
        one = logged_losses(runs[1] / stage / "metrics.jsonl")
        eight = logged_losses(runs[8] / stage / "metrics.jsonl")
        assert len(one) == 3
        np.testing.assert_allclose(eight, one, rtol=1e-5)

    report = json.loads((runs[8] / "report.json").read_text())
    (row,) = report["rows"]
    assert row["method"] == "preCPC" and row["folds"] == [1] and row["seeds"] == 1
    assert set(row["ccc"]) == {"avg", "act", "val", "dom"}
    assert row["num_test_utterances"] == 12  # 2 speakers x 6 utterances of session 1
    assert "| preCPC |" in (runs[8] / "report.md").read_text()

    # A finished run is not rerun: nothing is trained or rewritten.
    metrics = runs[8] / "pretrain" / "metrics.jsonl"
    before = metrics.stat().st_mtime_ns
    again = run_main("configs/pre_cpc.py:synthetic", runs[8], data_dir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "finished earlier" in again.stderr
    assert metrics.stat().st_mtime_ns == before
    assert json.loads((runs[8] / "report.json").read_text())["rows"] == report["rows"]


def test_demo_writes_the_four_row_table(tmp_path, data_dir, run_main):
    proc = run_main("configs/demo.py", tmp_path, data_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert [r["method"] for r in report["rows"]] == [
        "Sup",
        "jointCPC",
        "miniCPC",
        "preCPC",
    ]
    table = (tmp_path / "report.md").read_text()
    for name in ("Sup", "jointCPC", "miniCPC", "preCPC"):
        assert f"| {name} |" in table
    assert (tmp_path / "mini_cpc" / "pretrain" / "fold1" / "checkpoints").is_dir()
    assert not (tmp_path / "sup" / "pretrain").exists()
    joint = tmp_path / "joint_cpc" / "finetune" / "fold1" / "seed0" / "metrics.jsonl"
    assert "info_nce" in joint.read_text().splitlines()[0]
    rows = {r["key"]: r for r in report["rows"]}
    assert rows["sup"]["probe"] is None and rows["joint_cpc"]["probe"] is None
    for key in ("mini_cpc", "pre_cpc"):
        assert set(rows[key]["probe"]) == {"avg", "act", "val", "dom"}
        assert (tmp_path / key / "plots" / "tsne.png").stat().st_size > 0
    for key in rows:
        assert len(rows[key]["config_hash"]) == 12
        assert set(rows[key]["fold_mean"]) == {"avg", "act", "val", "dom"}
        for plot in ("training_curves.png", "predicted_vs_true.png"):
            assert (tmp_path / key / "plots" / plot).stat().st_size > 0
    assert "Linear probe of the frozen CPC features" in table

    # Merging workdirs gives one table; the paper's numbers join real corpora.
    from cpcjax import report as report_lib

    merged_dir = tmp_path / "merged"
    assert report_lib.run([str(tmp_path), str(tmp_path)], out=str(merged_dir)) == 0
    merged = json.loads((merged_dir / "report.json").read_text())
    assert len(merged["rows"]) == 8
    as_iemocap = report_lib.markdown({**report, "corpus": "iemocap"})
    assert "| preCPC (paper) | 0.731 ± 0.003 | 0.752 ± 0.014 |" in as_iemocap
    assert report_lib.run([str(tmp_path / "nowhere")]) == 2


def test_an_unprepared_corpus_fails_in_one_clear_line(tmp_path, data_dir, run_main):
    proc = run_main("configs/pre_cpc.py", tmp_path, data_dir, fields={})
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert "'iemocap' is not prepared" in last
    assert "python -m cpcjax.prepare iemocap --manual_dir=" in last
    assert last.endswith(
        "or try the embedded demo corpus: python -m cpcjax.main "
        "--config=configs/pre_cpc.py:synthetic"
    )


def test_the_command_as_users_write_it_defaults_the_workdir(tmp_path, run_main):
    # The README's command, verbatim, from a directory of the user's: no
    # --workdir, the IEMOCAP default, nothing prepared.
    proc = run_main("configs/pre_cpc.py", None, tmp_path / "data", fields={})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert any(line.endswith("workdir runs/pre_cpc_iemocap") for line in lines)
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--config=configs/sup.py:synthetic", "--config.pretrain.num_step=3"],
            "error: --config.pretrain.num_step: no such field; did you mean "
            "'num_steps'?",
        ),
        (
            ["--config=configs/sup.py:iemocapp"],
            "error: config argument: unknown corpus",
        ),
        (["--config=configs/nope.py"], "error: --config: no file 'configs/nope.py'"),
        (["--config=sup", "--workdr=x"], "error: Unknown command line flag 'workdr'"),
        (
            ["--config=demo", "--config.method_order=('sup','pre_cp')"],
            "error: config.method_order: no method 'pre_cp' in config.methods; did "
            "you mean 'pre_cpc'?",
        ),
    ],
)
def test_config_mistakes_are_one_line_and_exit_2(tmp_path, args, message):
    proc = subprocess.run(
        [sys.executable, "-m", "cpcjax.main", *args, f"--workdir={tmp_path}"],
        cwd=ROOT,
        env=dict(os.environ, CPCJAX_DATA_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if "cpu devices" not in line]
    assert len(lines) <= 3 and lines[-1].startswith(message), proc.stderr


@pytest.mark.parametrize("module", ["main", "predict", "prepare", "report", "bench"])
def test_help_exits_0_and_lists_the_flags(module):
    proc = subprocess.run(
        [sys.executable, "-m", f"cpcjax.{module}", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"cpcjax.{module}" in proc.stdout and "  --" in proc.stdout
    if module == "main":
        assert "pre_cpc, demo" in proc.stdout  # the shipped configs
        assert "finetune.init_from" in proc.stdout  # and their fields


def test_the_console_script_dispatches_and_configs_resolve_by_name(tmp_path):
    from cpcjax import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.console(["cpcjax", "trian"])
    assert exit_info.value.code == 2
    path = config_lib.resolve("pre_cpc:synthetic")
    assert path.endswith(os.path.join("cpcjax", "configs", "pre_cpc.py:synthetic"))
    assert config_lib.load(path).corpus == "synthetic"
    # An installed cpcjax has no configs/ folder beside the user's work.
    assert config_lib.resolve("configs/demo.py").startswith("configs/demo.py")
    os.chdir(tmp_path)
    try:
        assert config_lib.load("configs/demo.py").method_order[-1] == "pre_cpc"
    finally:
        os.chdir(ROOT)


@pytest.mark.parametrize("method", config_lib.METHOD_NAMES)
@pytest.mark.parametrize("corpus", config_lib.CORPORA)
def test_method_configs_state_their_stages(method, corpus):
    c = config_lib.load(f"configs/{method}.py:{corpus}")
    config_lib.validate(c)
    assert c.method == method and c.corpus == corpus
    for field in (
        c.seeds,
        c.pretrain.num_steps,
        c.pretrain.batch_size,
        c.pretrain.checkpoint_every,
        c.finetune.num_steps,
        c.finetune.batch_size,
    ):
        assert isinstance(field, int)
    assert (c.finetune.cpc_weight > 0) == (method == "joint_cpc")
    pretrains = method in ("mini_cpc", "pre_cpc")
    assert (c.pretrain.corpus != "none") == pretrains
    assert c.finetune.init_from == ("pretrain" if pretrains else "")
    assert config_lib.load(f"configs/{method}.py").corpus == "iemocap"


def test_the_demo_is_the_four_method_configs():
    demo = config_lib.load("demo")
    for c in config_lib.expand(demo):
        alone = config_lib.load(f"{c.method}:synthetic")
        assert c.to_dict() == alone.to_dict()


def test_bad_values_fail_naming_the_field(tiny_config):
    c = config_lib.load("sup:synthetic")
    c.model.norm = "batch"
    with pytest.raises(config_lib.ConfigError, match=r"config\.model\.norm"):
        config_lib.validate(c)
    with pytest.raises(config_lib.ConfigError, match="no field 'pretrain.num_step'"):
        config_lib.set_fields(c, {"pretrain.num_step": 3})
    with pytest.raises(config_lib.ConfigError, match="unknown corpus 'iemocapp'"):
        config_lib.load("sup:iemocapp")
    with pytest.raises(config_lib.ConfigError, match=r"config\.finetune\.batch_size"):
        tiny_config("sup", finetune__batch_size=10)
    with pytest.raises(config_lib.ConfigError, match=r"config\.finetune\.init_from"):
        tiny_config("sup", finetune__init_from="pretrain")
    with pytest.raises(config_lib.ConfigError, match=r"config\.pretrain\.corpus"):
        tiny_config("sup", pretrain__corpus="librispeech")
    with pytest.raises(
        config_lib.ConfigError, match=r"finetune\.encoder_lr_scale.*-0\.1"
    ):
        tiny_config("pre_cpc", finetune__encoder_lr_scale=-0.1)
    with pytest.raises(config_lib.ConfigError, match=r"finetune\.freeze_steps"):
        tiny_config("pre_cpc", finetune__freeze_steps=-1)
    with pytest.raises(config_lib.ConfigError, match=r"config\.concurrent_runs.*-1"):
        tiny_config("sup", concurrent_runs=-1)


def test_the_demo_corpus_hint_names_a_shipped_config_by_name():
    from cpcjax import configs

    shipped = os.path.join(configs.DIRECTORY, "pre_cpc.py")
    assert configs.on_demo_corpus(shipped) == "pre_cpc:synthetic"
    assert configs.on_demo_corpus("configs/sup.py") == "configs/sup.py:synthetic"
    assert (
        configs.on_demo_corpus("/home/me/my_cfg.py") == "/home/me/my_cfg.py:synthetic"
    )


_FAULTS = """
import ctypes, resource, sys
from cpcjax import cli
if sys.argv[1] == "tuned":
    print(sorted(cli.host_allocator()))
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = (ctypes.c_void_p,)
size = 36 << 20  # as XLA's buffers: above glibc's largest mmap threshold

def block():
    p = libc.malloc(size)
    ctypes.memset(p, 1, size)
    libc.free(p)

block()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    block()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_host_allocator_reuses_freed_buffers_instead_of_faulting_them_in():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = {}
    for mode in ("plain", "tuned"):
        proc = subprocess.run(
            [sys.executable, "-c", _FAULTS, mode],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        out[mode] = proc.stdout.split()
    assert out["tuned"][0] == "['M_MMAP_THRESHOLD',"
    # 10 blocks of 36 MiB: faulted in afresh every time, or the same pages
    # reused (9216 faults a block, fewer where the kernel gives huge pages).
    assert int(out["tuned"][-1]) * 10 < int(out["plain"][-1])


def test_host_allocator_leaves_a_tuned_or_refused_allocator_alone():
    from cpcjax import cli

    assert cli.host_allocator({"CPCJAX_HOST_MALLOC": "0"}) == {}
    assert cli.host_allocator({"MALLOC_ARENA_MAX": "2"}) == {}
    assert cli.host_allocator({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1"}) == {}
