"""The training loop: resume, NaN guard, checkpoint handoff, frozen encoder,
and what a long run prints."""

import io
import json
import logging
import sys
import threading
import time

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY_RUN, TINY_SYNTHETIC

from cpcjax import config as config_lib
from cpcjax import evaluate, experiment
from cpcjax.data import pipeline, protocols, sources
from cpcjax.train import checkpoint, loop, sharding, steps
from cpcjax.train import state as state_lib


def tiny_config(method="pre_cpc", **overrides):
    c = config_lib.load(f"{method}:synthetic")
    config_lib.set_fields(c, {**TINY_RUN, "pretrain.num_steps": 6, **overrides})
    config_lib.validate(c)
    return c


def _pretrain(c, utts, workdir, step_fn=None):
    mesh = sharding.make_mesh()
    prog = steps.Programs.build(c, mesh)
    batches = pipeline.CropBatches(
        utts,
        c.pretrain.window,
        c.pretrain.batch_size,
        c.seed,
        sharding.process_rows(c.pretrain.batch_size),
    )
    state = state_lib.create_state(
        prog.cpc, prog.cpc_tx, jax.random.key(0), batches.batch(0), mesh
    )
    return loop.train(
        name="test",
        workdir=workdir,
        state=state,
        step_fn=step_fn or prog.cpc_step,
        batches=batches.batch,
        mesh=mesh,
        num_steps=c.pretrain.num_steps,
        checkpoint_every=c.pretrain.checkpoint_every,
        log_every=c.pretrain.log_every,
        rng=jax.random.key(1),
    ), prog


def _lines(path):
    with open(path) as f:
        return [json.loads(l) for l in f]


