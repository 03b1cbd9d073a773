"""The one training loop of pretraining, joint training and fine-tuning.

A stage differs from another only in its step function, its batches and its
initial state. The loop gives every stage the same progress report (step,
loss, latest dev score, rate, ETA), metric writing (TensorBoard via clu, and
`metrics.jsonl` with every step), a NaN guard, Orbax checkpoints and resume.

`train` resumes a stage and runs its steps; `_Stage` keeps what lasts from
one step to the next and does what each step calls for. Its parts each own
their state: `_MetricsLog` (metrics on their way off the device),
`_Selector` (the best dev score and early stopping) and `_Progress` (what
the user sees).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import itertools
import logging
import math
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import tqdm
from clu import metric_writers
from jax.experimental import multihost_utils
from tqdm.contrib import logging as tqdm_logging

from cpcjax import paths
from cpcjax import workdir as layout
from cpcjax.train import checkpoint, sharding

# Off a terminal (nohup, a log file) a progress line is logged this often,
# in place of a bar redrawn with carriage returns.
PROGRESS_EVERY_S = 30.0
log = logging.getLogger(__name__)
_now = time.monotonic  # the progress report's clock; tests replace it


@dataclasses.dataclass(frozen=True)
class Selection:
    """Model selection on a held-out split while training.

    Attributes:
      evaluate: state -> scores (e.g. dev CCC per dimension); host-side.
      every: evaluate every this many steps (and at the last step).
      key: the score to maximise; the params of its best evaluation are kept
        in `best/` and `best.json` records its step and value.
      patience: stop after this many evaluations without a new best (early
        stopping); 0 trains to the last step.
    """

    evaluate: Callable[[Any], dict[str, float]]
    every: int
    key: str
    patience: int = 0


class Preempted(Exception):
    """SIGTERM arrived: a checkpoint was saved; the same command continues."""


# Set when training should stop (SIGTERM: a TPU maintenance event, a
# cluster's preemption notice): the loop saves at the end of the step in
# flight and stops. A single process sets it from its own SIGTERM handler; the
# processes of a multi-process run set it at the same step (`stop_requested`).
STOP = threading.Event()
# Training steps this process has run, over all its stages: the step id every
# process gives JAX's preemption sync point. It only grows, so a sync point
# chosen at the end of one stage is still ahead in the next.
_steps_run = itertools.count(1)


def _agreed_stop() -> bool:
    """Whether JAX's preemption sync manager decides when to stop.

    `jax.distributed.initialize` starts it and installs JAX's own SIGTERM
    notifier, which tells every process of the run about the signal.
    """
    return jax.distributed.is_initialized() and jax.config.jax_enable_preemption_service


def stop_on_sigterm() -> None:
    """Lets SIGTERM stop training; called once by the entry point, after
    `jax.distributed.initialize` when there is one.

    A handler of our own would replace JAX's notifier, and each process would
    then stop at the step it happened to be on: so only without it.
    """
    if not _agreed_stop():
        signal.signal(signal.SIGTERM, lambda signum, frame: STOP.set())


def stop_requested() -> bool:
    """True once training should stop; called after every step, on every process.

    With JAX's sync manager, the first True comes on every process at the same
    call: the one after the furthest any process had got to when the first
    SIGTERM reached any of them. Checking costs a mutex, not a round trip.
    """
    step = next(_steps_run)
    if (
        not STOP.is_set()
        and _agreed_stop()
        and multihost_utils.reached_preemption_sync_point(step)
    ):
        STOP.set()
    return STOP.is_set()


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


def _trim_metrics(path: str, last_step: int) -> None:
    """Drops lines a killed run wrote after its last checkpoint."""
    if not paths.exists(path):
        return
    rows = paths.read_jsonl(path)
    kept = [r for r in rows if r["step"] <= last_step]
    if len(kept) < len(rows):
        paths.write_jsonl(path, kept)


def _first_nonfinite(rows: list[dict]) -> int | None:
    return next(
        (i for i, r in enumerate(rows) if not all(map(math.isfinite, r.values()))),
        None,
    )


class _MetricsLog:
    """Step metrics on their way from the device to metrics.jsonl and TensorBoard.

    Metrics stay on the device until `flush`, so the host waits for them once
    every `log_every` steps rather than after every step.
    """

    def __init__(self, name: str, path: str, writer, is_main: bool):
        self.name = name
        self.path = path
        self.writer = writer
        self.is_main = is_main
        self.pending: list[tuple[int, dict]] = []

    def add(self, step: int, metrics: dict) -> None:
        self.pending.append((step, metrics))

    def _append(self, rows: list[dict]) -> None:
        if self.is_main and rows:
            paths.append_jsonl(self.path, rows)

    def flush(self) -> tuple[dict[str, float], dict | None]:
        """Fetches the pending metrics and writes them.

        Returns:
          The mean of each metric over the fetched steps, and None; or, when
          a value is NaN or infinite, no means and the first such row: the
          rows before it are written, it and the later ones are not.
        """
        if not self.pending:
            return {}, None
        fetched = jax.device_get([m for _, m in self.pending])
        rows = [
            {"step": s, **{k: float(v) for k, v in m.items()}}
            for (s, _), m in zip(self.pending, fetched)
        ]
        self.pending.clear()
        bad_at = _first_nonfinite(rows)
        self._append(rows[:bad_at])
        if bad_at is not None:
            return {}, rows[bad_at]
        means = {
            k: float(np.mean([r[k] for r in rows])) for k in rows[-1] if k != "step"
        }
        self.writer.write_scalars(
            rows[-1]["step"], {f"{self.name}/{k}": v for k, v in means.items()}
        )
        return means, None

    def record(self, step: int, values: dict[str, float]) -> None:
        """Writes one row of host-side values (dev scores) at once."""
        self._append([{"step": step, **{k: float(v) for k, v in values.items()}}])
        self.writer.write_scalars(
            step, {f"{self.name}/{k}": v for k, v in values.items()}
        )


class _EventsWriter:
    """TensorBoard's writer for a stage's workdir (a logging-only one off the
    first process).

    TensorFlow writes the event files, local or on Cloud Storage, except
    where its GCS client cannot reach the storage (an emulator): there they
    go to a local folder, copied to the workdir at every flush.
    """

    def __init__(self, workdir: str, is_main: bool):
        self.workdir = workdir
        self.local = None
        if is_main and not paths.tensorflow_reaches(workdir):
            self.local = tempfile.mkdtemp(prefix="cpcjax-events-")
        self.writer = metric_writers.create_default_writer(
            self.local or workdir, just_logging=not is_main
        )

    def write_scalars(self, step: int, scalars: dict) -> None:
        self.writer.write_scalars(step, scalars)

    def flush(self) -> None:
        self.writer.flush()
        if self.local is not None:
            paths.copy_tree(self.local, self.workdir)

    def close(self) -> None:
        self.flush()
        self.writer.close()
        if self.local is not None:
            shutil.rmtree(self.local, ignore_errors=True)


class _Selector:
    """The best dev evaluation so far: its params in `best/`, and early stopping."""

    def __init__(self, name: str, selection: Selection, workdir: str, best: dict):
        self.name = name
        self.selection = selection
        self.workdir = workdir
        self.best = best  # {"step", "value"[, "stopped_at"]}, as in best.json
        self.ckpts = checkpoint.Checkpoints(layout.best_dir(workdir), keep=1)

    def update(self, done: int, params, scores: dict[str, float]) -> bool:
        """Keeps `params` when step `done` scored a new best; True to stop early."""
        sel = self.selection
        if scores[sel.key] > self.best["value"]:
            self.ckpts.save(done, params)
            self.ckpts.wait()
            self.best = {"step": done, "value": float(scores[sel.key])}
        elif sel.patience and done - self.best["step"] >= sel.patience * sel.every:
            self.best = {**self.best, "stopped_at": done}
            log.info(
                "%s: dev %s has not improved for %d evaluations; stopping at step "
                "%d, keeping step %d (%.4f)",
                self.name,
                sel.key,
                sel.patience,
                done,
                self.best["step"],
                self.best["value"],
            )
        if jax.process_index() == 0:
            checkpoint.write_best(self.workdir, self.best)
        return "stopped_at" in self.best

    def close(self) -> None:
        self.ckpts.close()


class _Progress:
    """Step/total, loss, latest dev score, steps/s and ETA.

    On a terminal: a tqdm bar on stderr. Elsewhere (nohup, a log file): a
    plain line through the logger every `PROGRESS_EVERY_S` seconds, since a
    redrawn bar would fill the file with carriage returns.
    """

    def __init__(self, name: str, start: int, total: int, enabled: bool):
        self.name = name
        self.total = total
        self.enabled = enabled
        self.plain = enabled and not sys.stderr.isatty()
        self.bar = tqdm.tqdm(
            total=total,
            initial=start,
            desc=name,
            unit="step",
            dynamic_ncols=True,
            file=sys.stderr,
            disable=not enabled or self.plain,
            mininterval=1.0,
        )
        self.fields: dict[str, float] = {}
        self.done = start
        # (step, time) the rate is measured from: the end of the first step,
        # so the first compile does not count, then each line's.
        self.mark: tuple[int, float] | None = None

    def redirect_logs(self):
        """A context in which cpcjax's log lines print above the bar, not through it."""
        if self.bar.disable:
            return contextlib.nullcontext()
        return _logs_above_bars()

    def show(self, **fields: float) -> None:
        """Sets values shown beside the step count (the loss, a dev score)."""
        self.fields.update(fields)
        self.bar.set_postfix(
            {
                k: f"{v:.4f}" if k == "loss" else f"{v:.3f}"
                for k, v in self.fields.items()
            }
        )

    def step(self, done: int) -> None:
        self.done = done
        self.bar.update(1)
        if not self.plain:
            return
        now = _now()
        if self.mark is None:
            self.mark = (done, now)
        elif now - self.mark[1] >= PROGRESS_EVERY_S:
            self._line(now)

    def _line(self, now: float) -> None:
        steps, seconds = self.done - self.mark[0], now - self.mark[1]
        rate = steps / seconds if seconds > 0 else math.inf
        eta = (self.total - self.done) / rate if rate > 0 else math.inf
        parts = [f"step {self.done}/{self.total}"]
        parts += [
            f"{k} {v:.4f}" if k == "loss" else f"{k} {v:.3f}"
            for k, v in self.fields.items()
        ]
        parts.append(f"{rate:.2f} steps/s")
        if math.isfinite(eta):
            parts.append(f"ETA {tqdm.tqdm.format_interval(eta)}")
        log.info("%s: %s", self.name, ", ".join(parts))
        self.mark = (self.done, now)

    def close(self) -> None:
        """Closes the bar; off a terminal, a last line for the steps since the last."""
        self.bar.close()
        if self.plain and self.mark is not None and self.done > self.mark[0]:
            self._line(_now())
        self.plain = False  # a second close prints nothing


