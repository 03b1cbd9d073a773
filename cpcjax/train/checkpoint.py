"""Orbax checkpoints: save / resume a stage, and hand CPC params to fine-tuning."""

from __future__ import annotations

import math
import threading

import jax
import orbax.checkpoint as ocp

from cpcjax import paths
from cpcjax import workdir as workdir_lib

ITEM = "state"
# Orbax numbers each save and restore from one counter per process, and a
# save's background threads find their signals by that number: stages that
# run on threads of one process (`experiment.Stages`) take turns to start
# theirs. Waiting for a save to finish needs no turn.
_ORBAX = threading.RLock()


def _abstract(tree):
    """ShapeDtypeStructs that keep each leaf's sharding, as restore targets."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


class _Manager(ocp.CheckpointManager):
    """A CheckpointManager that leaves JAX's preemption sync point to the loop.

    Orbax asks JAX whether the sync point is reached, passing the step it
    saves, some of it from a background thread. JAX keeps only the last number
    it was given, and the loop counts steps over all stages
    (`loop.stop_requested`): mixing the two could put the sync point behind
    some process, which would then never stop while the others wait for it.
    The loop saves at the sync point itself.
    """

    def reached_preemption(self, step: int) -> bool:
        del step
        return False


class Checkpoints:
    """The checkpoints of one training stage: async saves, last `keep` kept."""

    def __init__(self, directory: str, keep: int = 3):
        self.directory = paths.resolve(directory)
        with _ORBAX:
            self.manager = _Manager(
                self.directory,
                options=ocp.CheckpointManagerOptions(
                    max_to_keep=keep, enable_async_checkpointing=True, create=True
                ),
            )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state) -> None:
        with _ORBAX:
            self.manager.save(
                step, args=ocp.args.Composite(**{ITEM: ocp.args.PyTreeSave(state)})
            )

    def restore(self, step: int, like):
        """Restores the state saved at `step` into the structure/shardings of `like`.

        The shardings come from `like`, not from the files, so a checkpoint
        written on one device count restores on another.
        """
        abstract = _abstract(like)
        args = ocp.args.PyTreeRestore(
            item=abstract,
            restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
        )
        self.wait()
        with _ORBAX:
            restored = self.manager.restore(
                step, args=ocp.args.Composite(**{ITEM: args})
            )
        return restored[ITEM]

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.wait()
        with _ORBAX:
            self.manager.close()


def restore_params(
    directory: str, params_like: dict, keys=("encoder", "context")
) -> dict:
    """Reads only `params[k]` for k in `keys` from the latest checkpoint in `directory`.

    A partial restore: optimizer state and the other parameters are never
    read, so a CPC checkpoint of any optimizer can seed a recognizer.

    Args:
      directory: a stage's checkpoint directory.
      params_like: params (or abstract params) of the receiving model; gives
        the shapes, dtypes and shardings of the restored sub-trees.
      keys: top-level parameter collections to take.

    Returns:
      `params_like` with the sub-trees under `keys` replaced by the checkpoint's.
    """
    with _ORBAX:
        manager = ocp.CheckpointManager(
            paths.resolve(directory),
            item_handlers={ITEM: ocp.PyTreeCheckpointHandler()},
            options=ocp.CheckpointManagerOptions(read_only=True),
        )
        step = manager.latest_step()
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {directory} to take {keys} from")
        item = {"params": {k: _abstract(params_like[k]) for k in keys}}
        restored = manager.restore(
            step,
            args=ocp.args.Composite(
                **{
                    ITEM: ocp.args.PyTreeRestore(
                        item=item,
                        restore_args=ocp.checkpoint_utils.construct_restore_args(item),
                        partial_restore=True,
                    )
                }
            ),
        )
        manager.close()
    return {**params_like, **restored[ITEM]["params"]}


def read_best(workdir: str) -> dict:
    """{"step", "value"[, "stopped_at"]} of the best dev evaluation of a run so far."""
    best = paths.read_json(paths.join(workdir, workdir_lib.BEST_FILE))
    return {"step": 0, "value": -math.inf} if best is None else best


def write_best(workdir: str, best: dict) -> None:
    paths.write_json(paths.join(workdir, workdir_lib.BEST_FILE), best)


def restore_best_params(workdir: str, params_like):
    """The params model selection kept in `workdir`, or None when it kept none."""
    best = read_best(workdir)
    if not best["step"]:
        return None
    ckpts = Checkpoints(workdir_lib.best_dir(workdir), keep=1)
    try:
        return ckpts.restore(best["step"], params_like)
    finally:
        ckpts.close()
