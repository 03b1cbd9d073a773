"""Models, optimizers and replicated train states built from a config."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from cpcjax.models.cpc import CPC
from cpcjax.models.recognizer import EmotionModel
from cpcjax.train import sharding

CPC_KEYS = ("encoder", "context")  # what fine-tuning takes from a CPC checkpoint


def compute_dtype(config):
    return {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[config.dtype]


def _encoder_fields(config) -> dict:
    m = config.model
    return dict(
        channels=m.channels,
        norm=m.norm,
        context_hidden=m.context_hidden,
        dtype=compute_dtype(config),
    )


def cpc_model(config) -> CPC:
    return CPC(num_steps=config.model.predict_steps, **_encoder_fields(config))


def emotion_model(config) -> EmotionModel:
    m, f = config.model, config.finetune
    return EmotionModel(
        num_heads=m.attention_heads,
        d_model=m.d_model,
        mlp_hidden=m.mlp_hidden,
        dropout=m.dropout,
        num_steps=m.predict_steps,
        with_predict_heads=f.cpc_weight > 0,
        freeze_cpc=f.freeze_cpc,
        **_encoder_fields(config),
    )


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
    only wav and lengths are read.
    """

    def init(rng):
        wav = jnp.zeros(example["wav"].shape, jnp.float32)
        lengths = jnp.full(example["lengths"].shape, example["wav"].shape[1], jnp.int32)
        params = model.init(rng, wav, lengths)["params"]
        return train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)

    return jax.jit(init, out_shardings=sharding.replicated(mesh))(rng)