# The bars open at once (stages run concurrently) share one redirect of the
# log lines: the first to open installs it, the last to close removes it.
_redirect_lock = threading.Lock()
_redirect: list = []  # [open bars, the redirect's context]


@contextlib.contextmanager
def _logs_above_bars():
    with _redirect_lock:
        if not _redirect:
            ctx = tqdm_logging.logging_redirect_tqdm([logging.getLogger("cpcjax")])
            ctx.__enter__()
            _redirect[:] = [0, ctx]
        _redirect[0] += 1
    try:
        yield
    finally:
        with _redirect_lock:
            _redirect[0] -= 1
            if not _redirect[0]:
                _, ctx = _redirect
                _redirect.clear()
                ctx.__exit__(None, None, None)


class _Stage:
    """What a stage keeps from one step to the next, and what a step may do:
    fetch and check metrics, evaluate on dev, save a checkpoint, stop."""

    def __init__(
        self,
        name: str,
        workdir: str,
        ckpts: checkpoint.Checkpoints,
        start: int,
        num_steps: int,
        selection: Selection | None,
        best: dict,
    ):
        self.name = name
        self.ckpts = ckpts
        self.last_saved = start
        self.selection = selection
        self.is_main = jax.process_index() == 0
        self.shapes: set[tuple[int, ...]] = set()  # batch shapes stepped so far
        self.writer = _EventsWriter(workdir, self.is_main)
        self.metrics = _MetricsLog(
            name, paths.join(workdir, layout.METRICS_FILE), self.writer, self.is_main
        )
        self.selector = _Selector(name, selection, workdir, best) if selection else None
        self.progress = _Progress(name, start, num_steps, self.is_main)

    def _say(self, message: str, *args) -> None:
        if self.is_main:
            log.info(message, *args)

    def before_step(self, batch: dict) -> None:
        """Says when the step is about to compile: the first stall of a stage."""
        # jit compiles once per input shape; bucketed batches bring new ones.
        shape = tuple(batch["wav"].shape)
        if shape not in self.shapes:
            self.shapes.add(shape)
            self._say("%s: compiling the step for batch %s ...", self.name, list(shape))

    def after_step(
        self, done: int, state, *, last: bool, checkpoint_due: bool, log_due: bool
    ) -> bool:
        """Logs, evaluates and checkpoints as step `done` calls for.

        Args:
          done: steps finished.
          state: the state after them.
          last: `done` is the stage's last step.
          checkpoint_due: `done` is a multiple of `checkpoint_every`.
          log_due: `done` is a multiple of `log_every`.

        Returns:
          True when the stage ends here (its last step, or an early stop).

        Raises:
          TrainingDiverged: a metric is NaN or infinite.
          Preempted: SIGTERM arrived; step `done` is saved.
        """
        if log_due or checkpoint_due or last:
            self._flush()
        if self.selector and (done % self.selection.every == 0 or last):
            self._flush()
            last = self._select(done, state) or last
        preempted = stop_requested()
        if preempted and not last:
            self._flush()
        if checkpoint_due or last or preempted:
            self.ckpts.save(done, state)
            self.last_saved = done
        self.progress.step(done)
        if preempted and not last:
            raise Preempted(
                f"{self.name}: stopped by SIGTERM after step {done}; "
                f"saved a checkpoint in {self.ckpts.directory}: rerun the "
                f"same command to continue"
            )
        return last

    def _flush(self) -> None:
        means, bad = self.metrics.flush()
        if bad is not None:
            names = [k for k, v in bad.items() if not math.isfinite(v)]
            raise TrainingDiverged(
                f"{self.name}: {', '.join(names)} became {bad[names[0]]} at step "
                f"{bad['step']}; stopped without saving. The last good checkpoint "
                f"(step {self.last_saved}) is kept in {self.ckpts.directory}; lower "
                f"the learning rate or check the input, then rerun the same "
                f"command to continue from it."
            )
        if "loss" in means:
            self.progress.show(loss=means["loss"])

    def _select(self, done: int, state) -> bool:
        """Evaluates on dev, records the scores; True to stop early."""
        key = self.selection.key
        self._say("%s: evaluating dev at step %d", self.name, done)
        scores = self.selection.evaluate(state)
        self.metrics.record(done, {f"dev_{k}": v for k, v in scores.items()})
        self.progress.show(**{f"dev_{key}": float(scores[key])})
        return self.selector.update(done, state.params, scores)

    def close(self) -> None:
        self.progress.close()
        self.ckpts.wait()
        self.ckpts.close()
        if self.selector:
            self.selector.close()
        self.writer.close()


