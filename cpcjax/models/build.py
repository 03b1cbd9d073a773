"""The models of a config, and the dtype they compute in."""

from __future__ import annotations

import jax.numpy as jnp

from cpcjax.constants import FRAME_HOP
from cpcjax.models.cpc import CPC
from cpcjax.models.recognizer import EmotionModel

CPC_KEYS = ("encoder", "context")  # what fine-tuning takes from a CPC checkpoint


def compute_dtype(config):
    """The activations' dtype named by `config.dtype`; params stay float32."""
    return {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[config.dtype]


def _encoder_fields(config) -> dict:
    m = config.model
    return {
        "channels": m.channels,
        "norm": m.norm,
        "context_hidden": m.context_hidden,
        "context_cell": m.context_cell,
        "context_layers": m.context_layers,
        "dtype": compute_dtype(config),
    }


def cpc_model(config) -> CPC:
    """The CPC model (encoder, context, prediction heads) of `config.model`."""
    m = config.model
    return CPC(
        num_steps=m.predict_steps,
        heads=m.predict_heads,
        # Transformer heads are sized for the pretraining window's T - K.
        head_seq_len=config.pretrain.window // FRAME_HOP - m.predict_steps,
        **_encoder_fields(config),
    )


def emotion_model(config) -> EmotionModel:
    """The recognizer of `config`; with prediction heads when jointCPC needs them."""
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
