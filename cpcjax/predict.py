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

Inputs are files and folders (searched recursively for .wav, .flac and
.ogg, in sorted order), read at any sample rate and channel count as 16 kHz
mono. A file longer than --max_seconds is cut into the fewest equal chunks
of at most --max_seconds; each chunk is predicted on its own and the file's
prediction is the chunk predictions' mean weighted by chunk length. The
limit bounds memory (attention is quadratic in frames) and keeps inputs
near the lengths the model was trained on: 16 s is the paper setting's
longest training bucket.

Writes a table to stdout and PREFIX.csv and PREFIX.json (--out, default
./predictions). A file that cannot be used gets one `error: FILE: REASON`
line on stderr and the others are still predicted; the exit code is then 1.
A workdir without a config or a finished run exits with 2.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import glob
import json
import logging
import math
import os
import sys
from typing import Sequence

from absl import app, flags
from absl import logging as absl_logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cpcjax import evaluate
from cpcjax.data import audio, pipeline
from cpcjax.train import checkpoint, finetune, sharding, state as state_lib

# cpcjax.experiment's names for them; importing it would pull in TensorFlow
# (through clu) and slow every prediction's start.
CONFIG_FILE = "config.json"
RESULT_FILE = "result.json"
MAX_SECONDS = 16.0
# Shorter chunks would give the recognizer far less context than it was trained with.
MIN_CHUNK_SECONDS = 1.0
# Chunks decoded before they are predicted: bounds host memory for big folders.
GROUP_CHUNKS = 256
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
DIMENSIONS = ("activation", "valence", "dominance")
LABEL_RANGE = {"iemocap": (1, 5), "synthetic": (1, 5), "msp_podcast": (1, 7)}
SECONDS_PER_FRAME = pipeline.FRAME_HOP / pipeline.SAMPLE_RATE
log = logging.getLogger(__name__)


class WorkdirError(Exception):
    """A workdir that has no usable run; the message says what is missing."""


def method_workdir(workdir: str, method: str | None = None) -> tuple[str, dict]:
    """The workdir of one method and its resolved config.

    Args:
      workdir: a method workdir, or a demo workdir with one subfolder per method.
      method: the method to take from a demo workdir; None takes the last one
        its config lists. For a method workdir it must match its method.

    Raises:
      WorkdirError: no config.json, or the method is not there.
    """
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise WorkdirError(
            f"{workdir} is not a cpcjax workdir: it has no {CONFIG_FILE} "
            f"(pass the --workdir of a `python -m cpcjax.main` run)"
        )
    with open(path) as f:
        config = json.load(f)
    if "methods" in config:
        methods = list(config["methods"])
        method = method or methods[-1]
        if method not in methods:
            raise WorkdirError(
                f"{workdir} holds the methods {', '.join(methods)}, not {method!r}"
            )
        return method_workdir(os.path.join(workdir, method), method)
    if method is not None and config.get("method") != method:
        raise WorkdirError(
            f"{workdir} is a run of {config.get('method')!r}, not {method!r}"
        )
    return workdir, config


def _dev_avg(result: dict) -> float:
    value = result.get("dev", {}).get("ccc", {}).get("avg", math.nan)
    return -math.inf if value is None or math.isnan(value) else value


def choose_run(workdir: str, run: str | None = None) -> tuple[str, dict, str]:
    """The fine-tuning run to predict with.

    Args:
      workdir: a method workdir.
      run: a run directory relative to `workdir` (e.g. "finetune/fold1/seed0");
        None picks the finished run with the highest dev CCC avg.

    Returns:
      (run, its result.json, why it was chosen).

    Raises:
      WorkdirError: the run is not finished, or no run is.
    """
    if run is not None:
        path = os.path.join(workdir, run, RESULT_FILE)
        if not os.path.isfile(path):
            raise WorkdirError(
                f"{os.path.join(workdir, run)} is not a finished run: it has "
                f"no {RESULT_FILE} (written, with the label scale, when "
                f"fine-tuning ends)"
            )
        with open(path) as f:
            return os.path.normpath(run), json.load(f), "the run asked for"
    paths = sorted(
        glob.glob(os.path.join(workdir, "finetune", "fold*", "seed*", RESULT_FILE))
    )
    if not paths:
        raise WorkdirError(
            f"{workdir} has no finished fine-tuning run (no "
            f"finetune/fold*/seed*/{RESULT_FILE}); finish its training first"
        )
    results = []
    for p in paths:
        with open(p) as f:
            results.append((os.path.relpath(os.path.dirname(p), workdir), json.load(f)))
    # max keeps the first of equals: the lowest fold and seed.
    best, result = max(results, key=lambda r: _dev_avg(r[1]))
    why = (
        f"highest dev CCC avg ({_dev_avg(result):.4f}) of {len(results)} finished "
        f"run{'s' if len(results) > 1 else ''}"
    )
    return best, result, why


