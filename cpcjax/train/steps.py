"""The train steps of every stage, and the programs a config compiles.

CPC pretraining minimises InfoNCE over future frames; the emotion step
minimises the CCC loss, plus `cpc_weight` times InfoNCE for jointCPC.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from cpcjax import losses
from cpcjax.models import build
from cpcjax.train import sharding
from cpcjax.train import state as state_lib


def cpc_terms(out: dict, rng, model_cfg, speakers=None) -> tuple[jax.Array, jax.Array]:
    """InfoNCE loss and accuracy of a model output with z, zhat, frame_lens.

    Args:
        out: the model's output.
        rng: PRNG key of the negatives.
        model_cfg: config.model (negatives, score, heads).
        speakers: [B] int speaker ids; needed for model.negatives='speaker'.
    """
    z, frame_lens = out["z"], out["frame_lens"]
    num_frames, steps = z.shape[1], model_cfg.predict_steps
    # Transformer heads predict from the first T - K positions only.
    positions = num_frames - steps if model_cfg.predict_heads == "transformer" else None
    scale = 1.0 / z.shape[-1] if model_cfg.score == "scaled" else 1.0
    if model_cfg.negatives in ("speaker", "shared_groups"):
        pools = (
            speakers
            if model_cfg.negatives == "speaker"
            else losses.group_pools(z.shape[0], model_cfg.negatives_group_size)
        )
        neg_idx = losses.sample_pool_negatives(
            rng, pools, frame_lens, num_frames, model_cfg.num_negatives
        )  # [B, T, N-1]
        return losses.info_nce_shared(
            out["zhat"],
            z,
            neg_idx[:, : positions or num_frames],
            frame_lens,
            positions=positions,
            scale=scale,
        )
    neg_idx = losses.sample_negatives(
        rng,
        frame_lens,
        num_frames,
        steps,
        model_cfg.num_negatives,
        model_cfg.negatives_group_size,
    )
    return losses.info_nce(
        out["zhat"],
        z,
        neg_idx,
        frame_lens,
        model_cfg.negatives_group_size,
        positions=positions,
        scale=scale,
    )


def make_pretrain_step(model, model_cfg):
    """`(state, batch, rng) -> (state, metrics)` for CPC pretraining."""

    def step(state, batch, rng):
        rng = jax.random.fold_in(rng, state.step)
        # The negatives keep the step's key, as before the heads had dropout.
        dropout_rng = jax.random.fold_in(rng, 1)

        def loss_fn(params):
            out = model.apply(
                {"params": params},
                batch["wav"],
                batch["lengths"],
                deterministic=False,
                rngs={"dropout": dropout_rng},
            )
            return cpc_terms(out, rng, model_cfg, batch.get("speakers"))

        (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        return state.apply_gradients(grads=grads), {"loss": loss, "cpc_accuracy": acc}

    return step


def make_finetune_step(model, config):
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


@dataclasses.dataclass
class Programs:
    """Models, optimizers and jitted functions of a config.

    Built once and reused by every fold and seed, so each program compiles
    once per shape rather than once per run.
    """

    cpc: object
    emotion: object
    cpc_tx: object
    emotion_tx: object
    cpc_step: object
    emotion_step: object
    predict: object

    @classmethod
    def build(cls, config, mesh) -> Programs:
        """Builds the models and jits their steps, replicated over `mesh`."""
        rep = sharding.replicated(mesh)
        cpc = build.cpc_model(config)
        emotion = build.emotion_model(config)
        return cls(
            cpc=cpc,
            emotion=emotion,
            cpc_tx=state_lib.optimizer(config.pretrain),
            emotion_tx=state_lib.optimizer(config.finetune, build.CPC_KEYS),
            cpc_step=jax.jit(
                make_pretrain_step(cpc, config.model),
                out_shardings=(rep, rep),
                donate_argnums=0,
            ),
            emotion_step=jax.jit(
                make_finetune_step(emotion, config),
                out_shardings=(rep, rep),
                donate_argnums=0,
            ),
            predict=jax.jit(make_predict(emotion), out_shardings=rep),
        )
