"""The workdir layout of a run, owned here and nowhere else.

One method's workdir:

  config.json                          resolved config of the run
  pretrain/[fold<k>/]                  CPC stage (one per fold when it
      checkpoints/<step>/ metrics.jsonl    pretrains on the fold's own audio)
      events.out.tfevents.*
  finetune/fold<k>/seed<s>/            one supervised run
      checkpoints/<step>/ metrics.jsonl events.out.tfevents.* result.json
      best/<step>/ best.json           params of the best dev CCC
  plots/                               training_curves.png predicted_vs_true.png
                                       tsne.png (methods with a CPC stage)
  report.json report.md                the table

A demo workdir holds config.json, report.json and report.md, and one method
workdir per method, named after it.

This module reads and names files only: it imports nothing heavier than
ml_collections' configs it is handed, so `python -m cpcjax.predict` can check a
workdir before JAX starts.
"""

from __future__ import annotations

import hashlib
import json
import math

from cpcjax import paths
from cpcjax.config import ConfigError, flatten

CONFIG_FILE = "config.json"
RESULT_FILE = "result.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINTS_DIR = "checkpoints"
BEST_DIR = "best"  # the params of the best dev evaluation
BEST_FILE = "best.json"  # {"step", "value"[, "stopped_at"]} of model selection
PLOTS_DIR = "plots"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
PRETRAIN_DIR = "pretrain"
FINETUNE_DIR = "finetune"

# Fields a rerun in the same workdir may change: they size or extend the run
# without making its checkpoints and results mean something else.
RESIZABLE = (
    "seeds",
    "folds",
    "data_dir",
    "concurrent_runs",
    "pretrain.num_steps",
    "pretrain.checkpoint_every",
    "pretrain.log_every",
    "finetune.num_steps",
    "finetune.checkpoint_every",
    "finetune.log_every",
    "finetune.eval_batch_size",
    "analysis.probe",
    "analysis.plots",
)


class WorkdirError(Exception):
    """A workdir that has no usable run; the message says what is missing."""


def method_dir(workdir: str, method: str | None = None) -> str:
    """The workdir of `method` inside a demo workdir; `workdir` itself if None."""
    return workdir if method is None else paths.join(workdir, method)


def pretrain_dir(method_dir: str, fold=None) -> str:
    """The CPC stage of a method: one per fold when it pretrains per fold."""
    stage = paths.join(method_dir, PRETRAIN_DIR)
    return stage if fold is None else paths.join(stage, f"fold{fold}")


def run_dir(method_dir: str, fold, seed) -> str:
    """One fine-tuning run; "*" for `fold` or `seed` gives a glob pattern."""
    return paths.join(method_dir, FINETUNE_DIR, f"fold{fold}", f"seed{seed}")


def checkpoint_dir(stage_dir: str) -> str:
    """The Orbax checkpoints of a stage (a pretraining stage or a run)."""
    return paths.join(stage_dir, CHECKPOINTS_DIR)


def best_dir(run_dir: str) -> str:
    """The params model selection kept, one checkpoint at the best dev step."""
    return paths.join(run_dir, BEST_DIR)


def plots_dir(method_dir: str) -> str:
    return paths.join(method_dir, PLOTS_DIR)


def read_result(run_dir: str) -> dict | None:
    """The result.json of a finished run, or None while it is unfinished."""
    return paths.read_json(paths.join(run_dir, RESULT_FILE))


def write_result(run_dir: str, result: dict) -> None:
    """Writes result.json, which marks the run finished."""
    paths.write_json(paths.join(run_dir, RESULT_FILE), result)


def read_config(workdir: str) -> dict | None:
    """The resolved config a workdir was claimed with, or None."""
    return paths.read_json(paths.join(workdir, CONFIG_FILE))


def claim(config, workdir: str, write: bool = True) -> None:
    """Writes the resolved config to `workdir`, refusing one made by another config.

    A rerun continues what is in `workdir`, so its checkpoints must come from
    the same experiment; only the fields in RESIZABLE may change.

    Args:
      config: the resolved ml_collections config of the run.
      workdir: the directory to claim; made if missing.
      write: False checks without writing (processes other than the first).

    Raises:
      ConfigError: `workdir` holds a run of another config.
    """
    paths.makedirs(workdir)
    path = paths.join(workdir, CONFIG_FILE)
    new = json.loads(config.to_json_best_effort())
    old = read_config(workdir)
    if old is not None:
        old, flat = flatten(old), flatten(new)
        changed = sorted(
            k
            for k in old.keys() | flat.keys()
            if k not in RESIZABLE and old.get(k) != flat.get(k)
        )
        if changed:
            raise ConfigError(
                f"{workdir} holds a run of another config ({', '.join(changed)} "
                f"differ, see {path}); use a new --workdir, or delete it to start over"
            )
    if write:
        paths.write_json(path, new, indent=2)


def config_hash(config) -> str:
    """Names the experiment a row came from: the resolved config less what
    may change between reruns of one workdir (RESIZABLE)."""
    flat = flatten(json.loads(config.to_json_best_effort()))
    kept = {k: v for k, v in flat.items() if k not in RESIZABLE}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:12]


