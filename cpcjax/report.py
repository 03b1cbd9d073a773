"""The paper's table from per-fold, per-seed predictions: report.json and report.md.

`python -m cpcjax.report DIR [DIR ...] [--out=DIR]` merges the reports of
several workdirs into one table, with the paper's published numbers beside
ours for IEMOCAP and MSP-Podcast. A merged report.json lists the workdirs it
came from under "merged_from" (optional, schema_version 2 as before); a
merge passes over such reports, and over files, so rerunning
`python -m cpcjax.report runs/iemocap/* --out=runs/iemocap` gives the same
table, with one stderr line per input passed over.
"""

from __future__ import annotations

import sys

import numpy as np
from absl import flags

from cpcjax import cli, evaluate, paths
from cpcjax.config import METHOD_NAMES
from cpcjax.constants import DIMENSIONS
from cpcjax.workdir import CONFIG_FILE, REPORT_JSON, REPORT_MD

COLUMNS = ("avg",) + DIMENSIONS
SCHEMA_VERSION = 2
MERGED_FROM = "merged_from"  # the key that marks a merged report
# Li et al. 2021, Tables 1 and 2: (mean, std) of avg, act, val, dom.
PAPER = {
    "iemocap": {
        "Sup": ((0.664, 0.007), (0.638, 0.017), (0.718, 0.004), (0.635, 0.009)),
        "jointCPC": ((0.562, 0.012), (0.549, 0.032), (0.642, 0.013), (0.491, 0.016)),
        "miniCPC": ((0.660, 0.005), (0.673, 0.028), (0.702, 0.009), (0.606, 0.019)),
        "preCPC": ((0.731, 0.003), (0.752, 0.014), (0.752, 0.009), (0.691, 0.009)),
    },
    "msp_podcast": {
        "Sup": ((0.458, 0.005), (0.596, 0.007), (0.266, 0.004), (0.501, 0.013)),
        "jointCPC": ((0.491, 0.008), (0.628, 0.006), (0.280, 0.006), (0.568, 0.007)),
        "miniCPC": ((0.549, 0.006), (0.688, 0.009), (0.345, 0.005), (0.615, 0.011)),
        "preCPC": ((0.571, 0.004), (0.706, 0.006), (0.377, 0.008), (0.639, 0.012)),
    },
}


def _mean_std(values) -> dict:
    """Mean and sample standard deviation (ddof = 1; 0 for a single value)."""
    values = np.asarray(values, np.float64)
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return {"mean": float(np.mean(values)), "std": std}


def method_row(
    method: str,
    runs: list[dict],
    config_hash: str = "",
    probe: dict | None = None,
    pretrained_once: bool = False,
) -> dict:
    """One table row from the runs (fold x seed) of one method.

    Args:
      method: method key, e.g. "pre_cpc".
      runs: dicts with "fold", "seed", "preds" [N, 3], "targets" [N, 3].
      config_hash: identifies the resolved config the runs came from.
      probe: linear-probe CCCs of the frozen CPC features, if measured.
      pretrained_once: one CPC stage served every seed, so the std over seeds
        leaves out pretraining's variance.

    Returns:
      The row of report.json: per seed the CCC of the predictions pooled over
      all folds (the table's number) and the mean of the per-fold CCCs, their
      mean and std over seeds, and the CCC of every fold and seed.
    """
    seeds = sorted({r["seed"] for r in runs})
    per_seed = []
    for s in seeds:
        mine = [r for r in runs if r["seed"] == s]
        pooled = evaluate.corpus_ccc(
            np.concatenate([r["preds"] for r in mine]),
            np.concatenate([r["targets"] for r in mine]),
        )
        per_seed.append({"seed": s, **pooled})
    per_fold = [
        {
            "fold": r["fold"],
            "seed": r["seed"],
            "num_test": len(r["targets"]),
            **evaluate.corpus_ccc(r["preds"], r["targets"]),
        }
        for r in sorted(runs, key=lambda r: (r["fold"], r["seed"]))
    ]
    ccc = {c: _mean_std([p[c] for p in per_seed]) for c in COLUMNS}
    fold_mean = {
        c: _mean_std(
            [np.mean([f[c] for f in per_fold if f["seed"] == s]) for s in seeds]
        )
        for c in COLUMNS
    }
    folds = sorted({r["fold"] for r in runs}, key=str)
    return {
        "method": METHOD_NAMES[method],
        "key": method,
        "ccc": ccc,
        "fold_mean": fold_mean,
        "probe": probe,
        "config_hash": config_hash,
        "per_seed": per_seed,
        "per_fold": per_fold,
        "num_test_utterances": int(
            sum(len(r["targets"]) for r in runs if r["seed"] == seeds[0])
        ),
        "folds": folds,
        "seeds": len(seeds),
        "pretrained_once": pretrained_once,
    }


