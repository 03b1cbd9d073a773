"""The one training loop of pretraining, joint training and fine-tuning.

A stage differs from another only in its step function, its batches and its
initial state. The loop gives every stage the same progress bar (step/total,
loss, ETA), metric writing (TensorBoard via clu, and `metrics.jsonl` with
every step), a NaN guard, Orbax checkpoints and resume.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import math
import os
import signal
import sys
import threading
from typing import Any, Callable

import jax
import numpy as np
import tqdm
from clu import metric_writers

from cpcjax.train import checkpoint, sharding

METRICS_FILE = "metrics.jsonl"


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


# Set by SIGTERM (a TPU maintenance event, a cluster's preemption notice):
# the loop saves at the end of the step in flight and stops.
STOP = threading.Event()


def stop_on_sigterm() -> None:
    """Routes SIGTERM to STOP; called once by the entry point."""
    signal.signal(signal.SIGTERM, lambda signum, frame: STOP.set())


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


def _trim_metrics(path: str, last_step: int) -> None:
    """Drops lines a killed run wrote after its last checkpoint."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = [l for l in f if l.strip() and json.loads(l)["step"] <= last_step]
    with open(path, "w") as f:
        f.writelines(lines)


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
      name: the stage's name in messages and the progress bar.
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
    os.makedirs(workdir, exist_ok=True)
    ckpts = checkpoint.Checkpoints(os.path.join(workdir, "checkpoints"))
    start = ckpts.latest_step() or 0
    if start:
        state = ckpts.restore(start, state)
    metrics_path = os.path.join(workdir, METRICS_FILE)
    is_main = jax.process_index() == 0
    if is_main:
        _trim_metrics(metrics_path, start)
    best = checkpoint.read_best(workdir)
    if start >= min(num_steps, best.get("stopped_at", num_steps)):
        ckpts.close()
        return state

    writer = metric_writers.create_default_writer(workdir, just_logging=not is_main)
    bar = tqdm.tqdm(
        total=num_steps,
        initial=start,
        desc=name,
        unit="step",
        dynamic_ncols=True,
        file=sys.stderr,
        disable=not is_main,
        mininterval=1.0,
    )
    pending: list[tuple[int, dict]] = []
    last_saved = start

    def flush() -> None:
        if not pending:
            return
        fetched = jax.device_get([m for _, m in pending])
        rows = [
            {"step": s, **{k: float(v) for k, v in m.items()}}
            for (s, _), m in zip(pending, fetched)
        ]
        pending.clear()
        bad_at = next(
            (
                i
                for i, r in enumerate(rows)
                if not all(math.isfinite(v) for v in r.values())
            ),
            None,
        )
        if is_main:
            with open(metrics_path, "a") as f:
                f.writelines(json.dumps(r) + "\n" for r in rows[:bad_at])
        if bad_at is not None:
            row = rows[bad_at]
            bad = [k for k, v in row.items() if not math.isfinite(v)]
            bar.close()
            raise TrainingDiverged(
                f"{name}: {', '.join(bad)} became {row[bad[0]]} at step {row['step']}; "
                f"stopped without saving. The last good checkpoint (step {last_saved}) "
                f"is kept in {ckpts.directory}; lower the learning rate or check the "
                f"input, then rerun the same command to continue from it."
            )
        means = {
            k: float(np.mean([r[k] for r in rows])) for k in rows[-1] if k != "step"
        }
        writer.write_scalars(
            rows[-1]["step"], {f"{name}/{k}": v for k, v in means.items()}
        )
        bar.set_postfix({k: f"{v:.4f}" for k, v in means.items() if k == "loss"})

    def write_row(row: dict) -> None:
        if is_main:
            with open(metrics_path, "a") as f:
                f.write(json.dumps(row) + "\n")

    def select(done: int) -> bool:
        """Evaluates, keeps a new best, and says whether to stop early."""
        nonlocal best
        scores = selection.evaluate(state)
        write_row({"step": done, **{f"dev_{k}": float(v) for k, v in scores.items()}})
        writer.write_scalars(done, {f"{name}/dev_{k}": v for k, v in scores.items()})
        if scores[selection.key] > best["value"]:
            best_ckpts.save(done, state.params)
            best_ckpts.wait()
            best = {"step": done, "value": float(scores[selection.key])}
        elif (
            selection.patience
            and done - best["step"] >= selection.patience * selection.every
        ):
            best = {**best, "stopped_at": done}
            bar.write(
                f"{name}: dev {selection.key} has not improved for "
                f"{selection.patience} evaluations; stopping at step {done}, "
                f"keeping step {best['step']} ({best['value']:.4f})"
            )
        if is_main:
            checkpoint.write_best(workdir, best)
        return "stopped_at" in best

    best_ckpts = (
        checkpoint.Checkpoints(os.path.join(workdir, checkpoint.BEST_DIR), keep=1)
        if selection
        else None
    )

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        ahead = {
            s: pool.submit(batches, s)
            for s in range(start, min(start + prefetch, num_steps))
        }
        try:
            for step in range(start, num_steps):
                local = ahead.pop(step).result()
                if step + prefetch < num_steps:
                    ahead[step + prefetch] = pool.submit(batches, step + prefetch)
                state, metrics = step_fn(state, sharding.to_global(local, mesh), rng)
                done = step + 1
                pending.append((done, metrics))
                bar.update(1)
                last = done == num_steps
                if done % log_every == 0 or done % checkpoint_every == 0 or last:
                    flush()
                if selection and (done % selection.every == 0 or last):
                    flush()
                    last = select(done) or last
                preempted = STOP.is_set()
                if preempted and not last:
                    flush()
                if done % checkpoint_every == 0 or last or preempted:
                    ckpts.save(done, state)
                    last_saved = done
                if preempted and not last:
                    raise Preempted(
                        f"{name}: stopped by SIGTERM after step {done}; "
                        f"saved a checkpoint in {ckpts.directory}: rerun the "
                        f"same command to continue"
                    )
                if last:
                    break
        finally:
            for f in ahead.values():
                f.cancel()
            bar.close()
            ckpts.wait()
            ckpts.close()
            if best_ckpts:
                best_ckpts.close()
            writer.flush()
    return state
