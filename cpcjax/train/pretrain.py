"""The CPC pretraining step: InfoNCE over future frames."""

from __future__ import annotations

import jax

from cpcjax import losses
from cpcjax.models.cpc import sample_negatives


def cpc_terms(out: dict, rng, model_cfg) -> tuple[jax.Array, jax.Array]:
    """InfoNCE loss and accuracy of a model output with z, zhat, frame_lens."""
    neg_idx = sample_negatives(
        rng,
        out["frame_lens"],
        out["z"].shape[1],
        model_cfg.predict_steps,
        model_cfg.num_negatives,
        model_cfg.negatives_group_size,
    )
    return losses.info_nce(
        out["zhat"],
        out["z"],
        neg_idx,
        out["frame_lens"],
        model_cfg.negatives_group_size,
    )


def make_step(model, model_cfg):
    """`(state, batch, rng) -> (state, metrics)` for CPC pretraining."""

    def step(state, batch, rng):
        rng = jax.random.fold_in(rng, state.step)

        def loss_fn(params):
            out = model.apply({"params": params}, batch["wav"], batch["lengths"])
            return cpc_terms(out, rng, model_cfg)

        (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        return state.apply_gradients(grads=grads), {"loss": loss, "cpc_accuracy": acc}

    return step