def _cell(stat: dict) -> str:
    return f"{stat['mean']:.3f} ± {stat['std']:.3f}"


def _table(rows: list[dict], key: str, paper: dict | None = None) -> list[str]:
    lines = ["| method | avg | act | val | dom |", "|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['method']} | "
            + " | ".join(_cell(row[key][c]) for c in COLUMNS)
            + " |"
        )
        if paper and row["method"] in paper:
            lines.append(
                f"| {row['method']} (paper) | "
                + " | ".join(f"{m:.3f} ± {sd:.3f}" for m, sd in paper[row["method"]])
                + " |"
            )
    return lines


def _pretrained_once_note(rows: list[dict]) -> list[str]:
    once = [r["method"] for r in rows if r.get("pretrained_once")]
    if not once:
        return []
    return [
        f"{' and '.join(once)}: one CPC pretraining served every seed, so "
        f"{'their' if len(once) > 1 else 'its'} ± covers fine-tuning only."
    ]


def markdown(report: dict) -> str:
    """report.md: the tables of a report as `write` or `merge` returns it."""
    rows = report["rows"]
    paper = PAPER.get(report["corpus"])
    lines = [
        f"# cpcjax results: {report['corpus']}",
        "",
        f"CCC, mean ± std over seeds of the CCC of the test predictions pooled over "
        f"all folds (protocol: {report['protocol']})"
        + ("; the paper's published numbers below ours." if paper else "."),
        "The std is the sample standard deviation (ddof = 1) over the seeds.",
        *_pretrained_once_note(rows),
        "",
        *_table(rows, "ccc", paper),
        "",
        "Mean of the per-fold CCCs (mean ± std over seeds):",
        "",
        *_table(rows, "fold_mean"),
    ]
    probed = [r for r in rows if r.get("probe")]
    if probed:
        lines += [
            "",
            (
                "Linear probe of the frozen CPC features (ridge regression on the "
                "utterance mean of c_t; no fine-tuning), CCC pooled over folds:"
            ),
            "",
            "| method | avg | act | val | dom |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['method']} | "
            + " | ".join(f"{r['probe'][c]:.3f}" for c in COLUMNS)
            + " |"
            for r in probed
        ]
    lines += [
        "",
        "Per fold, mean over seeds:",
        "",
        "| method | fold | test utterances | avg | act | val | dom |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        for fold in row["folds"]:
            cells = [f for f in row["per_fold"] if f["fold"] == fold]
            lines.append(
                f"| {row['method']} | {fold} | {cells[0]['num_test']} | "
                + " | ".join(f"{np.mean([c[k] for c in cells]):.3f}" for k in COLUMNS)
                + " |"
            )
    lines += ["", "| method | test utterances | seeds | config |", "|---|---|---|---|"]
    lines += [
        f"| {r['method']} | {r['num_test_utterances']} | {r['seeds']} | "
        f"{r.get('config_hash', '')} |"
        for r in rows
    ]
    if report["corpus"] == "synthetic":
        lines += [
            "",
            (
                "The synthetic corpus is procedurally generated speech-like audio: "
                "these numbers show that the pipeline learns, not how well it "
                "recognises emotion in real speech."
            ),
        ]
    return "\n".join(lines) + "\n"


def _save(directory: str, report: dict, text: str) -> None:
    paths.write_json(paths.join(directory, REPORT_JSON), report, indent=2)
    paths.write_text(paths.join(directory, REPORT_MD), text)


def write(
    workdir: str, corpus: str, protocol: str, rows: list[dict], to_disk: bool = True
) -> dict:
    """Writes report.json and report.md into `workdir` and returns the report.

    `markdown` of the returned report is the report.md written.
    """
    report = {
        "schema_version": SCHEMA_VERSION,
        "corpus": corpus,
        "protocol": protocol,
        "rows": rows,
    }
    if to_disk:
        _save(workdir, report, markdown(report))
    return report


def merge(workdirs: list[str]) -> tuple[dict, list[tuple[str, str]]]:
    """One report from the report.json of several workdirs (same corpus).

    Made for a shell glob over a folder of workdirs, which also matches what
    an earlier merge wrote there: a path that is a file, or a folder whose
    report.json is itself a merge, is passed over rather than read, so no row
    counts twice.

    Args:
      workdirs: workdirs of `python -m cpcjax.main` runs.

    Returns:
      (the merged report, (path, why) of every input passed over).

    Raises:
      FileNotFoundError: a path that does not exist or holds no report.json.
      ValueError: reports of different corpora, or none left to merge.
    """
    reports, skipped = [], []
    for d in workdirs:
        if paths.isfile(d):
            skipped.append((d, "a file, not a workdir"))
            continue
        path = paths.join(d, REPORT_JSON)
        report = paths.read_json(path)
        if report is None:
            raise FileNotFoundError(
                f"{path} does not exist: run cpcjax.main with --workdir={d} first"
            )
        if MERGED_FROM in report:
            skipped.append((d, f"its {REPORT_JSON} is a merge of other workdirs"))
            continue
        reports.append((d, report))
    if not reports:
        raise ValueError(f"no workdir among {', '.join(workdirs)} to merge")
    corpora = {r["corpus"] for _, r in reports}
    if len(corpora) != 1:
        raise ValueError(
            f"the workdirs hold different corpora ({', '.join(sorted(corpora))}); "
            f"merge one corpus at a time"
        )
    merged = {
        "schema_version": SCHEMA_VERSION,
        "corpus": corpora.pop(),
        "protocol": reports[0][1]["protocol"],
        "rows": [row for _, r in reports for row in r["rows"]],
        MERGED_FROM: [d for d, _ in reports],
    }
    return merged, skipped


def run(workdirs: list[str], out: str | None = None) -> int:
    """Merges the reports of `workdirs`, prints the table, and writes it to
    `out` when given; returns the exit code."""
    if not workdirs:
        print(
            "error: no workdirs given (usage: python -m cpcjax.report DIR [DIR ...] "
            "[--out=DIR])",
            file=sys.stderr,
        )
        return 2
    args = workdirs
    for d in [*workdirs, *([out] if out else [])]:
        paths.check_reachable(d)
    if out and paths.exists(paths.join(out, CONFIG_FILE)):
        print(
            f"error: --out={out} is the workdir of a run, whose {REPORT_JSON} is its "
            f"own; write the merge to another folder",
            file=sys.stderr,
        )
        return 2
    try:
        merged, skipped = merge(args)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path, why in skipped:
        print(f"report: skipped {path}: {why}", file=sys.stderr)
    text = markdown(merged)
    print(text)
    if out:
        _save(out, merged, text)
    return 0


def main(argv: list[str]) -> None:
    sys.exit(run(argv[1:], flags.FLAGS.out))


if __name__ == "__main__":
    flags.DEFINE_string(
        "out", None, "Folder for the merged report.json and report.md (optional)."
    )
    cli.run(main, doc=__doc__)
