"""The paper's table from per-fold, per-seed predictions: report.json and report.md."""

from __future__ import annotations

import json
import os

import numpy as np

from cpcjax import evaluate
from cpcjax.config import METHOD_NAMES

COLUMNS = ("avg",) + evaluate.DIMENSIONS
SCHEMA_VERSION = 1


def method_row(method: str, runs: list[dict]) -> dict:
    """One table row from the runs (fold x seed) of one method.

    Args:
      method: method key, e.g. "pre_cpc".
      runs: dicts with "fold", "seed", "preds" [N, 3], "targets" [N, 3].

    Returns:
      The row of report.json: per seed the CCC of the predictions pooled over
      all folds (the table's number), its mean and std over seeds, and the
      CCC of every fold and seed.
    """
    seeds = sorted({r["seed"] for r in runs})
    per_seed = []
    for s in seeds:
        mine = [r for r in runs if r["seed"] == s]
        pooled = evaluate.corpus_ccc(np.concatenate([r["preds"] for r in mine]),
                                     np.concatenate([r["targets"] for r in mine]))
        per_seed.append({"seed": s, **pooled})
    per_fold = [{"fold": r["fold"], "seed": r["seed"], "num_test": len(r["targets"]),
                 **evaluate.corpus_ccc(r["preds"], r["targets"])}
                for r in sorted(runs, key=lambda r: (r["fold"], r["seed"]))]
    ccc = {c: {"mean": float(np.mean([p[c] for p in per_seed])),
               "std": float(np.std([p[c] for p in per_seed]))} for c in COLUMNS}
    folds = sorted({r["fold"] for r in runs})
    return {
        "method": METHOD_NAMES[method], "key": method, "ccc": ccc,
        "per_seed": per_seed, "per_fold": per_fold,
        "num_test_utterances": int(sum(len(r["targets"]) for r in runs
                                       if r["seed"] == seeds[0])),
        "folds": folds, "seeds": len(seeds),
    }


def _cell(stat: dict) -> str:
    return f"{stat['mean']:.3f} ± {stat['std']:.3f}"


def markdown(report: dict) -> str:
    lines = [
        f"# cpcjax results: {report['corpus']}",
        "",
        f"CCC (mean ± std over seeds; per seed, the CCC of the test predictions "
        f"pooled over the folds; protocol: {report['protocol']}).",
        "",
        "| method | avg | act | val | dom |",
        "|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        lines.append(f"| {row['method']} | " + " | ".join(_cell(row["ccc"][c]) for c in COLUMNS)
                     + " |")
    lines += ["", "Per fold (test session), mean over seeds:", "",
              "| method | fold | test utterances | avg | act | val | dom |",
              "|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        for fold in row["folds"]:
            cells = [f for f in row["per_fold"] if f["fold"] == fold]
            lines.append(f"| {row['method']} | {fold} | {cells[0]['num_test']} | " + " | ".join(
                f"{np.mean([c[k] for c in cells]):.3f}" for k in COLUMNS) + " |")
    if report["corpus"] == "synthetic":
        lines += ["", "The synthetic corpus is procedurally generated speech-like audio: "
                  "these numbers show that the pipeline learns, not how well it "
                  "recognises emotion in real speech."]
    return "\n".join(lines) + "\n"


def write(workdir: str, corpus: str, protocol: str, rows: list[dict]) -> dict:
    """Writes report.json and report.md into `workdir` and returns the report."""
    report = {"schema_version": SCHEMA_VERSION, "corpus": corpus,
              "protocol": protocol, "rows": rows}
    with open(os.path.join(workdir, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(workdir, "report.md"), "w") as f:
        f.write(markdown(report))
    return report
