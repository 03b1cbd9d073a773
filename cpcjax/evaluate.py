"""Predictions for a whole split and corpus-level CCC."""

from __future__ import annotations

import numpy as np

from cpcjax import losses
from cpcjax.data import pipeline
from cpcjax.train import sharding

DIMENSIONS = ("act", "val", "dom")


def predict_split(predict, params, utts: pipeline.Utterances, buckets, global_batch: int,
                  mesh, label_mean: np.ndarray, label_std: np.ndarray) -> np.ndarray:
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
    out = np.zeros((len(utts), 3), np.float32)
    rows = sharding.process_rows(global_batch)
    for ids, local in pipeline.eval_batches(utts, buckets, global_batch, rows):
        preds = np.asarray(predict(params, sharding.to_global(local, mesh)))
        keep = ids >= 0
        out[ids[keep]] = preds[keep]
    return out * label_std + label_mean


def corpus_ccc(preds: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """CCC per dimension over all predictions of a split, and their mean."""
    cccs = np.asarray(losses.ccc(np.asarray(preds, np.float64),
                                 np.asarray(targets, np.float64), axis=0))
    out = {d: float(v) for d, v in zip(DIMENSIONS, cccs)}
    out["avg"] = float(np.mean(cccs))
    return out