def train(
    *,
    name: str,
    workdir: str,
    state: Any,
    step_fn: Callable,
    batches: Callable[[int], dict[str, np.ndarray]],
    mesh,
    num_steps: int,
    checkpoint_every: int,
    log_every: int,
    rng: jax.Array,
    selection: Selection | None = None,
    prefetch: int = 2,
) -> Any:
    """Runs `step_fn` from the last checkpoint in `workdir` up to `num_steps`.

    Args:
      name: the stage's name in messages and the progress report.
      workdir: the stage's directory: `checkpoints/`, TensorBoard events and
        `metrics.jsonl` go there.
      state: the freshly initialised train state (also the restore target).
      step_fn: jitted `(state, batch, rng) -> (state, metrics)`; it folds the
        step into `rng` itself, so a resumed run draws the same randomness.
      batches: `step -> this process' rows of the global batch` (numpy), a pure
        function of the step.
      mesh: the device mesh the batch is sharded over.
      num_steps: total steps of the stage.
      checkpoint_every: save every this many steps (and at the end).
      log_every: fetch metrics, check them and write them every this many steps.
      rng: the stage's base key.
      selection: evaluate while training and keep the best params (and stop
        early when it says so).
      prefetch: batches prepared ahead on a host thread.

    Returns:
      The state after `num_steps` steps (or where early stopping ended it).

    Raises:
      TrainingDiverged: a metric became NaN/inf; nothing after the last good
        checkpoint is saved.
      Preempted: SIGTERM arrived (see `stop_on_sigterm`); the step in flight
        finished and was checkpointed.
    """
    paths.makedirs(workdir)
    ckpts = checkpoint.Checkpoints(layout.checkpoint_dir(workdir))
    start = ckpts.latest_step() or 0
    if start:
        state = ckpts.restore(start, state)
    if jax.process_index() == 0:
        _trim_metrics(paths.join(workdir, layout.METRICS_FILE), start)
    best = checkpoint.read_best(workdir)
    if start >= min(num_steps, best.get("stopped_at", num_steps)):
        ckpts.close()
        return state

    stage = _Stage(name, workdir, ckpts, start, num_steps, selection, best)
    with (
        stage.progress.redirect_logs(),
        concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool,
    ):
        ahead = {
            s: pool.submit(batches, s)
            for s in range(start, min(start + prefetch, num_steps))
        }
        try:
            for step in range(start, num_steps):
                local = ahead.pop(step).result()
                if step + prefetch < num_steps:
                    ahead[step + prefetch] = pool.submit(batches, step + prefetch)
                batch = sharding.to_global(local, mesh)
                stage.before_step(batch)
                state, metrics = step_fn(state, batch, rng)
                done = step + 1
                stage.metrics.add(done, metrics)
                if stage.after_step(
                    done,
                    state,
                    last=done == num_steps,
                    checkpoint_due=done % checkpoint_every == 0,
                    log_due=done % log_every == 0,
                ):
                    break
        finally:
            for f in ahead.values():
                f.cancel()
            stage.close()
    return state
