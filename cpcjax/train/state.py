"""Optimizers and replicated train states built from a config."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from cpcjax.train import sharding


def optimizer(stage, frozen: tuple[str, ...] = ()) -> optax.GradientTransformation:
    """Adam with linear warmup then constant rate; `frozen` params never move."""
    schedule = optax.join_schedules(
        [
            optax.linear_schedule(0.0, stage.learning_rate, stage.warmup_steps),
            optax.constant_schedule(stage.learning_rate),
        ],
        [stage.warmup_steps],
    )
    adam = optax.adam(schedule)
    if not frozen:
        return adam
    return optax.multi_transform(
        {"train": adam, "frozen": optax.set_to_zero()},
        lambda params: {k: "frozen" if k in frozen else "train" for k in params},
    )


def create_state(model, tx, rng, example: dict, mesh) -> train_state.TrainState:
    """Initialises params and optimizer state, replicated over `mesh`.

    `example` holds arrays (or ShapeDtypeStructs) with the batch's shapes;
    only wav and lengths are read. The jitted init is shared by every call
    with the same model, optimizer, shapes and mesh, so folds and seeds
    compile it once.
    """
    init = _jitted_init(
        model, tx, tuple(example["wav"].shape), tuple(example["lengths"].shape), mesh
    )
    return init(rng)


# A few models per process at most (a CPC and an emotion model per config).
@functools.lru_cache(maxsize=8)
def _jitted_init(model, tx, wav_shape: tuple, lengths_shape: tuple, mesh):
    """The jitted `rng -> TrainState` of `model` and `tx` at these shapes."""

    def init(rng):
        wav = jnp.zeros(wav_shape, jnp.float32)
        lengths = jnp.full(lengths_shape, wav_shape[1], jnp.int32)
        params = model.init(rng, wav, lengths)["params"]
        return train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)

    return jax.jit(init, out_shardings=sharding.replicated(mesh))
