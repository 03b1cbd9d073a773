"""Predicts activation, valence and dominance of audio files with a trained run.

python -m cpcjax.predict --workdir=DIR [--method=pre_cpc] [--run=finetune/fold1/seed0] \
    [--out=predictions] [--max_seconds=16] a.wav b.flac some_folder/ ...

DIR is the workdir of one method (it holds config.json and finetune/), or a
demo workdir (its config.json lists `methods`, one subfolder each): there
`--method` picks the method, by default the last one listed (pre_cpc).

The run: `--run` (relative to the method's workdir) if given, otherwise the
finished run (one with result.json) of the highest dev CCC avg, so the test
sessions play no part in the choice. Its params are the ones its result.json
was computed with: the best dev step kept by model selection (`best/`), or
else the latest checkpoint. Predictions are put back on the training
corpus' label scale (IEMOCAP and the synthetic corpus 1-5, MSP-Podcast 1-7)
with the run's label_mean and label_std, and are not clipped to it.

Inputs are files and folders (searched recursively for .wav, .flac, .ogg
and, where libsndfile reads it, .mp3, in sorted order), read at any sample
rate and channel count as 16 kHz mono. Files in a folder with another
extension are passed over, and one line on stderr counts and names them. A
file longer than --max_seconds is cut into the fewest equal chunks
of at most --max_seconds; each chunk is predicted on its own and the file's
prediction is the chunk predictions' mean weighted by chunk length. The
limit bounds memory (attention is quadratic in frames) and keeps inputs
near the lengths the model was trained on: 16 s is the paper setting's
longest training bucket.

The library behind this command is cpcjax.inference; the names a notebook
uses (`predict_files`, `attention_weights`, `load`, ...) are importable from
here too.

Writes a table to stdout and PREFIX.csv and PREFIX.json (--out, default
./predictions). A file that cannot be used gets one `error: FILE: REASON`
line on stderr and the others are still predicted; the exit code is then 1.
A workdir without a config or a finished run exits with 2.
"""

from __future__ import annotations

import logging
import sys

from absl import flags

from cpcjax import cli
from cpcjax.inference import (
    DIMENSION_COLUMNS,
    MAX_SECONDS,
    Predictor,
    attention_weights,
    format_table,
    load,
    max_samples,
    predict_files,
    write_outputs,
)
from cpcjax.workdir import WorkdirError, choose_run, method_workdir

__all__ = [
    "DIMENSION_COLUMNS",
    "MAX_SECONDS",
    "Predictor",
    "WorkdirError",
    "attention_weights",
    "choose_run",
    "format_table",
    "load",
    "method_workdir",
    "predict_files",
    "write_outputs",
]


def main(argv) -> None:
    opts = flags.FLAGS
    paths = argv[1:]
    if not paths:
        cli.fail(
            "no audio files or folders given (usage: python -m cpcjax.predict "
            "--workdir=DIR FILE_OR_FOLDER ...)"
        )
    # The library's warnings (files a folder search passed over) are the
    # user's to see; its info lines repeat what this command prints.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("predict: %(message)s"))
    inference_log = logging.getLogger("cpcjax.inference")
    inference_log.addHandler(handler)
    inference_log.setLevel(logging.WARNING)
    inference_log.propagate = False
    from cpcjax import paths as path_lib

    # A missing bucket is named as such, not taken for a folder without a run.
    path_lib.check_reachable(opts.workdir, "--workdir")
    path_lib.check_reachable(opts.out, "--out")
    try:
        max_samples(opts.max_seconds)
        predictor = load(opts.workdir, opts.run, opts.method)
    except (WorkdirError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    i = predictor.info
    print(
        f"predict: run {i['run']} of {i['workdir']} "
        f"({i['chosen']}; params: {i['params']})",
        file=sys.stderr,
    )
    rows, errors = predictor.predict_files(paths, opts.max_seconds)
    for path, reason in errors:
        print(f"error: {path}: {reason}", file=sys.stderr)
    if rows:
        print(format_table(rows))
    scale = predictor.label_scale
    scale_text = "{}-{}".format(*scale["range"]) if scale["range"] else "training"
    csv_path, json_path = write_outputs(
        opts.out, rows, errors, predictor, opts.max_seconds
    )
    print(
        f"predict: {len(rows)} file(s) predicted on the {scale['corpus']} "
        f"{scale_text} scale, {len(errors)} failed; wrote {csv_path} and {json_path}",
        file=sys.stderr,
    )
    sys.exit(1 if errors else 0)


def _define_flags() -> None:
    """Defined only when run as a program: a notebook importing this module
    next to cpcjax.main would otherwise define --workdir twice."""
    flags.DEFINE_string("workdir", None, "Workdir of a method run, or of the demo.")
    flags.DEFINE_string("method", None, "Method of a demo workdir (default: its last).")
    flags.DEFINE_string(
        "run",
        None,
        "Run directory relative to the method workdir, "
        "e.g. finetune/fold1/seed0 (default: best dev CCC avg).",
    )
    flags.DEFINE_string(
        "out", "predictions", "Output prefix: PREFIX.csv and PREFIX.json."
    )
    flags.DEFINE_float("max_seconds", MAX_SECONDS, "Longest chunk a file is cut into.")
    flags.mark_flags_as_required(["workdir"])


if __name__ == "__main__":
    _define_flags()
    cli.run(main, doc=__doc__)
