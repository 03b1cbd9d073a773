"""Utterance embeddings, the linear probe, and the figures."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import make_source
from PIL import Image

from cpcjax import config as config_lib
from cpcjax import plots, probe
from cpcjax import workdir as workdir_lib
from cpcjax.data import pipeline
from cpcjax.models import build
from cpcjax.train import sharding


def tiny_config():
    c = config_lib.load("pre_cpc:synthetic")
    c.model.channels = 16
    c.model.context_hidden = 16
    c.finetune.buckets = (1.0,)
    return c


def _png_size(path):
    assert os.path.getsize(path) > 0
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


# --- linear probe ---------------------------------------------------------------


def test_linear_probe_recovers_a_linear_map():
    rng = np.random.default_rng(0)
    scales = rng.uniform(0.1, 10, 20)  # unequal feature scales: standardising matters
    x = rng.standard_normal((500, 20)) * scales
    w = rng.standard_normal((20, 3)) / scales[:, None]
    clean = 3 + x @ w
    y = clean + 0.1 * clean.std(axis=0) * rng.standard_normal(clean.shape)
    out = probe.linear_probe(x[:400], y[:400], x[400:], y[400:])
    for d in ("act", "val", "dom", "avg"):
        assert out[d] > 0.95, (d, out[d])
    assert out["preds"].shape == (100, 3)
    assert set(out["alphas"]) == {"act", "val", "dom"}


def test_linear_probe_finds_nothing_in_noise():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((800, 16))
    y = rng.uniform(1, 5, (800, 3))
    out = probe.linear_probe(x[:600], y[:600], x[600:], y[600:])
    for d in ("act", "val", "dom"):
        assert abs(out[d]) < 0.15, (d, out[d])


# --- utterance embeddings --------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_cpc():
    c = tiny_config()
    model = build.cpc_model(c)
    params = model.init(jax.random.key(0), jnp.zeros((1, 3200)), jnp.array([3200]))[
        "params"
    ]
    # Lengths from 0.25 s to 1.6 s: buckets 1 s and 2 s, most rows padded.
    utts = pipeline.index_source(
        make_source(12, labeled=True, seed=3, min_len=4000, max_len=26000),
        labeled=True,
        desc="test",
    )
    return c, params, utts


def test_utterance_embeddings_are_mean_context_independent_of_batching(tiny_cpc):
    c, params, utts = tiny_cpc
    mesh = sharding.make_mesh()
    emb = probe.utterance_embeddings(params, c, utts, mesh, batch_size=8)
    assert emb.shape == (len(utts), c.model.context_hidden)
    assert np.all(np.isfinite(emb)) and np.abs(emb).sum(axis=1).min() > 0

    # Row i alone (7 padding rows around it, its own bucket) and in a reordered
    # subset give the same vector as in the full, padded batches.
    for i in (0, 5, 11):
        alone = probe.utterance_embeddings(
            params, c, utts.subset([i]), mesh, batch_size=8
        )
        np.testing.assert_allclose(alone[0], emb[i], atol=1e-5)
    order = np.array([11, 3, 7, 0])
    np.testing.assert_allclose(
        probe.utterance_embeddings(params, c, utts.subset(order), mesh, batch_size=8),
        emb[order],
        atol=1e-5,
    )

    # The mean over exactly the valid frames of the unpadded utterance.
    model = build.cpc_model(c)
    wav = utts.audio(5)[None]
    _, ctx, _ = model.apply({"params": params}, wav, method="encode")
    np.testing.assert_allclose(np.asarray(ctx[0]).mean(axis=0), emb[5], atol=1e-5)


def test_utterance_embeddings_take_an_emotion_models_encoder(tiny_cpc):
    c, params, utts = tiny_cpc
    mesh = sharding.make_mesh()
    emotion_like = {
        "encoder": params["encoder"],
        "context": params["context"],
        "head": {"w": jnp.ones(3)},
    }
    two = utts.subset([1, 2])
    np.testing.assert_array_equal(
        probe.utterance_embeddings(emotion_like, c, two, mesh, batch_size=8),
        probe.utterance_embeddings(params, c, two, mesh, batch_size=8),
    )


# --- figures ----------------------------------------------------------------------


def _write_jsonl(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)


def _fake_result(rng, n=30, fold=1, seed=0):
    targets = rng.uniform(1, 5, (n, 3))
    preds = targets + 0.3 * rng.standard_normal((n, 3))
    split = {
        "ccc": {"act": 0.8, "val": 0.3, "dom": 0.7, "avg": 0.6},
        "names": [f"u{i}" for i in range(n)],
        "preds": preds.tolist(),
        "targets": targets.tolist(),
    }
    return {
        "fold": fold,
        "seed": seed,
        "label_mean": [3] * 3,
        "label_std": [1] * 3,
        "dev": split,
        "test": split,
    }


def test_training_curves_draws_pretrain_and_finetune_panels(tmp_path):
    rng = np.random.default_rng(0)
    _write_jsonl(
        tmp_path / "pretrain" / "metrics.jsonl",
        [{"step": s, "loss": 40 - s, "cpc_accuracy": s / 20} for s in range(1, 21)],
    )
    for fold in (1, 2):
        run = tmp_path / "finetune" / f"fold{fold}" / "seed0"
        _write_jsonl(
            run / "metrics.jsonl",
            [
                {
                    "step": s,
                    "loss": 1 - s / 20,
                    "ccc_loss": 1 - s / 20,
                    "ccc_act": s / 20,
                    "ccc_val": s / 40,
                    "ccc_dom": s / 30,
                }
                for s in range(1, 11)
            ],
        )
        with open(run / "result.json", "w") as fh:
            json.dump(_fake_result(rng, fold=fold), fh)
    with open(tmp_path / "config.json", "w") as fh:
        json.dump({"method": "pre_cpc"}, fh)
    out = plots.training_curves(
        str(tmp_path), str(tmp_path / "png" / "curves.png"), dpi=50
    )
    # 6 panels: 3 columns x 2 rows of 3.6 x 3.0 in, plus 0.6 in for the legend.
    assert _png_size(out) == (round(3 * 3.6 * 50), round((2 * 3.0 + 0.6) * 50))

    runs = workdir_lib.find_stages(str(tmp_path))
    assert [(r["kind"], r["method"], r["result"] is not None) for r in runs] == [
        ("finetune", "pre_cpc", True),
        ("finetune", "pre_cpc", True),
        ("pretrain", "pre_cpc", False),
    ]


def test_training_curves_without_metrics_fails(tmp_path):
    with pytest.raises(FileNotFoundError):
        plots.training_curves(str(tmp_path), str(tmp_path / "x.png"))


def test_predicted_vs_true_writes_three_panels(tmp_path):
    rng = np.random.default_rng(0)
    out = plots.predicted_vs_true(
        [_fake_result(rng, fold=k) for k in (1, 2, 3)],
        str(tmp_path / "pvt.png"),
        dpi=50,
    )
    assert _png_size(out) == (round(12.6 * 50), round(4.6 * 50))


def test_tsne_returns_two_dimensional_coordinates(tmp_path):
    rng = np.random.default_rng(0)
    categories = np.repeat(np.arange(4), 10)
    categories[0] = -1
    emb = rng.standard_normal((40, 8)) + 8 * np.eye(8)[np.maximum(categories, 0)]
    out, coords = plots.tsne(
        emb,
        categories,
        ("neu", "hap", "sad", "ang"),
        rng.uniform(1, 5, 40),
        str(tmp_path / "tsne.png"),
        dpi=50,
    )
    assert coords.shape == (40, 2) and np.all(np.isfinite(coords))
    assert _png_size(out) == (round(12 * 50), round(5.2 * 50))
    # Well separated clusters stay together: each point's nearest neighbour
    # shares its category.
    dist = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    np.fill_diagonal(dist, np.inf)
    nearest = dist.argmin(axis=1)
    assert np.mean(categories[nearest][1:] == categories[1:]) > 0.9
