"""Figures of a run: training curves, predictions against labels, and a t-SNE.

Every function writes one PNG and returns its path. Figures are drawn on
matplotlib's Agg canvas directly, without pyplot, so plotting needs no
display and leaves no global figure state behind.
"""

from __future__ import annotations

import collections
import dataclasses
import io
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from sklearn.manifold import TSNE
from sklearn.preprocessing import StandardScaler

from cpcjax import config as config_lib
from cpcjax import evaluate, paths
from cpcjax import workdir as workdir_lib
from cpcjax.constants import DIMENSION_NAMES, DIMENSIONS

DPI = 120
# (stage kind, metrics key, panel title, y label); the panels of training_curves.
# Fine-tuning shows ccc_loss rather than loss: jointCPC's loss adds InfoNCE,
# which is 40 times larger and would flatten every other method's curve.
CURVE_PANELS = (
    ("pretrain", "loss", "Pretraining: InfoNCE loss", "InfoNCE"),
    ("pretrain", "cpc_accuracy", "Pretraining: CPC accuracy", "accuracy"),
    ("finetune", "ccc_loss", "Fine-tuning: CCC loss", "1 - weighted CCC"),
    ("finetune", "ccc_act", "Fine-tuning: batch CCC, activation", "CCC"),
    ("finetune", "ccc_val", "Fine-tuning: batch CCC, valence", "CCC"),
    ("finetune", "ccc_dom", "Fine-tuning: batch CCC, dominance", "CCC"),
)
PANELS_PER_ROW = 3


def _save(fig: Figure, out_path: str, dpi: int) -> str:
    # Drawn into memory and written whole: matplotlib writes local files
    # only, and a figure is never left half-written.
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    paths.write_bytes(out_path, buffer.getvalue())
    return out_path


def _stages(workdir: str) -> list[dict]:
    """The stages of `workdir` with their metrics read and method labelled."""
    stages = workdir_lib.find_stages(workdir)
    for stage in stages:
        method = stage["method"]
        stage["method"] = config_lib.METHOD_NAMES.get(method, method or "run")
        stage["lines"] = paths.read_jsonl(stage["metrics"])
    return stages


def _series(lines: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    rows = [(l["step"], l[key]) for l in lines if key in l and "step" in l]
    if not rows:
        return np.zeros(0), np.zeros(0)
    steps, values = np.asarray(rows, np.float64).T
    return steps, values


def training_curves(workdir: str, out_path: str, dpi: int = DPI) -> str:
    """Loss and accuracy / batch CCC against step for every stage under `workdir`.

    One panel per (stage kind, metric); each run is a light line in its
    method's colour, each method's mean over its runs a dark one. A fine-tuning
    run that finished (result.json) adds the dev-split CCC of its selected
    params as a marker at the selected step on the matching CCC panel.

    Args:
      workdir: a method's workdir, or a demo workdir holding several.
      out_path: the PNG to write.
      dpi: resolution; the figure is 3.6 x 3.0 inches per panel.

    Returns:
      out_path.

    Raises:
      FileNotFoundError: if no stage under `workdir` wrote a metrics.jsonl.
    """
    runs = _stages(workdir)
    if not runs:
        raise FileNotFoundError(f"no {workdir_lib.METRICS_FILE} under {workdir}")
    panels = [
        p
        for p in CURVE_PANELS
        if any(r["kind"] == p[0] and _series(r["lines"], p[1])[0].size for r in runs)
    ]
    methods = list(dict.fromkeys(r["method"] for r in runs))
    colors = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    ncols = min(PANELS_PER_ROW, len(panels))
    nrows = -(-len(panels) // ncols)
    fig = Figure(figsize=(3.6 * ncols, 3.0 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(panels) :]:
        ax.set_axis_off()
    has_dev = False
    for ax, (kind, key, title, ylabel) in zip(axes, panels):
        by_method = collections.defaultdict(list)
        for r in (r for r in runs if r["kind"] == kind):
            steps, values = _series(r["lines"], key)
            if not steps.size:
                continue
            ax.plot(steps, values, color=colors[r["method"]], alpha=0.25, lw=0.8)
            by_method[r["method"]].append((steps, values))
            dim = key.removeprefix("ccc_")
            if r["result"] is not None and dim in DIMENSION_NAMES:
                at = r["result"].get("selected_step", steps[-1])
                ax.plot(
                    at,
                    r["result"]["dev"]["ccc"][dim],
                    "o",
                    ms=5,
                    mec="k",
                    mew=0.6,
                    color=colors[r["method"]],
                    zorder=3,
                )
                has_dev = True
        for method, series in by_method.items():
            # The mean only over the steps every run logged, so runs of
            # different lengths do not make the curve jump; a method with one
            # run gets that run drawn dark, so it stays visible under the light
            # lines of methods with many.
            common = sorted(set.intersection(*(set(s.tolist()) for s, _ in series)))
            if common:
                mean = np.mean([v[np.isin(s, common)] for s, v in series], axis=0)
                ax.plot(common, mean, color=colors[method], lw=1.6)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=colors[m], lw=1.6, label=m) for m in methods]
    if has_dev:
        handles.append(
            Line2D(
                [],
                [],
                ls="",
                marker="o",
                color="0.6",
                mec="k",
                mew=0.6,
                label="dev CCC, selected step",
            )
        )
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncols=len(handles),
        fontsize=9,
        frameon=False,
    )
    fig.suptitle(
        f"Training curves: {paths.name(workdir)} "
        f"({len(runs)} stages; light = one run, dark = mean over runs)",
        fontsize=11,
    )
    return _save(fig, out_path, dpi)