def finished_steps(stage_dir: str) -> int:
    """The step of the latest complete checkpoint of a stage; 0 if none."""
    if not paths.isdir(checkpoint_dir(stage_dir)):
        return 0
    # Orbax decides which step folders are complete; importing it here, not
    # at the top, keeps this module light and free of an import cycle.
    from cpcjax.train import checkpoint

    ckpts = checkpoint.Checkpoints(checkpoint_dir(stage_dir))
    try:
        return ckpts.latest_step() or 0
    finally:
        ckpts.close()


def method_workdir(workdir: str, method: str | None = None) -> tuple[str, dict]:
    """The workdir of one method and its resolved config.

    Args:
      workdir: a method workdir, or a demo workdir with one subfolder per method.
      method: the method to take from a demo workdir; None takes the last one
        its config lists. For a method workdir it must match its method.

    Raises:
      WorkdirError: no config.json, or the method is not there.
    """
    config = read_config(workdir)
    if config is None:
        raise WorkdirError(
            f"{workdir} is not a cpcjax workdir: it has no {CONFIG_FILE} "
            f"(pass the --workdir of a `python -m cpcjax.main` run)"
        )
    if "methods" in config:
        methods = list(config.get("method_order") or config["methods"])
        method = method or methods[-1]
        if method not in methods:
            raise WorkdirError(
                f"{workdir} holds the methods {', '.join(methods)}, not {method!r}"
            )
        return method_workdir(method_dir(workdir, method), method)
    if method is not None and config.get("method") != method:
        raise WorkdirError(
            f"{workdir} is a run of {config.get('method')!r}, not {method!r}"
        )
    return workdir, config


def _dev_avg(result: dict) -> float:
    value = result.get("dev", {}).get("ccc", {}).get("avg", math.nan)
    return -math.inf if value is None or math.isnan(value) else value


def finished_runs(method_dir: str) -> list[tuple[str, dict]]:
    """(run relative to `method_dir`, its result.json) of every finished run,
    in path order."""
    pattern = paths.join(run_dir("", "*", "*"), RESULT_FILE)
    return [
        (paths.relpath(paths.parent(p), method_dir), paths.read_json(p))
        for p in paths.glob(method_dir, pattern)
    ]


def choose_run(method_dir: str, run: str | None = None) -> tuple[str, dict, str]:
    """The fine-tuning run to predict with.

    Args:
      method_dir: a method workdir.
      run: a run directory relative to `method_dir` (e.g.
        "finetune/fold1/seed0"); None picks the finished run with the highest
        dev CCC avg, so the test sessions play no part in the choice.

    Returns:
      (run, its result.json, why it was chosen).

    Raises:
      WorkdirError: the run is not finished, or no run is.
    """
    if run is not None:
        result = read_result(paths.join(method_dir, run))
        if result is None:
            raise WorkdirError(
                f"{paths.join(method_dir, run)} is not a finished run: it has "
                f"no {RESULT_FILE} (written, with the label scale, when "
                f"fine-tuning ends)"
            )
        return (
            paths.relpath(paths.join(method_dir, run), method_dir),
            result,
            ("the run asked for"),
        )
    results = finished_runs(method_dir)
    if not results:
        pattern = run_dir("", "*", "*")
        raise WorkdirError(
            f"{method_dir} has no finished fine-tuning run (no "
            f"{pattern}/{RESULT_FILE}); finish its training first"
        )
    # max keeps the first of equals: the lowest fold and seed.
    best, result = max(results, key=lambda r: _dev_avg(r[1]))
    why = (
        f"highest dev CCC avg ({_dev_avg(result):.4f}) of {len(results)} finished "
        f"run{'s' if len(results) > 1 else ''}"
    )
    return best, result, why


def find_stages(workdir: str) -> list[dict]:
    """Every training stage under `workdir` that logged metrics, in path order.

    Args:
      workdir: a method workdir, or a demo workdir holding several.

    Returns:
      Per stage: "kind" ("pretrain" or "finetune"), "method" (the method key
      of the workdir it belongs to; its folder names when that has no config,
      None for a bare stage), "name" (e.g. "fold1/seed0"; "" for a single
      pretraining stage), "dir", "metrics" (its metrics.jsonl) and "result"
      (its result.json, or None).
    """
    stages = []
    methods: dict[str, str | None] = {}
    for root, _, files in paths.walk(workdir):
        if METRICS_FILE not in files:
            continue
        parts = tuple(paths.relpath(root, workdir).split("/"))
        kinds = [i for i, p in enumerate(parts) if p in (PRETRAIN_DIR, FINETUNE_DIR)]
        if not kinds:
            continue
        i = kinds[-1]
        owner = paths.join(workdir, *parts[:i])
        if owner not in methods:
            config = read_config(owner) or {}
            methods[owner] = config.get("method") or ("/".join(parts[:i]) or None)
        stages.append(
            {
                "kind": parts[i],
                "method": methods[owner],
                "name": "/".join(parts[i + 1 :]),
                "dir": root,
                "metrics": paths.join(root, METRICS_FILE),
                "result": read_result(root),
            }
        )
    return stages
