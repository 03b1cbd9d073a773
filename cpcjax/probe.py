"""Utterance-level CPC representations and a linear probe of the emotion labels.

The paper shows that CPC, trained without labels, already arranges utterances
by emotion (its t-SNE figure). Here that representation is the mean of the
context vectors c_t over an utterance's valid frames, and a ridge regression
from it to activation / valence / dominance puts a number on what the figure
shows: how much of each dimension is linearly readable from unsupervised
features.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler

from cpcjax import evaluate
from cpcjax.constants import DIMENSIONS, FRAME_HOP
from cpcjax.data import pipeline
from cpcjax.models import build
from cpcjax.train import checkpoint, sharding

# Fine-tuning checkpoints hold these too, so a probe can read a fine-tuned
# encoder as well as a pretrained one.
ENCODER_KEYS = build.CPC_KEYS
DEFAULT_ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0)


@functools.cache
def _embed_fn(model, mesh):
    """The jitted mean-of-c_t program; cached so each bucket shape compiles once."""

    def embed(params, wav, lengths):
        _, c, frame_lens = model.apply(
            {"params": params}, wav, lengths, method="encode"
        )  # c: [B, T, H]
        # c is zero past frame_lens, so a plain sum is the sum over valid frames;
        # padding rows (length 0) divide by 1 and come out as zeros.
        total = jnp.sum(c.astype(jnp.float32), axis=1)  # [B, H]
        return total / jnp.maximum(frame_lens, 1)[:, None].astype(jnp.float32)

    return jax.jit(embed, out_shardings=sharding.replicated(mesh))


def utterance_embeddings(
    cpc_params: dict, config, utts: pipeline.Utterances, mesh, batch_size: int = 32
) -> np.ndarray:
    """Mean context vector of every utterance, each encoded whole.

    Utterances go through the model in the padded, length-bucketed batches of
    evaluation (`config.finetune.buckets`, doubled until the longest fits);
    the encoder and GRU mask padding, so a row does not depend on the batch it
    was in.

    Args:
      cpc_params: params holding "encoder" and "context" (a CPC's, or an
        EmotionModel's); other entries are ignored.
      config: the experiment config the params were trained with (model sizes).
      utts: the utterances to embed.
      mesh: device mesh; batches are split over its data axis.
      batch_size: global utterances per call; a multiple of the device count.

    Returns:
      [N, context_hidden] float32, row i for utterance i of `utts`.
    """
    sharding.check_batch_size(batch_size, "batch_size (utterance_embeddings)")
    params = jax.device_put(
        {k: cpc_params[k] for k in ENCODER_KEYS}, sharding.replicated(mesh)
    )
    embed = _embed_fn(build.cpc_model(config), mesh)
    return evaluate.map_split(
        lambda batch: embed(params, batch["wav"], batch["lengths"]),
        utts,
        pipeline.bucket_lengths(config.finetune.buckets),
        batch_size,
        mesh,
        config.model.context_hidden,
    )


def load_cpc_params(checkpoint_dir: str, config, mesh=None) -> dict:
    """The encoder and context params of the latest checkpoint in `checkpoint_dir`.

    Reads only params["encoder"] and params["context"] (a partial restore), so
    a pretraining or a fine-tuning checkpoint both work.

    Args:
      checkpoint_dir: a stage's `checkpoints/` directory.
      config: the config of the run that wrote it (model sizes).
      mesh: device mesh the params are replicated over; all devices if None.

    Returns:
      {"encoder": ..., "context": ...} as replicated `jax.Array`s.
    """
    mesh = sharding.make_mesh() if mesh is None else mesh
    model = build.cpc_model(config)
    wav = jax.ShapeDtypeStruct((1, FRAME_HOP * 32), jnp.float32)
    lengths = jax.ShapeDtypeStruct((1,), jnp.int32)
    shapes = jax.eval_shape(model.init, jax.random.key(0), wav, lengths)["params"]
    rep = sharding.replicated(mesh)
    like = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=rep),
        {k: shapes[k] for k in ENCODER_KEYS},
    )
    return checkpoint.restore_params(checkpoint_dir, like, ENCODER_KEYS)


def linear_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    holdout: float = 0.1,
    seed: int = 0,
) -> dict:
    """Ridge regression of activation / valence / dominance from fixed features.

    Features are standardised with the training set's mean and std. The ridge
    penalty is chosen per dimension by CCC (the paper's metric, not the MSE
    that RidgeCV would use) on a random `holdout` fraction of the training
    set, then the model is refit on the whole training set with those
    penalties. The test set is never looked at before the final prediction.

    Args:
      train_x: [N, H] training features.
      train_y: [N, 3] training labels (activation, valence, dominance).
      test_x: [M, H] test features.
      test_y: [M, 3] test labels.
      alphas: candidate ridge penalties.
      holdout: fraction of the training set used to choose the penalties.
      seed: seed of the holdout split.

    Returns:
      {"act", "val", "dom", "avg"}: test CCC; "preds": [M, 3] test predictions;
      "alphas": {"act", "val", "dom"} the chosen penalties.
    """
    train_x, test_x = np.asarray(train_x, np.float64), np.asarray(test_x, np.float64)
    train_y, test_y = np.asarray(train_y, np.float64), np.asarray(test_y, np.float64)
    if len(train_x) < 10:
        raise ValueError(
            f"linear_probe: {len(train_x)} training rows are too few to "
            "hold some out for choosing the ridge penalty"
        )
    order = np.random.default_rng(seed).permutation(len(train_x))
    n_held = max(2, int(round(holdout * len(train_x))))
    held, fit = order[:n_held], order[n_held:]

    scaler = StandardScaler().fit(train_x[fit])
    fit_x, held_x = scaler.transform(train_x[fit]), scaler.transform(train_x[held])
    scores = []  # [num_alphas, 3] holdout CCC
    for a in alphas:
        ridge = Ridge(alpha=a).fit(fit_x, train_y[fit])
        ccc = evaluate.corpus_ccc(ridge.predict(held_x), train_y[held])
        scores.append([ccc[d] for d in DIMENSIONS])
    best = np.asarray(alphas, np.float64)[np.argmax(np.asarray(scores), axis=0)]  # [3]

    scaler = StandardScaler().fit(train_x)
    # Ridge takes one penalty per target column.
    model = Ridge(alpha=best).fit(scaler.transform(train_x), train_y)
    preds = model.predict(scaler.transform(test_x)).astype(np.float32)  # [M, 3]
    out = evaluate.corpus_ccc(preds, test_y)
    out["preds"] = preds
    out["alphas"] = {d: float(a) for d, a in zip(DIMENSIONS, best)}
    return out


def fold_probe(config, emo, folds: dict, checkpoints: dict, mesh):
    """Linear probe of the frozen CPC features of every fold, pooled.

    No label reaches the CPC features: the probe fits a ridge regression on
    the utterance means of c_t of each fold's training utterances and
    predicts its test utterances; the table gets the CCC pooled over folds.

    Args:
      config: the method's config.
      emo: the emotion corpus.
      folds: fold -> {"train", "dev", "test"} row indices into `emo`.
      checkpoints: fold -> the CPC checkpoint directory its recognizer started
        from (one for every fold, or one per fold).
      mesh: the device mesh.

    Returns:
      (pooled CCC per dimension and avg, the embeddings [N, H] of every
      utterance under the first fold's checkpoint, for the t-SNE).
    """
    embeddings: dict[str, np.ndarray] = {}  # one pass per distinct checkpoint
    preds, targets = [], []
    for fold, split in folds.items():
        ckpt = checkpoints[fold]
        if ckpt not in embeddings:
            params = load_cpc_params(ckpt, config, mesh)
            embeddings[ckpt] = utterance_embeddings(
                params, config, emo, mesh, config.finetune.eval_batch_size
            )
        x = embeddings[ckpt]
        train = np.concatenate([split["train"], split["dev"]])
        fit = linear_probe(
            x[train],
            emo.labels[train],
            x[split["test"]],
            emo.labels[split["test"]],
            seed=config.seed,
        )
        preds.append(fit["preds"])
        targets.append(emo.labels[split["test"]])
    pooled = evaluate.corpus_ccc(np.concatenate(preds), np.concatenate(targets))
    return pooled, embeddings[checkpoints[next(iter(folds))]]
