"""Data-parallel sharding: one mesh axis, params replicated, batches split."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from cpcjax.config import ConfigError

DATA_AXIS = "data"


def make_mesh() -> jax.sharding.Mesh:
    """A 1-D mesh over every device of every process, with Auto axes.

    Auto (not the Explicit default of `jax.make_mesh`) because `nn.RNN`'s scan
    does not trace under Explicit axes.
    """
    return jax.make_mesh(
        (jax.device_count(),),
        (DATA_AXIS,),
        axis_types=(jax.sharding.AxisType.Auto,),
    )


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(global_batch: int, field: str) -> None:
    """Global batches are split evenly over processes and devices."""
    n = jax.device_count()
    if global_batch % n:
        raise ConfigError(
            f"config.{field}={global_batch} is not divisible by the {n} devices; "
            f"use a multiple of {n}"
        )


def process_rows(global_batch: int) -> slice:
    """The rows of a global batch that this process loads."""
    per_process = global_batch // jax.process_count()
    start = jax.process_index() * per_process
    return slice(start, start + per_process)


def to_global(local: dict[str, np.ndarray], mesh) -> dict[str, jax.Array]:
    """This process' rows -> global `jax.Array`s sharded on the data axis."""
    sharding = batch_sharding(mesh)
    return {
        k: jax.make_array_from_process_local_data(sharding, v) for k, v in local.items()
    }


def main_process_first(fn, name: str):
    """Runs `fn` on process 0, then on the others: one process prepares a
    corpus or writes a file, the rest read what it made.

    The others wait in a device collective, with no timeout: preparing a
    corpus may take hours. A process that dies meanwhile ends the wait for the
    rest, at once (the collective loses a connection) or once its heartbeats
    stop (`main.HEARTBEAT_TIMEOUT_S`).
    """
    if jax.process_count() == 1:
        return fn()
    from jax.experimental import multihost_utils

    result = fn() if jax.process_index() == 0 else None
    multihost_utils.sync_global_devices(name)
    return result if jax.process_index() == 0 else fn()