def test_killed_run_resumes_to_the_same_parameters(tmp_path, unlabeled_utts):
    c = tiny_config()
    whole, prog = _pretrain(c, unlabeled_utts, str(tmp_path / "whole"))

    calls = {"n": 0}

    def dies_at_step_5(state, batch, rng):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt("killed")
        return prog.cpc_step(state, batch, rng)

    with pytest.raises(KeyboardInterrupt):
        _pretrain(c, unlabeled_utts, str(tmp_path / "resumed"), dies_at_step_5)
    ckpts = checkpoint.Checkpoints(str(tmp_path / "resumed" / "checkpoints"))
    assert ckpts.latest_step() == 4
    ckpts.close()
    resumed, _ = _pretrain(c, unlabeled_utts, str(tmp_path / "resumed"))

    for a, b in zip(jax.tree.leaves(whole.params), jax.tree.leaves(resumed.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(resumed.step) == 6
    assert _lines(tmp_path / "whole" / "metrics.jsonl") == _lines(
        tmp_path / "resumed" / "metrics.jsonl"
    )


def test_nan_stops_with_a_message_and_keeps_the_last_good_checkpoint(
    tmp_path, unlabeled_utts
):
    c = tiny_config()
    mesh = sharding.make_mesh()
    prog = steps.Programs.build(c, mesh)

    def nan_from_step_3(state, batch, rng):
        state, metrics = prog.cpc_step(state, batch, rng)
        bad = jax.numpy.where(state.step >= 3, jax.numpy.nan, metrics["loss"])
        return state, {**metrics, "loss": bad}

    with pytest.raises(
        loop.TrainingDiverged,
        match=r"loss became nan at step 3.*last good checkpoint \(step 2\)",
    ):
        _pretrain(c, unlabeled_utts, str(tmp_path), nan_from_step_3)
    ckpts = checkpoint.Checkpoints(str(tmp_path / "checkpoints"))
    assert ckpts.latest_step() == 2
    ckpts.close()
    assert [r["step"] for r in _lines(tmp_path / "metrics.jsonl")] == [1, 2]


@pytest.mark.parametrize("freeze", [False, True])
def test_finetuning_starts_from_the_cpc_encoder(
    tmp_path, unlabeled_utts, labeled_utts, freeze
):
    c = tiny_config(**{"finetune.freeze_cpc": freeze})
    pretrained, _ = _pretrain(c, unlabeled_utts, str(tmp_path / "pretrain"))
    mesh = sharding.make_mesh()
    prog = steps.Programs.build(c, mesh)
    split = protocols.leave_one_session_out(labeled_utts.sessions, 1, 0.1, 0)

    seen = {}
    original = checkpoint.restore_params

    def spy(*args, **kwargs):
        params = original(*args, **kwargs)
        seen["params"] = jax.device_get(params)  # the step donates the live arrays
        return params

    calls = []
    predict_split = evaluate.predict_split

    def counted(*args, **kwargs):
        calls.append(len(args[2]))
        return predict_split(*args, **kwargs)

    checkpoint.restore_params, restore = spy, checkpoint.restore_params
    evaluate.predict_split = counted
    try:
        result = experiment.finetune_run(
            c,
            prog,
            mesh,
            labeled_utts,
            split,
            1,
            0,
            str(tmp_path / "ft"),
            str(tmp_path / "pretrain" / "checkpoints"),
            "test",
        )
    finally:
        checkpoint.restore_params = restore
        evaluate.predict_split = predict_split
    # Dev once (at the last step, which is kept), test once: the kept params'
    # dev predictions are reused, and equal to predicting again.
    assert calls == [len(split["dev"]), len(split["test"])]
    assert result["selected_step"] == c.finetune.num_steps
    best = checkpoint.restore_best_params(str(tmp_path / "ft"), seen["params"])
    train = labeled_utts.subset(split["train"])
    again = evaluate.predict_split(
        prog.predict,
        best,
        labeled_utts.subset(split["dev"]),
        pipeline.bucket_lengths(c.finetune.buckets),
        c.finetune.eval_batch_size,
        mesh,
        train.labels.mean(axis=0),
        np.maximum(train.labels.std(axis=0), 1e-3),
    )
    np.testing.assert_array_equal(again, np.asarray(result["dev"]["preds"], np.float32))
    for key in ("encoder", "context"):
        for a, b in zip(
            jax.tree.leaves(pretrained.params[key]),
            jax.tree.leaves(seen["params"][key]),
        ):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert "predict_heads" not in seen["params"]

    ft = checkpoint.Checkpoints(str(tmp_path / "ft" / "checkpoints"))
    final = ft.manager.restore(ft.latest_step())["state"]["params"]
    ft.close()
    moved = [
        not np.allclose(a, b)
        for a, b in zip(
            jax.tree.leaves(pretrained.params["encoder"]),
            jax.tree.leaves(final["encoder"]),
        )
    ]
    assert any(moved) != freeze
    assert result["test"]["ccc"].keys() == {"act", "val", "dom", "avg"}
    assert len(result["test"]["preds"]) == len(split["test"])


def test_the_encoder_is_held_still_then_trained_at_its_own_rate():
    stage = tiny_config(
        **{
            "finetune.learning_rate": 0.1,
            "finetune.warmup_steps": 2,
            "finetune.freeze_steps": 3,
            "finetune.encoder_lr_scale": 0.5,
        }
    ).finetune
    tx = state_lib.optimizer(stage, ("encoder", "context"))
    params = {k: jnp.zeros(2) for k in ("encoder", "context", "recognizer")}
    grads = {k: jnp.ones(2) for k in params}
    opt_state = tx.init(params)
    moves = []
    for _ in range(8):
        updates, opt_state = tx.update(grads, opt_state, params)
        moves.append({k: -float(v[0]) for k, v in updates.items()})
    # Adam's step on a constant gradient is the learning rate itself.
    head = [m["recognizer"] for m in moves]
    np.testing.assert_allclose(head, [0, 0.05, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1], atol=1e-6)
    for key in ("encoder", "context"):
        cpc = [m[key] for m in moves]
        np.testing.assert_allclose(
            cpc, [0, 0, 0, 0, 0.025, 0.05, 0.05, 0.05], atol=1e-6
        )
    # A frozen encoder keeps the state's part names of earlier checkpoints.
    frozen = state_lib.optimizer(
        tiny_config(**{"finetune.freeze_cpc": True}).finetune, ("encoder", "context")
    )
    assert set(frozen.init(params).inner_states) == {"train", "frozen"}
    # One rate for all, as the paper-size configs have it, keeps plain Adam:
    # the optimizer state of earlier checkpoints.
    one_rate = tiny_config(**{"finetune.encoder_lr_scale": 1.0})
    assert config_lib.load("pre_cpc").finetune.encoder_lr_scale == 1.0
    plain = state_lib.optimizer(one_rate.finetune, ("encoder", "context"))
    assert jax.tree.structure(plain.init(params)) == jax.tree.structure(
        state_lib.optimizer(tiny_config().pretrain).init(params)
    )


def test_selection_keeps_the_best_dev_params_and_stops_early(tmp_path, unlabeled_utts):
    c = tiny_config()
    c.pretrain.num_steps = 6
    scripted = {1: 0.1, 2: 0.5, 3: 0.3, 4: 0.2, 5: 0.9, 6: 0.9}
    selection = loop.Selection(
        evaluate=lambda st: {"avg": scripted[int(st.step)]},
        every=1,
        key="avg",
        patience=2,
    )
    mesh = sharding.make_mesh()
    prog = steps.Programs.build(c, mesh)
    batches = pipeline.CropBatches(
        unlabeled_utts, c.pretrain.window, 8, c.seed, slice(0, 8)
    )

    def run(workdir, num_steps, selection=None):
        state = state_lib.create_state(
            prog.cpc, prog.cpc_tx, jax.random.key(0), batches.batch(0), mesh
        )
        return loop.train(
            name="test",
            workdir=str(workdir),
            state=state,
            step_fn=prog.cpc_step,
            batches=batches.batch,
            mesh=mesh,
            num_steps=num_steps,
            checkpoint_every=3,
            log_every=1,
            rng=jax.random.key(1),
            selection=selection,
        )

    stopped = run(tmp_path / "selected", 6, selection)
    assert int(stopped.step) == 4  # no new best at steps 3 and 4: patience 2
    assert checkpoint.read_best(str(tmp_path / "selected")) == {
        "step": 2,
        "value": 0.5,
        "stopped_at": 4,
    }
    at_step_2 = run(tmp_path / "two_steps", 2)
    best = checkpoint.restore_best_params(str(tmp_path / "selected"), stopped.params)
    for a, b in zip(jax.tree.leaves(at_step_2.params), jax.tree.leaves(best)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    dev_rows = [
        r for r in _lines(tmp_path / "selected" / "metrics.jsonl") if "dev_avg" in r
    ]
    assert [r["dev_avg"] for r in dev_rows] == [0.1, 0.5, 0.3, 0.2]
    # A rerun finds the stage finished: nothing is trained again.
    again = run(tmp_path / "selected", 6, selection)
    assert int(again.step) == 4


def _tones(num=24, seconds=1.0, seed=0):
    """Utterances of a few steady tones each: CPC learns to tell them apart fast."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    source = []
    for i in range(num):
        f0, f1 = rng.uniform(100, 2000, 2)
        wav = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.2 * np.sin(2 * np.pi * f1 * t)
        wav += 0.01 * rng.standard_normal(len(t))
        source.append(
            {"audio": (wav * 32767).astype(np.int16), "speaker": f"s{i}", "id": f"u{i}"}
        )
    return pipeline.index_source(source, labeled=False, desc="tones")


def test_bfloat16_computes_in_bf16_keeps_fp32_state_and_tracks_fp32_loss():
    """50 CPC steps in bfloat16 end close to the float32 loss, over 3 draws.

    bfloat16 keeps 8 significant bits (relative rounding 2^-8, about 0.4%) in
    matmuls and convs while params, Adam moments and the InfoNCE softmax stay
    float32, so the two trajectories drift apart only by that rounding. The
    loss falls fastest over the last steps (by 17% in all), so where one
    trajectory runs a step ahead the gap at the end grows: over the
    negatives' draws 1, 2 and 3 it measured 1.4%, 0.02% and 0.16% (mean
    0.53%). A mean under 1% and none over 2% leave room for that on other
    CPUs without admitting a broken bf16 path (a wrong cast or an overflow
    moves the loss by far more).
    """
    draws = (1, 2, 3)
    losses = {}
    for dtype in ("float32", "bfloat16"):
        c = tiny_config(dtype=dtype, **{"pretrain.learning_rate": 2e-3})
        mesh = sharding.make_mesh()
        prog = steps.Programs.build(c, mesh)
        batches = pipeline.CropBatches(_tones(), c.pretrain.window, 8, 0, slice(0, 8))
        for draw in draws:
            state = state_lib.create_state(
                prog.cpc, prog.cpc_tx, jax.random.key(0), batches.batch(0), mesh
            )
            history = []
            for step in range(50):
                state, metrics = prog.cpc_step(
                    state,
                    sharding.to_global(batches.batch(step), mesh),
                    jax.random.key(draw),
                )
                history.append(float(metrics["loss"]))
            params = jax.tree.leaves(state.params)
            assert {x.dtype for x in params} == {np.dtype("float32")}
            assert {
                x.dtype
                for x in jax.tree.leaves(state.opt_state)
                if hasattr(x, "dtype") and x.ndim
            } == {np.dtype("float32")}
            losses[dtype, draw] = history
        if dtype == "bfloat16":
            out = prog.cpc.apply(
                {"params": state.params},
                batches.batch(0)["wav"],
                batches.batch(0)["lengths"],
            )
            assert out["z"].dtype == jax.numpy.bfloat16
    gaps = []
    for draw in draws:
        f32 = np.mean(losses["float32", draw][-5:])
        bf16 = np.mean(losses["bfloat16", draw][-5:])
        # It learned, so the comparison means something.
        assert f32 < 0.9 * losses["float32", draw][0]
        gaps.append(abs(bf16 - f32) / f32)
    assert max(gaps) < 0.02 and np.mean(gaps) < 0.01, gaps


@flax.struct.dataclass
class _Toy:
    """A train state with nothing to compute: the loop's behaviour alone."""

    step: jax.Array
    params: dict


def _toy_step(state, batch, rng):
    state = state.replace(step=state.step + 1, params={"w": state.params["w"] + 1})
    return state, {"loss": 1.0 / state.step}


def _toy_train(workdir, num_steps=12, every=5, checkpoint_every=100, step_fn=_toy_step):
    state = _Toy(step=jnp.zeros((), jnp.int32), params={"w": jnp.zeros(2)})
    return loop.train(
        name="toy",
        workdir=str(workdir),
        state=state,
        step_fn=step_fn,
        batches=lambda step: {"wav": np.zeros((8, 4), np.float32)},
        mesh=sharding.make_mesh(),
        num_steps=num_steps,
        checkpoint_every=checkpoint_every,
        log_every=1,
        rng=jax.random.key(0),
        selection=loop.Selection(
            evaluate=lambda st: {"avg": 0.1 * int(st.step)}, every=every, key="avg"
        ),
    )


@pytest.fixture
def cpcjax_log():
    """The messages of the `cpcjax` loggers, at INFO and above."""
    messages = []

    class Keep(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    logger, handler = logging.getLogger("cpcjax"), Keep()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield messages
    logger.removeHandler(handler)
    logger.setLevel(level)


class _Clock:
    """A clock that moves `tick` seconds each time it is read."""

    def __init__(self, tick):
        self.now, self.tick = 0.0, tick

    def __call__(self):
        self.now += self.tick
        return self.now


def test_off_a_terminal_progress_is_plain_lines_with_the_dev_score(
    tmp_path, cpcjax_log, capsys, monkeypatch
):
    # 10 s a step, a line every 30 s: lines at steps 4, 7 and 10 (the rate is
    # measured from the end of step 1), and one more at the end.
    monkeypatch.setattr(loop, "_now", _Clock(10.0))
    monkeypatch.setattr(loop, "PROGRESS_EVERY_S", 30.0)
    _toy_train(tmp_path)
    progress = [m for m in cpcjax_log if "steps/s" in m]
    assert progress == [
        "toy: step 4/12, loss 0.2500, 0.10 steps/s, ETA 01:20",
        "toy: step 7/12, loss 0.1429, dev_avg 0.500, 0.10 steps/s, ETA 00:50",
        "toy: step 10/12, loss 0.1000, dev_avg 1.000, 0.10 steps/s, ETA 00:20",
        "toy: step 12/12, loss 0.0833, dev_avg 1.200, 0.07 steps/s, ETA 00:00",
    ]
    assert "\r" not in capsys.readouterr().err


def test_stage_messages_come_before_the_compile_and_each_dev_evaluation(
    tmp_path, cpcjax_log
):
    _toy_train(tmp_path)
    stages = [m for m in cpcjax_log if "steps/s" not in m]
    assert stages == [
        "toy: compiling the step for batch [8, 4] ...",
        "toy: evaluating dev at step 5",
        "toy: evaluating dev at step 10",
        "toy: evaluating dev at step 12",
    ]


def test_on_a_terminal_the_bar_shows_the_loss_and_latest_dev_score(
    tmp_path, cpcjax_log, monkeypatch
):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    _toy_train(tmp_path, num_steps=6)
    bar = terminal.getvalue()
    assert "6/6" in bar and "loss=0.1667" in bar and "dev_avg=0.600" in bar
    assert not [m for m in cpcjax_log if "steps/s" in m]


def test_the_toy_loop_resumes_and_writes_every_row_once(tmp_path):
    first = _toy_train(tmp_path, num_steps=6)
    assert int(first.step) == 6
    again = _toy_train(tmp_path, num_steps=12)
    assert int(again.step) == 12
    rows = _lines(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, 13))
    assert [(r["step"], r["dev_avg"]) for r in rows if "dev_avg" in r] == [
        (5, 0.5),
        (6, pytest.approx(0.6)),
        (10, 1.0),
        (12, pytest.approx(1.2)),
    ]
    np.testing.assert_array_equal(np.asarray(again.params["w"]), [12.0, 12.0])


def test_stages_on_threads_each_checkpoint_and_select_as_alone(tmp_path):
    # Orbax numbers every save of a process from one counter; saves started
    # at once from several threads, without turns, lose files.
    with experiment.Stages(3) as stages:
        futures = [
            stages.submit(_toy_train, tmp_path / f"r{i}", 12, 2, 1) for i in range(6)
        ]
        states = stages.results(futures)
    for i, state in enumerate(states):
        run = tmp_path / f"r{i}"
        assert int(state.step) == 12
        ckpts = checkpoint.Checkpoints(str(run / "checkpoints"))
        assert ckpts.latest_step() == 12
        ckpts.close()
        assert checkpoint.read_best(str(run)) == {"step": 12, "value": 0.1 * 12}
        best = checkpoint.restore_best_params(str(run), state.params)
        np.testing.assert_array_equal(np.asarray(best["w"]), [12.0, 12.0])
        steps_logged = [r["step"] for r in _lines(run / "metrics.jsonl") if "loss" in r]
        assert steps_logged == list(range(1, 13))


def test_a_failing_stage_raises_at_once_and_the_queued_ones_never_start(
    cpcjax_log,
):
    started = []
    running = threading.Event()

    def stage(i):
        started.append(i)
        if i == 0:
            running.wait(5)
            raise ValueError("stage 0 failed")
        running.set()
        time.sleep(0.5)  # in flight when stage 0 fails
        return i

    with (
        pytest.raises(ValueError, match="stage 0 failed"),
        experiment.Stages(2) as stages,
    ):
        stages.results([stages.submit(stage, i) for i in range(6)])
    # Stage 2 may start on the freed thread before it is cancelled; 3-5 never.
    assert {0, 1} <= set(started) <= {0, 1, 2}
    in_flight = len(started) - 1
    assert (
        f"ValueError: the {in_flight} stage(s) in flight finish before it is raised"
        in cpcjax_log
    )
    # One worker: each stage runs as it is submitted, and raises there.
    before = list(started)
    with (
        pytest.raises(ValueError, match="stage 0 failed"),
        experiment.Stages(1) as stages,
    ):
        stages.submit(stage, 0)
        stages.submit(stage, 1)
    assert started == [*before, 0]


def test_ctrl_c_saves_the_stages_in_flight_and_stops_them(
    tmp_path, monkeypatch, cpcjax_log
):
    monkeypatch.setattr(loop, "STOP", threading.Event())
    stepped = threading.Semaphore(0)

    def slow_step(state, batch, rng):
        time.sleep(0.01)
        stepped.release()
        return _toy_step(state, batch, rng)

    futures = []
    with pytest.raises(KeyboardInterrupt), experiment.Stages(2) as stages:
        for i in range(3):
            futures.append(
                stages.submit(
                    _toy_train, tmp_path / f"r{i}", 10_000, 100, 100, slow_step
                )
            )
        for _ in range(10):
            stepped.acquire()
        raise KeyboardInterrupt
    assert loop.STOP.is_set()
    assert (
        "KeyboardInterrupt: the 2 stage(s) in flight save a checkpoint after "
        "their step and stop" in cpcjax_log
    )
    for i, future in enumerate(futures[:2]):
        assert isinstance(future.exception(), loop.Preempted)
        ckpts = checkpoint.Checkpoints(str(tmp_path / f"r{i}" / "checkpoints"))
        assert 0 < ckpts.latest_step() < 10_000
        ckpts.close()
    assert futures[2].cancelled()


def test_two_stages_at_once_on_a_cpu_one_where_processes_must_agree(monkeypatch):
    c = tiny_config("sup")
    assert jax.default_backend() == "cpu" and experiment.concurrent_runs(c) == 2
    c.concurrent_runs = 3
    assert experiment.concurrent_runs(c) == 3
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    assert experiment.concurrent_runs(c) == 1


def test_runs_on_threads_give_what_they_give_one_at_a_time(tmp_path):
    """miniCPC's CPC stage of each fold, then the fine-tuning of each, two at a time."""
    c = tiny_config(
        "mini_cpc",
        **{
            **TINY_SYNTHETIC,
            "folds": (1, 2),
            "seeds": 1,
            "pretrain.num_steps": 2,
            "finetune.num_steps": 2,
            "data_dir": str(tmp_path / "data"),
            "analysis.probe": False,
            "analysis.plots": False,
        },
    )
    emo = sources.emotion_corpus(c)
    programs, rows = {}, {}  # the second pass runs the programs the first compiled
    for workers in (1, 2):
        c.concurrent_runs = workers
        rows[workers] = experiment.run_method(
            c, str(tmp_path / f"w{workers}"), emo, programs
        )
    assert rows[2]["ccc"] == rows[1]["ccc"]
    for fold in (1, 2):
        stage = ("pretrain", f"fold{fold}", "metrics.jsonl")
        assert _lines(tmp_path.joinpath("w2", *stage)) == _lines(
            tmp_path.joinpath("w1", *stage)
        )
        run = ("finetune", f"fold{fold}", "seed0", "result.json")
        one, two = (
            json.loads(tmp_path.joinpath(f"w{w}", *run).read_text()) for w in (1, 2)
        )
        assert two["test"]["preds"] == one["test"]["preds"]


def test_init_from_an_earlier_cpc_stage_skips_pretraining_and_takes_its_model(
    tmp_path, unlabeled_utts
):
    from cpcjax import workdir as workdir_lib

    earlier = tiny_config()
    workdir_lib.claim(earlier, str(tmp_path / "a"))
    _pretrain(earlier, unlabeled_utts, str(tmp_path / "a" / "pretrain"))

    c = tiny_config(
        **{
            "pretrain.init_from": str(tmp_path / "a" / "pretrain"),
            "model.context_hidden": 32,
            "data_dir": str(tmp_path / "data"),
        }
    )
    with pytest.raises(config_lib.ConfigError, match="model.context_hidden=32"):
        experiment.adopt_checkpoint_model(c, explicit=["model.context_hidden"])
    report = experiment.run(c, str(tmp_path / "b"))
    assert not (tmp_path / "b" / "pretrain").exists()  # nothing pretrained
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert config["model"]["context_hidden"] == 16  # the checkpoint's
    (row,) = report["rows"]
    assert set(row["ccc"]) == {"avg", "act", "val", "dom"}
    # The recognizer's encoder started from the earlier stage: the linear
    # probe reads exactly those features.
    assert row["probe"] is not None
    with pytest.raises(config_lib.ConfigError, match=r"config\.pretrain\.init_from"):
        tiny_config("sup", **{"pretrain.init_from": str(tmp_path / "a" / "pretrain")})