def predicted_vs_true(
    results: Sequence[dict], out_path: str, title: str | None = None, dpi: int = DPI
) -> str:
    """Test predictions against labels, pooled over the given runs.

    Args:
      results: result.json dicts (one per fold of one seed, to pool each test
        utterance once); reads result["test"]["preds"] and ["targets"].
      out_path: the PNG to write.
      title: figure title; a count of utterances and runs if None.
      dpi: resolution; the figure is 12.6 x 4.6 inches.

    Returns:
      out_path.
    """
    preds = np.concatenate(
        [np.asarray(r["test"]["preds"], np.float64) for r in results]
    )  # [N, 3]
    targets = np.concatenate(
        [np.asarray(r["test"]["targets"], np.float64) for r in results]
    )  # [N, 3]
    ccc = evaluate.corpus_ccc(preds, targets)
    fig = Figure(figsize=(12.6, 4.6), layout="constrained")
    axes = fig.subplots(1, 3)
    for j, (ax, dim) in enumerate(zip(axes, DIMENSIONS)):
        ax.scatter(targets[:, j], preds[:, j], s=10, alpha=0.45, lw=0)
        lo = min(targets[:, j].min(), preds[:, j].min())
        hi = max(targets[:, j].max(), preds[:, j].max())
        pad = 0.05 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=1, label="y = x")
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_title(f"{DIMENSION_NAMES[dim].capitalize()} (CCC {ccc[dim]:.3f})")
        ax.set_xlabel(f"true {DIMENSION_NAMES[dim]}")
        ax.set_ylabel(f"predicted {DIMENSION_NAMES[dim]}")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=9)
    if title is None:
        title = (
            f"Test predictions vs labels: {len(preds)} utterances from "
            f"{len(results)} runs (mean CCC {ccc['avg']:.3f})"
        )
    fig.suptitle(title)
    return _save(fig, out_path, dpi)


