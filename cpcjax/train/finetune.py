"""The emotion step (CCC loss, plus lambda * InfoNCE for jointCPC) and prediction."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from cpcjax import losses
from cpcjax.train.pretrain import cpc_terms


def make_step(model, config):
    """`(state, batch, rng) -> (state, metrics)` for supervised training."""
    f = config.finetune

    def step(state, batch, rng):
        rng = jax.random.fold_in(rng, state.step)
        dropout_rng, neg_rng = jax.random.split(rng)

        def loss_fn(params):
            out = model.apply(
                {"params": params},
                batch["wav"],
                batch["lengths"],
                deterministic=False,
                rngs={"dropout": dropout_rng},
            )
            loss, cccs = losses.ccc_loss(
                out["preds"],
                batch["targets"],
                batch["weights"],
                alpha=f.alpha,
                beta=f.beta,
            )
            metrics = {
                "ccc_loss": loss,
                "ccc_act": cccs[0],
                "ccc_val": cccs[1],
                "ccc_dom": cccs[2],
            }
            if f.cpc_weight > 0:
                nce, acc = cpc_terms(out, neg_rng, config.model)
                loss = loss + f.cpc_weight * nce
                metrics.update(info_nce=nce, cpc_accuracy=acc)
            return loss, metrics

        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        return state.apply_gradients(grads=grads), {"loss": loss, **metrics}

    return step


def make_predict(model):
    """`(params, batch) -> preds [B, 3]` on the standardised label scale."""

    def predict(params, batch):
        out = model.apply({"params": params}, batch["wav"], batch["lengths"])
        return out["preds"].astype(jnp.float32)

    return predict
