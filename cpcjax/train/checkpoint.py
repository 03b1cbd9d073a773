"""Orbax checkpoints: save / resume a stage, and hand CPC params to fine-tuning."""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp

ITEM = "state"


def _abstract(tree):
    """ShapeDtypeStructs that keep each leaf's sharding, as restore targets."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


class Checkpoints:
    """The checkpoints of one training stage: async saves, last `keep` kept."""

    def __init__(self, directory: str, keep: int = 3):
        self.directory = os.path.abspath(directory)
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, enable_async_checkpointing=True, create=True),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state) -> None:
        self.manager.save(step, args=ocp.args.Composite(
            **{ITEM: ocp.args.PyTreeSave(state)}))

    def restore(self, step: int, like):
        """Restores the state saved at `step` into the structure/shardings of `like`."""
        restored = self.manager.restore(step, args=ocp.args.Composite(
            **{ITEM: ocp.args.PyTreeRestore(item=_abstract(like))}))
        return restored[ITEM]

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()


def restore_params(directory: str, params_like: dict, keys=("encoder", "context")) -> dict:
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
    manager = ocp.CheckpointManager(
        os.path.abspath(directory),
        item_handlers={ITEM: ocp.PyTreeCheckpointHandler()},
        options=ocp.CheckpointManagerOptions(read_only=True),
    )
    step = manager.latest_step()
    if step is None:
        raise FileNotFoundError(f"no checkpoint in {directory} to take {keys} from")
    item = {"params": {k: _abstract(params_like[k]) for k in keys}}
    restored = manager.restore(step, args=ocp.args.Composite(**{ITEM: ocp.args.PyTreeRestore(
        item=item, restore_args=ocp.checkpoint_utils.construct_restore_args(item),
        partial_restore=True)}))
    manager.close()
    return {**params_like, **restored[ITEM]["params"]}
