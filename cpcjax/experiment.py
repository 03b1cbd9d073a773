"""The stages of a method: pretrain, fine-tune per fold x seed, evaluate, report.

What each stage writes where is `cpcjax.workdir`'s layout.

A stage whose last checkpoint is at its final step, or a run that wrote its
result.json, is finished and never rerun; an unfinished one resumes from its
last checkpoint.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
from collections.abc import Callable, Sequence

import jax
import ml_collections
import numpy as np

from cpcjax import cli, evaluate, paths, plots, probe, report
from cpcjax import config as config_lib
from cpcjax import workdir as workdir_lib
from cpcjax.data import pipeline, protocols, sources
from cpcjax.models import build
from cpcjax.train import checkpoint, loop, sharding
from cpcjax.train import state as state_lib
from cpcjax.train.steps import Programs

log = logging.getLogger(__name__)


def _program_key(config) -> str:
    c = config.to_dict()
    c["pretrain"].pop("corpus")
    return json.dumps(
        {k: c[k] for k in ("model", "pretrain", "finetune", "dtype")},
        sort_keys=True,
        default=str,
    )


def concurrent_runs(config) -> int:
    """How many independent stages this process trains at once (`concurrent_runs`)."""
    if jax.process_count() > 1:
        return 1
    if config.concurrent_runs:
        return config.concurrent_runs
    return 2 if jax.default_backend() == "cpu" else 1


class Stages:
    """Independent stages, `workers` at a time on threads; with one worker, each
    in the calling thread as it is submitted.

    A stage's numbers do not depend on what runs beside it: each has its own
    state, batches and keys, and XLA computes a program alike whatever else
    runs. Leaving the block on an exception cancels the stages not yet
    started; on Ctrl-C the ones in flight also save a checkpoint and stop.
    """

    def __init__(self, workers: int):
        self.pool = None
        if workers > 1:
            self.pool = concurrent.futures.ThreadPoolExecutor(
                workers, thread_name_prefix="cpcjax-stage"
            )
        self.futures: list[concurrent.futures.Future] = []

    def submit(self, fn: Callable, *args) -> concurrent.futures.Future:
        if self.pool is None:
            return self.done(fn(*args))
        future = self.pool.submit(fn, *args)
        self.futures.append(future)
        return future

    @staticmethod
    def done(value) -> concurrent.futures.Future:
        """A future that holds `value` already."""
        future = concurrent.futures.Future()
        future.set_result(value)
        return future

    def results(self, futures: Sequence[concurrent.futures.Future]) -> list:
        """Their results in order; the first stage to fail raises at once."""
        concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_EXCEPTION)
        for f in futures:
            if f.done() and not f.cancelled() and f.exception() is not None:
                f.result()
        return [f.result() for f in futures]

    def __enter__(self) -> Stages:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.pool is None:
            return
        if exc_type is not None:
            for f in self.futures:
                f.cancel()
            interrupted = not issubclass(exc_type, Exception)  # Ctrl-C
            if interrupted:
                loop.STOP.set()
            running = sum(f.running() for f in self.futures)
            if running:
                log.warning(
                    "%s: the %d stage(s) in flight %s",
                    exc_type.__name__,
                    running,
                    "save a checkpoint after their step and stop"
                    if interrupted
                    else "finish before it is raised",
                )
        self.pool.shutdown(wait=True)


def pretrain_stage(
    config, programs: Programs, mesh, utts: pipeline.Utterances, workdir: str, name: str
) -> str:
    """Trains CPC on `utts` in `workdir`; returns its checkpoint directory."""
    p = config.pretrain
    ckpt_dir = workdir_lib.checkpoint_dir(workdir)
    if workdir_lib.finished_steps(workdir) >= p.num_steps:
        log.info("%s: finished earlier, reusing %s", name, ckpt_dir)
        return ckpt_dir
    batches = pipeline.CropBatches(
        utts, p.window, p.batch_size, config.seed, sharding.process_rows(p.batch_size)
    )
    if batches.skipped:
        log.warning(
            "%s: %d utterances shorter than the %d-sample window are not "
            "used for pretraining",
            name,
            batches.skipped,
            p.window,
        )
    example = batches.batch(0)
    state = state_lib.create_state(
        programs.cpc, programs.cpc_tx, jax.random.key(config.seed), example, mesh
    )
    loop.train(
        name=name,
        workdir=workdir,
        state=state,
        step_fn=programs.cpc_step,
        batches=batches.batch,
        mesh=mesh,
        num_steps=p.num_steps,
        checkpoint_every=p.checkpoint_every,
        log_every=p.log_every,
        rng=jax.random.key(config.seed + 1),
    )
    return ckpt_dir


def finetune_run(
    config,
    programs: Programs,
    mesh,
    emo: pipeline.Utterances,
    split: dict,
    fold,
    seed_index: int,
    workdir: str,
    cpc_checkpoint: str | None,
    name: str,
) -> dict:
    """One supervised run of one fold and seed; returns (and writes) its result."""
    result = workdir_lib.read_result(workdir)
    if result is not None:
        log.info("%s: finished earlier, reading its result in %s", name, workdir)
        return result
    f = config.finetune
    seed = config.seed + seed_index
    train = emo.subset(split["train"])
    label_mean = train.labels.mean(axis=0)
    label_std = np.maximum(train.labels.std(axis=0), 1e-3)
    buckets = pipeline.bucket_lengths(f.buckets)
    batches = pipeline.BucketBatches(
        train,
        buckets,
        f.batch_size,
        seed,
        sharding.process_rows(f.batch_size),
        label_mean,
        label_std,
    )
    state = state_lib.create_state(
        programs.emotion,
        programs.emotion_tx,
        jax.random.key(seed),
        batches.batch(0),
        mesh,
    )
    if cpc_checkpoint is not None and workdir_lib.finished_steps(workdir) == 0:
        params = checkpoint.restore_params(cpc_checkpoint, state.params, build.CPC_KEYS)
        # Adam's moments are zeros of the params' shapes: no need to re-init.
        state = state.replace(params=params)
    dev = emo.subset(split["dev"])
    dev_preds: dict[int, np.ndarray] = {}  # step -> this process' dev predictions

    def dev_ccc(st) -> dict[str, float]:
        preds = dev_preds[int(st.step)] = evaluate.predict_split(
            programs.predict,
            st.params,
            dev,
            buckets,
            f.eval_batch_size,
            mesh,
            label_mean,
            label_std,
        )
        return evaluate.corpus_ccc(preds, dev.labels)

    selection = None
    if len(dev):
        selection = loop.Selection(
            evaluate=dev_ccc, every=f.eval_every, key="avg", patience=f.patience
        )
    state = loop.train(
        name=name,
        workdir=workdir,
        state=state,
        step_fn=programs.emotion_step,
        batches=batches.batch,
        mesh=mesh,
        num_steps=f.num_steps,
        checkpoint_every=f.checkpoint_every,
        log_every=f.log_every,
        rng=jax.random.key(seed + 10_000),
        selection=selection,
    )
    # Model selection sees the dev split only; the test split is read once, here.
    params = checkpoint.restore_best_params(workdir, state.params) or state.params
    best_step = checkpoint.read_best(workdir)["step"]
    result = {
        "fold": fold,
        "seed": seed_index,
        "selected_step": best_step or f.num_steps,
        "label_mean": label_mean.tolist(),
        "label_std": label_std.tolist(),
    }
    for split_name in ("dev", "test"):
        utts = emo.subset(split[split_name])
        # The selected params' dev predictions, when this process made them.
        preds = dev_preds.get(best_step) if split_name == "dev" else None
        if preds is None:
            preds = evaluate.predict_split(
                programs.predict,
                params,
                utts,
                buckets,
                f.eval_batch_size,
                mesh,
                label_mean,
                label_std,
            )
        result[split_name] = {
            "ccc": evaluate.corpus_ccc(preds, utts.labels),
            "names": utts.names.tolist(),
            "preds": preds.tolist(),
            "targets": utts.labels.tolist(),
        }
    if jax.process_index() == 0:
        workdir_lib.write_result(workdir, result)
    log.info(
        "%s: test CCC %s",
        name,
        " ".join(f"{k} {v:.3f}" for k, v in result["test"]["ccc"].items()),
    )
    return result


def run_method(
    config, workdir: str, emo: pipeline.Utterances, programs: dict | None = None
) -> dict:
    """All stages of one method on the emotion corpus `emo`; returns its report row."""
    with Stages(concurrent_runs(config)) as stages:
        return submit_method(config, workdir, emo, programs, stages)()


def submit_method(
    config,
    workdir: str,
    emo: pipeline.Utterances,
    programs: dict | None,
    stages: Stages,
) -> Callable[[], dict]:
    """Submits the training stages of one method to `stages`.

    Returns:
      `finish`: waits for them, then probes, plots and returns the report row.
      The next method's stages may train meanwhile.
    """
    programs = {} if programs is None else programs
    sharding.main_process_first(
        lambda: workdir_lib.claim(config, workdir, write=jax.process_index() == 0),
        f"claim {workdir}",
    )
    mesh = sharding.make_mesh()
    for field in (
        "pretrain.batch_size",
        "finetune.batch_size",
        "finetune.eval_batch_size",
    ):
        stage, name = field.split(".")
        sharding.check_batch_size(config[stage][name], field)
    key = _program_key(config)
    if key not in programs:
        programs[key] = Programs.build(config, mesh)
    prog = programs[key]
    label = config_lib.label(config)
    own_audio = (
        config.pretrain.corpus == config_lib.OWN_AUDIO and not config.pretrain.init_from
    )
    init = config.finetune.init_from
    folds = protocols.folds(
        emo,
        config.corpus,
        tuple(config.folds),
        config.finetune.dev_fraction,
        config.seed,
        config.finetune.dev_split,
    )

    # The encoder and context network each fold's fine-tuning starts from, if
    # any; every CPC stage is queued before the runs that wait for it.
    cpc_checkpoints = dict.fromkeys(folds, stages.done(None))
    if config.pretrain.init_from:
        ckpt_dir = cpc_source(config.pretrain.init_from)[1]
        log.info("%s: no pretraining, starting from %s", label, ckpt_dir)
        cpc_checkpoints = dict.fromkeys(folds, stages.done(ckpt_dir))
    elif init not in ("", config_lib.FROM_PRETRAINING):
        cpc_checkpoints = dict.fromkeys(folds, stages.done(paths.resolve(init)))
    elif init == config_lib.FROM_PRETRAINING and not own_audio:
        unlabeled = sharding.main_process_first(
            lambda: sources.unlabeled_corpus(config), "unlabeled corpus"
        )
        one = stages.submit(
            pretrain_stage,
            config,
            prog,
            mesh,
            unlabeled,
            workdir_lib.pretrain_dir(workdir),
            f"{label} pretrain",
        )
        cpc_checkpoints = dict.fromkeys(folds, one)
    elif own_audio:
        for fold, split in folds.items():
            # Labels unused; the test session's audio stays out of pretraining too.
            audio = emo.subset(np.concatenate([split["train"], split["dev"]]))
            cpc_checkpoints[fold] = stages.submit(
                pretrain_stage,
                config,
                prog,
                mesh,
                audio,
                workdir_lib.pretrain_dir(workdir, fold),
                f"{label} pretrain fold{fold}",
            )

    def one_run(fold, s: int) -> dict:
        return finetune_run(
            config,
            prog,
            mesh,
            emo,
            folds[fold],
            fold,
            s,
            workdir_lib.run_dir(workdir, fold, s),
            cpc_checkpoints[fold].result(),
            f"{label} fold{fold} seed{s}",
        )

    keys = [(fold, s) for fold in folds for s in range(config.seeds)]
    futures = [stages.submit(one_run, fold, s) for fold, s in keys]

    def finish() -> dict:
        results = stages.results(futures)
        checkpoints = {fold: c.result() for fold, c in cpc_checkpoints.items()}
        runs = [
            {
                "fold": fold,
                "seed": s,
                "result": result,
                "preds": np.asarray(result["test"]["preds"]),
                "targets": np.asarray(result["test"]["targets"]),
            }
            for (fold, s), result in zip(keys, results)
        ]
        probe_ccc, tsne = None, None
        if any(checkpoints.values()) and config.analysis.probe:
            try:
                probe_ccc, embeddings = probe.fold_probe(
                    config, emo, folds, checkpoints, mesh
                )
            except ValueError as e:  # e.g. too few training utterances for a probe
                log.warning("%s: no linear probe or t-SNE: %s", label, e)
            else:
                log.info(
                    "%s: linear probe of CPC features, CCC %s",
                    label,
                    " ".join(f"{k} {v:.3f}" for k, v in probe_ccc.items()),
                )
                names = sources.category_names(config)
                tsne = plots.TsneInput(
                    embeddings, emo.categories, names, emo.labels[:, 0]
                )
        if config.analysis.plots and jax.process_index() == 0:
            plots.method_figures(
                workdir,
                label,
                [r["result"] for r in runs if r["seed"] == 0],
                tsne,
                seed=config.seed,
            )
        return report.method_row(
            config.method,
            runs,
            workdir_lib.config_hash(config),
            probe_ccc,
            # Each fold's CPC stage (or the one of all folds) takes config.seed
            # only: the seeds vary fine-tuning.
            pretrained_once=config.finetune.init_from != "" and config.seeds > 1,
        )

    return finish


def cpc_source(directory: str):
    """(model config, checkpoint dir) of an earlier CPC stage or an import."""
    from cpcjax import embed

    try:
        config, ckpt_dir, _ = embed.resolve_source(directory)
    except embed.SourceError as e:
        raise config_lib.ConfigError(f"config.pretrain.init_from: {e}") from None
    return config, ckpt_dir


def adopt_checkpoint_model(config, explicit: Sequence[str] = ()) -> list[str]:
    """With `pretrain.init_from`, the checkpoint's model config wins.

    Its model fields replace the config's, so the recognizer is built around
    the encoder and context network it restores.

    Args:
      config: a method config; changed in place.
      explicit: dotted fields the user set by hand (`model.channels` for
        `--config.model.channels=...`); one the checkpoint contradicts is an
        error rather than silently replaced.

    Returns:
      The fields taken from the checkpoint, as "model.X=value".

    Raises:
      ConfigError: no usable checkpoint there, or an explicit conflict.
    """
    if not config.pretrain.init_from:
        return []
    source, _ = cpc_source(config.pretrain.init_from)
    taken = []
    for key, value in source.model.items():
        if key not in config.model or config.model[key] == value:
            continue
        if f"model.{key}" in explicit:
            raise config_lib.ConfigError(
                f"--config.model.{key}={config.model[key]!r} conflicts with "
                f"{config.pretrain.init_from}, whose model has {key}={value!r}: "
                f"drop the override"
            )
        config.model[key] = value
        taken.append(f"model.{key}={value!r}")
    if taken:
        log.info("model config of %s: %s", config.pretrain.init_from, ", ".join(taken))
    return taken


def run(
    config: ml_collections.ConfigDict, workdir: str, explicit: Sequence[str] = ()
) -> dict:
    """Runs a method config, or every method of a demo config; writes the report.

    `explicit` names the fields set on the command line (see
    `adopt_checkpoint_model`). jax's persistent compilation cache is turned
    on as for the command line (`cli.compilation_cache`), so a notebook's
    rerun, and each method after the first, read back the programs compiled
    before.
    """
    cli.compilation_cache()
    adopt_checkpoint_model(config, explicit)
    method_configs = config_lib.expand(config)
    paths.check_reachable(workdir, "--workdir")
    paths.check_reachable(config.data_dir, "data_dir")
    for c in method_configs:
        config_lib.validate(c)
        sources.check_prepared(c)
    sharding.main_process_first(
        lambda: workdir_lib.claim(config, workdir, write=jax.process_index() == 0),
        f"claim {workdir}",
    )
    # Every method reads the same corpus; one process prepares it if needed.
    emo = sharding.main_process_first(
        lambda: sources.emotion_corpus(config), "emotion corpus"
    )
    programs: dict = {}
    rows, pending = [], []
    # With several workers, the next method's stages train while the main
    # thread probes and plots the one before; with one, each method in turn.
    with Stages(concurrent_runs(config)) as stages:
        for c in method_configs:
            method_dir = workdir_lib.method_dir(
                workdir, c.method if "methods" in config else None
            )
            pending.append(submit_method(c, method_dir, emo, programs, stages))
            if stages.pool is None:
                rows.append(pending.pop()())
        rows += [finish() for finish in pending]
    return report.write(
        workdir,
        config.corpus,
        protocols.protocol_name(config.corpus),
        rows,
        to_disk=jax.process_index() == 0,
    )
