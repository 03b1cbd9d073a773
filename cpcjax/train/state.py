"""Optimizers and replicated train states built from a config."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from cpcjax.train import sharding


def _schedule(learning_rate: float, warmup_steps: int, delay: int = 0):
    """0 for `delay` steps, then a linear warmup to `learning_rate`, then constant."""
    parts = [
        optax.linear_schedule(0.0, learning_rate, warmup_steps),
        optax.constant_schedule(learning_rate),
    ]
    bounds = [warmup_steps]
    if delay:
        parts, bounds = (
            [optax.constant_schedule(0.0), *parts],
            [delay, delay + warmup_steps],
        )
    return optax.join_schedules(parts, bounds)


def optimizer(stage, cpc_keys: tuple[str, ...] = ()) -> optax.GradientTransformation:
    """Adam with linear warmup then a constant rate.

    With `cpc_keys` (the fine-tuning stage's encoder and context network),
    those params follow the stage's own recipe for them: frozen
    (`freeze_cpc`), or held still for the first `freeze_steps` and then
    trained at `encoder_lr_scale` times the head's rate, after a warmup of
    their own.
    """
    adam = optax.adam(_schedule(stage.learning_rate, stage.warmup_steps))
    if not cpc_keys:
        return adam
    if stage.freeze_cpc:
        # The state's part names of checkpoints written before the recipe.
        return _split(adam, optax.set_to_zero(), cpc_keys, ("train", "frozen"))
    if stage.encoder_lr_scale == 1 and stage.freeze_steps == 0:
        return adam
    cpc = optax.adam(
        _schedule(
            stage.learning_rate * stage.encoder_lr_scale,
            stage.warmup_steps,
            delay=stage.freeze_steps,
        )
    )
    return _split(adam, cpc, cpc_keys, ("head", "cpc"))


def _split(head, cpc, cpc_keys, names: tuple[str, str]):
    """`cpc` for the top-level params in `cpc_keys`, `head` for the rest."""
    return optax.multi_transform(
        {names[0]: head, names[1]: cpc},
        lambda params: {k: names[1] if k in cpc_keys else names[0] for k in params},
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