@dataclasses.dataclass
class Predictor:
    """A restored run and the jitted programs that apply it.

    Attributes:
      info: what the outputs record about the run: workdir, method, run, the
        params' step and source, and why the run was chosen.
      label_scale: corpus, rating range, and the training labels' mean and
        std that map the model's outputs back onto that scale.
    """

    info: dict
    label_scale: dict
    model: object
    params: dict
    mesh: object
    buckets: list[int]
    batch_size: int

    @functools.cached_property
    def _predict(self):
        return jax.jit(
            finetune.make_predict(self.model),
            out_shardings=sharding.replicated(self.mesh),
        )

    @functools.cached_property
    def _attend(self):
        def attend(params, batch):
            out, state = self.model.apply(
                {"params": params},
                batch["wav"],
                batch["lengths"],
                mutable=["intermediates"],
            )
            (weights,) = state["intermediates"]["recognizer"]["attention"][
                "attention_weights"
            ]
            weights = weights.astype(jnp.float32).mean(axis=1)  # [B, queries, keys]
            valid = (
                jnp.arange(weights.shape[1])[None, :] < out["frame_lens"][:, None]
            )  # [B, T]
            # Padded queries attend uniformly over the valid frames: leave them out.
            q = valid.astype(jnp.float32)[..., None]  # [B, T, 1]
            weights = jnp.sum(weights * q, axis=1) / jnp.maximum(
                jnp.sum(q, axis=1), 1.0
            )
            return weights, out["frame_lens"]  # [B, T], [B]

        return jax.jit(attend, out_shardings=sharding.replicated(self.mesh))

    def _chunk_batches(self, chunks: list[np.ndarray]):
        """Utterances over `chunks` and the global batch size to predict them with."""
        n = len(chunks)
        utts = pipeline.Utterances(
            source=[{"audio": c} for c in chunks],
            records=np.arange(n),
            lengths=np.array([len(c) for c in chunks], np.int64),
            speakers=np.full(n, ""),
            names=np.arange(n).astype(str),
        )
        # Few chunks need no full batch of padding rows; a whole number per device.
        devices = self.mesh.devices.size
        return utts, min(self.batch_size, -(-n // devices) * devices)

    def predict_chunks(self, chunks: list[np.ndarray]) -> np.ndarray:
        """[N, 3] predictions on the label scale for int16 16 kHz chunks."""
        utts, batch = self._chunk_batches(chunks)
        return evaluate.predict_split(
            self._predict,
            self.params,
            utts,
            self.buckets,
            batch,
            self.mesh,
            np.asarray(self.label_scale["mean"]),
            np.asarray(self.label_scale["std"]),
        )

    def attend_chunks(self, chunks: list[np.ndarray]) -> list[np.ndarray]:
        """Per chunk, the attention weights [frames] over its valid frames."""
        utts, batch = self._chunk_batches(chunks)
        out: list[np.ndarray | None] = [None] * len(chunks)
        for ids, local in pipeline.eval_batches(
            utts, self.buckets, batch, sharding.process_rows(batch)
        ):
            weights, frame_lens = self._attend(
                self.params, sharding.to_global(local, self.mesh)
            )
            weights, frame_lens = np.asarray(weights), np.asarray(frame_lens)
            for row in np.flatnonzero(ids >= 0):
                out[ids[row]] = weights[row, : frame_lens[row]]
        return out

    def predict_files(
        self, paths: Sequence[str], max_seconds: float = MAX_SECONDS
    ) -> tuple[list[dict], list[tuple[str, str]]]:
        """See `predict_files`."""
        max_samples = _max_samples(max_seconds)
        rows: list[dict] = []
        errors: list[tuple[str, str]] = []
        pending: list[tuple[dict, list[np.ndarray]]] = []

        def flush():
            chunks = [c for _, cs in pending for c in cs]
            if not chunks:
                return
            preds = self.predict_chunks(chunks)
            start = 0
            for row, cs in pending:
                weights = np.array([len(c) for c in cs], np.float64)
                mean = weights @ preds[start : start + len(cs)] / weights.sum()  # [3]
                row.update(zip(DIMENSIONS, map(float, mean)))
                start += len(cs)
            pending.clear()

        for path, problem in expand_inputs(paths):
            if problem is None:
                try:
                    wav = audio.load(path)
                except audio.BadAudio as e:
                    problem = e.reason
            if problem is not None:
                errors.append((path, problem))
                continue
            chunks = split_chunks(wav, max_samples)
            row = {
                "file": path,
                "seconds": len(wav) / pipeline.SAMPLE_RATE,
                "chunks": len(chunks),
            }
            rows.append(row)
            pending.append((row, chunks))
            if sum(len(cs) for _, cs in pending) >= GROUP_CHUNKS:
                flush()
        flush()
        return (
            [
                {k: r[k] for k in ("file", "seconds", *DIMENSIONS, "chunks")}
                for r in rows
            ],
            errors,
        )


def _max_samples(max_seconds: float) -> int:
    if not max_seconds >= MIN_CHUNK_SECONDS:
        raise ValueError(
            f"max_seconds must be at least {MIN_CHUNK_SECONDS} s (got {max_seconds})"
        )
    return int(max_seconds * pipeline.SAMPLE_RATE)


def split_chunks(wav: np.ndarray, max_samples: int) -> list[np.ndarray]:
    """The fewest equal chunks (lengths differ by at most one sample) of at
    most `max_samples`; equal so no chunk is a short, barely informative tail."""
    return np.array_split(wav, -(-len(wav) // max_samples))


def expand_inputs(paths: Sequence[str]) -> list[tuple[str, str | None]]:
    """Files and folders -> [(file, None) or (path, why it cannot be used)].

    Folders are searched recursively for AUDIO_EXTENSIONS, in sorted order.
    """
    out: list[tuple[str, str | None]] = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(
                os.path.join(root, name)
                for root, _, names in os.walk(path)
                for name in names
                if name.lower().endswith(AUDIO_EXTENSIONS)
            )
            if not found:
                out.append(
                    (path, f"folder without {', '.join(AUDIO_EXTENSIONS)} files")
                )
            out.extend((f, None) for f in found)
        elif not os.path.exists(path):
            out.append((path, "no such file"))
        elif os.path.getsize(path) == 0:
            out.append((path, "empty file (0 bytes)"))
        else:
            out.append((path, None))
    return out


def _restore(model, config, run_dir: str, mesh) -> tuple[dict, str]:
    """The params result.json was computed with, replicated on `mesh`; and
    where they came from. Only params are read: no optimizer is built."""
    length = pipeline.bucket_lengths(config.finetune.buckets)[0]
    shapes = jax.eval_shape(
        lambda: model.init(
            jax.random.key(0),
            jnp.zeros((1, length), jnp.float32),
            jnp.full((1,), length, jnp.int32),
        )["params"]
    )
    rep = sharding.replicated(mesh)
    like = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=rep), shapes
    )
    best_step = checkpoint.read_best(run_dir)["step"]
    if best_step:
        return checkpoint.restore_best_params(
            run_dir, like
        ), f"best dev step {best_step}"
    ckpt_dir = os.path.join(run_dir, "checkpoints")
    if not os.path.isdir(ckpt_dir):
        raise WorkdirError(f"{run_dir} has no checkpoints/ to restore params from")
    ckpts = checkpoint.Checkpoints(ckpt_dir)
    step = ckpts.latest_step()
    ckpts.close()
    if step is None:
        raise WorkdirError(f"{ckpt_dir} holds no checkpoint")
    return checkpoint.restore_params(
        ckpt_dir, like, tuple(like)
    ), f"latest checkpoint, step {step}"


@functools.lru_cache(maxsize=4)
def _load_cached(workdir: str, run: str | None, method: str | None) -> Predictor:
    # The workdir is checked before anything is built, so a wrong one fails at once.
    method_dir, config_dict = method_workdir(workdir, method)
    run, result, why = choose_run(method_dir, run)
    config = ml_collections.ConfigDict(config_dict)
    model = state_lib.emotion_model(config)
    mesh = sharding.make_mesh()
    params, source = _restore(model, config, os.path.join(method_dir, run), mesh)
    corpus = config.corpus
    info = {
        "workdir": method_dir,
        "method": config.method,
        "run": run,
        "chosen": why,
        "params": source,
        "dev_ccc": result.get("dev", {}).get("ccc"),
        "test_ccc": result.get("test", {}).get("ccc"),
    }
    label_scale = {
        "corpus": corpus,
        "range": LABEL_RANGE.get(corpus),
        "mean": list(result["label_mean"]),
        "std": list(result["label_std"]),
    }
    devices = mesh.devices.size
    batch = -(-config.finetune.eval_batch_size // devices) * devices
    log.info("predicting with %s of %s (%s; %s)", run, method_dir, why, source)
    return Predictor(
        info=info,
        label_scale=label_scale,
        model=model,
        params=params,
        mesh=mesh,
        buckets=pipeline.bucket_lengths(config.finetune.buckets),
        batch_size=batch,
    )


def load(workdir: str, run: str | None = None, method: str | None = None) -> Predictor:
    """The run of `workdir` restored for prediction (cached: a notebook's
    repeated calls reuse the params and compiled programs).

    Args:
      workdir: a method workdir or a demo workdir.
      run: run directory relative to the method workdir; None picks the
        finished run with the highest dev CCC avg.
      method: the method of a demo workdir; None takes the last one listed.

    Raises:
      WorkdirError: no config, no finished run, or no checkpoint.
    """
    return _load_cached(os.path.abspath(workdir), run, method)


def predict_files(
    workdir: str,
    paths: Sequence[str],
    run: str | None = None,
    max_seconds: float = MAX_SECONDS,
    method: str | None = None,
) -> tuple[list[dict], list[tuple[str, str]]]:
    """Predicts every audio file of `paths` (files or folders).

    Args:
      workdir: a method workdir or a demo workdir (see `load`).
      paths: audio files and folders (searched recursively for wav/flac/ogg).
      run: run directory relative to the method workdir, or None (see `load`).
      max_seconds: longest chunk a file is cut into (see the module docstring).
      method: the method of a demo workdir.

    Returns:
      rows: per usable file, in input order, {"file", "seconds", "activation",
        "valence", "dominance", "chunks"} on the training corpus' label scale.
      errors: (path, reason) of every file or folder that could not be used.
    """
    return load(workdir, run, method).predict_files(paths, max_seconds)


def attention_weights(
    workdir: str,
    path: str,
    run: str | None = None,
    max_seconds: float = MAX_SECONDS,
    method: str | None = None,
) -> tuple[float, np.ndarray]:
    """The recognizer's attention over the frames of one file.

    Weights are averaged over heads and over the valid query frames, so
    weight t says how much frame t contributes to the pooled utterance
    features. A file longer than `max_seconds` is chunked as for prediction:
    each chunk's weights are scaled by its share of the frames, so the
    whole sums to 1 as one chunk's does (frame times drift by under one
    frame per chunk boundary).

    Args:
      workdir, run, method: the run, as for `predict_files`.
      path: an audio file.
      max_seconds: longest chunk.

    Returns:
      (seconds per frame, weights [T] float32).

    Raises:
      audio.BadAudio: the file cannot be used.
    """
    wav = audio.load(path)
    per_chunk = load(workdir, run, method).attend_chunks(
        split_chunks(wav, _max_samples(max_seconds))
    )
    total = sum(len(w) for w in per_chunk)
    weights = np.concatenate([w * (len(w) / total) for w in per_chunk])
    return SECONDS_PER_FRAME, weights.astype(np.float32)


def write_outputs(
    prefix: str,
    rows: list[dict],
    errors: list[tuple[str, str]],
    predictor: Predictor,
    max_seconds: float,
) -> tuple[str, str]:
    """Writes PREFIX.csv (the rows) and PREFIX.json (rows, errors, run, scale)."""
    directory = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(directory, exist_ok=True)
    csv_path, json_path = f"{prefix}.csv", f"{prefix}.json"
    fields = ("file", "seconds", *DIMENSIONS, "chunks")
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows(rows)
    with open(json_path, "w") as f:
        json.dump(
            {
                "run": predictor.info,
                "label_scale": predictor.label_scale,
                "max_seconds": max_seconds,
                "predictions": rows,
                "errors": [{"file": p, "reason": r} for p, r in errors],
            },
            f,
            indent=2,
        )
    return csv_path, json_path


def format_table(rows: list[dict]) -> str:
    """The rows as aligned text columns."""
    width = max([len("file")] + [len(r["file"]) for r in rows])
    lines = [
        f"{'file':<{width}}  {'seconds':>8}" + "".join(f"  {d:>10}" for d in DIMENSIONS)
    ]
    for r in rows:
        lines.append(
            f"{r['file']:<{width}}  {r['seconds']:>8.2f}"
            + "".join(f"  {r[d]:>10.3f}" for d in DIMENSIONS)
        )
    return "\n".join(lines)


def main(argv) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # Orbax warns about every read-only restore; the user asked for predictions.
    absl_logging.set_verbosity(absl_logging.ERROR)
    opts = flags.FLAGS
    paths = argv[1:]
    if not paths:
        print(
            "error: no audio files or folders given (usage: python -m cpcjax.predict "
            "--workdir=DIR FILE_OR_FOLDER ...)",
            file=sys.stderr,
        )
        sys.exit(2)
    try:
        _max_samples(opts.max_seconds)
        predictor = load(opts.workdir, opts.run, opts.method)
    except (WorkdirError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    i = predictor.info
    print(
        f"predict: run {i['run']} of {i['workdir']} ({i['chosen']}; params: {i['params']})",
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
    app.run(main)
