"""Predictions for a whole split and corpus-level CCC."""

from __future__ import annotations

import numpy as np

from cpcjax import losses
from cpcjax.constants import DIMENSIONS
from cpcjax.data import pipeline
from cpcjax.train import sharding


def map_split(
    fn, utts: pipeline.Utterances, buckets, global_batch: int, mesh, width: int
) -> np.ndarray:
    """[N, width] rows of `fn(batch)` for every utterance of `utts`, each whole.

    Args:
      fn: jitted `batch -> [B, width]` with replicated output; `batch` holds
        global "wav", "lengths" and "weights".
      utts: the split.
      buckets: bucket lengths in samples (doubled until the longest fits).
      global_batch: utterances per call (fewer in a bucket's last calls:
        `pipeline.eval_batches`).
      mesh: device mesh.
      width: columns of fn's output.
    """
    out = np.zeros((len(utts), width), np.float32)
    for ids, local in pipeline.eval_batches(
        utts, buckets, global_batch, mesh.devices.size, sharding.process_rows
    ):
        values = np.asarray(fn(sharding.to_global(local, mesh)))
        keep = ids >= 0
        out[ids[keep]] = values[keep]
    return out


def predict_split(
    predict,
    params,
    utts: pipeline.Utterances,
    buckets,
    global_batch: int,
    mesh,
    label_mean: np.ndarray,
    label_std: np.ndarray,
) -> np.ndarray:
    """[N, 3] predictions on the label scale for every utterance of `utts`.

    Args:
      predict: jitted `(params, batch) -> preds` with replicated output.
      params: model params.
      utts: the split.
      buckets: bucket lengths in samples.
      global_batch: utterances per predict call.
      mesh: device mesh.
      label_mean, label_std: the standardisation of the training targets.
    """
    preds = map_split(
        lambda batch: predict(params, batch), utts, buckets, global_batch, mesh, 3
    )
    return preds * label_std + label_mean


def corpus_ccc(preds: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """CCC per dimension over all predictions of a split, and their mean."""
    cccs = np.asarray(
        losses.ccc(
            np.asarray(preds, np.float64), np.asarray(targets, np.float64), axis=0
        )
    )
    out = {d: float(v) for d, v in zip(DIMENSIONS, cccs)}
    out["avg"] = float(np.mean(cccs))
    return out