def tsne(
    embeddings: np.ndarray,
    categories: np.ndarray,
    category_names: Sequence[str],
    activation: np.ndarray,
    out_path: str,
    seed: int = 0,
    title: str | None = None,
    dpi: int = DPI,
) -> tuple[str, np.ndarray]:
    """The paper's figure: a 2-D t-SNE of utterance embeddings, by emotion.

    Embeddings are standardised per dimension first, so no single large
    coordinate decides the neighbourhoods. Perplexity is min(30, (N - 1) / 3),
    the most sklearn's neighbour search allows for small N.

    Args:
      embeddings: [N, H] one vector per utterance.
      categories: [N] int emotion category; -1 (or any index outside
        `category_names`) is drawn grey as "unknown".
      category_names: name of each category index.
      activation: [N] activation label, the colour of the second panel.
      out_path: the PNG to write.
      seed: t-SNE's random state.
      title: figure title; a default naming N if None.
      dpi: resolution; the figure is 12 x 5.2 inches.

    Returns:
      (out_path, coords [N, 2]).
    """
    x = StandardScaler().fit_transform(np.asarray(embeddings, np.float64))
    n = len(x)
    coords = TSNE(
        n_components=2, perplexity=min(30.0, (n - 1) / 3), init="pca", random_state=seed
    ).fit_transform(x)  # [N, 2]
    categories = np.asarray(categories)
    fig = Figure(figsize=(12, 5.2), layout="constrained")
    ax_cat, ax_act = fig.subplots(1, 2)
    known = (categories >= 0) & (categories < len(category_names))
    if (~known).any():
        ax_cat.scatter(*coords[~known].T, s=12, color="0.75", lw=0, label="unknown")
    for k, name in enumerate(category_names):
        sel = categories == k
        if sel.any():
            ax_cat.scatter(
                *coords[sel].T,
                s=14,
                alpha=0.8,
                lw=0,
                color=f"C{k % 10}",
                label=f"{name} ({sel.sum()})",
            )
    ax_cat.legend(title="emotion", fontsize=9, markerscale=1.5, loc="best")
    ax_cat.set_title("Coloured by emotion category")
    points = ax_act.scatter(
        *coords.T, s=14, c=np.asarray(activation), cmap="viridis", alpha=0.85, lw=0
    )
    fig.colorbar(points, ax=ax_act, label=DIMENSION_NAMES["act"])
    ax_act.set_title(f"Coloured by {DIMENSION_NAMES['act']}")
    for ax in (ax_cat, ax_act):
        ax.set_xlabel("t-SNE 1")
        ax.set_ylabel("t-SNE 2")
    if title is None:
        title = f"t-SNE of utterance embeddings ({n} utterances, no labels in training)"
    fig.suptitle(title)
    return _save(fig, out_path, dpi), coords


@dataclasses.dataclass(frozen=True)
class TsneInput:
    """What the t-SNE figure draws: embeddings [N, H] and per-utterance labels."""

    embeddings: np.ndarray
    categories: np.ndarray
    category_names: Sequence[str]
    activation: np.ndarray


def method_figures(
    workdir: str,
    label: str,
    results: Sequence[dict],
    tsne_input: TsneInput | None = None,
    seed: int = 0,
) -> list[str]:
    """The figures of one method's workdir, in its plots folder.

    Args:
      workdir: the method's workdir.
      label: the method's name in titles ("preCPC").
      results: the result.json of one seed's run of every fold.
      tsne_input: the CPC embeddings to draw, for methods with a CPC stage.
      seed: t-SNE's seed.

    Returns:
      The paths written.
    """
    out = workdir_lib.plots_dir(workdir)
    written = [
        training_curves(workdir, paths.join(out, "training_curves.png")),
        predicted_vs_true(
            results,
            paths.join(out, "predicted_vs_true.png"),
            title=f"{label}, seed 0, test predictions of every fold",
        ),
    ]
    if tsne_input is not None:
        path, _ = tsne(
            tsne_input.embeddings,
            tsne_input.categories,
            tsne_input.category_names,
            tsne_input.activation,
            paths.join(out, "tsne.png"),
            seed=seed,
            title=f"{label}: utterance means of c_t, no labels used in training",
        )
        written.append(path)
    return written
