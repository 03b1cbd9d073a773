"""Predicting activation, valence and dominance of audio files with a trained run.

`load` restores a run of a workdir (the finished run of the highest dev CCC
avg unless one is named) into a `Predictor`; `predict_files` and
`attention_weights` are the one-call forms. `python -m cpcjax.predict` is the
command line over this module.

The params are the ones the run's result.json was computed with: the best
dev step kept by model selection, or else the latest checkpoint. Predictions
are put back on the training corpus' label scale (IEMOCAP and the synthetic
corpus 1-5, MSP-Podcast 1-7) with the run's label_mean and label_std, and are
not clipped to it.

A file longer than `max_seconds` is cut into the fewest equal chunks of at
most that length; each chunk is predicted on its own and the file's
prediction is the chunk predictions' mean weighted by chunk length. The
limit bounds memory (attention is quadratic in frames) and keeps inputs near
the lengths the model was trained on: 16 s is the paper setting's longest
training bucket.
"""

from __future__ import annotations

import collections
import concurrent.futures
import csv
import dataclasses
import functools
import io
import logging
import os
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import soundfile as sf

from cpcjax import evaluate, paths
from cpcjax import workdir as workdir_lib
from cpcjax.constants import DIMENSION_NAMES, DIMENSIONS, SAMPLE_RATE, SECONDS_PER_FRAME
from cpcjax.data import audio, pipeline
from cpcjax.models import build
from cpcjax.train import checkpoint, sharding, steps

MAX_SECONDS = 16.0
# Shorter chunks would give the recognizer far less context than it was trained with.
MIN_CHUNK_SECONDS = 1.0
# Chunks decoded before they are predicted: bounds host memory for big folders.
GROUP_CHUNKS = 256
# Files decoded ahead of the one being grouped: about one group's worth, so
# the next group decodes while this one is predicted.
DECODE_AHEAD = GROUP_CHUNKS
# What a folder is searched for: what libsndfile reads here (mp3 from 1.1 on).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg") + (
    (".mp3",) if "MP3" in sf.available_formats() else ()
)
# The prediction columns: the dimensions' full names, in label order.
DIMENSION_COLUMNS = tuple(DIMENSION_NAMES[d] for d in DIMENSIONS)
CSV_FIELDS = ("file", "seconds", *DIMENSION_COLUMNS, "chunks")
LABEL_RANGE = {"iemocap": (1, 5), "synthetic": (1, 5), "msp_podcast": (1, 7)}
# Names of the files a folder search passes over, shown before the count.
SKIPPED_SHOWN = 5
log = logging.getLogger(__name__)


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
            steps.make_predict(self.model),
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
        return chunk_utterances(chunks, self.batch_size, self.mesh)

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
        out: list[np.ndarray | None] = [None] * len(chunks)
        for ids, batch in chunk_batches(
            chunks, self.buckets, self.batch_size, self.mesh
        ):
            weights, frame_lens = self._attend(self.params, batch)
            weights, frame_lens = np.asarray(weights), np.asarray(frame_lens)
            for row in np.flatnonzero(ids >= 0):
                out[ids[row]] = weights[row, : frame_lens[row]]
        return out

    def predict_files(
        self,
        paths: Sequence[str],
        max_seconds: float = MAX_SECONDS,
        workers: int | None = None,
    ) -> tuple[list[dict], list[tuple[str, str]]]:
        """See `predict_files`; `workers` as for `decode_files`."""
        limit = max_samples(max_seconds)
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
                row.update(zip(DIMENSION_COLUMNS, map(float, mean)))
                start += len(cs)
            pending.clear()

        inputs, skipped = expand_inputs(paths)
        if skipped:
            log.warning("%s", skipped_note(skipped))
        for path, wav in decode_files(inputs, workers):
            if isinstance(wav, str):
                errors.append((path, wav))
                continue
            chunks = split_chunks(wav, limit)
            row = {
                "file": path,
                "seconds": len(wav) / SAMPLE_RATE,
                "chunks": len(chunks),
            }
            rows.append(row)
            pending.append((row, chunks))
            if sum(len(cs) for _, cs in pending) >= GROUP_CHUNKS:
                flush()
        flush()
        return [{k: r[k] for k in CSV_FIELDS} for r in rows], errors


def decode_files(
    inputs: Sequence[tuple[str, str | None]], workers: int | None = None
) -> Iterator[tuple[str, np.ndarray | str]]:
    """(path, 16 kHz int16 audio or why it cannot be used) per input, in order.

    Files are decoded and resampled on `workers` threads (libsndfile and soxr
    let go of the GIL), up to DECODE_AHEAD files ahead of the caller, so they
    go on while the caller predicts the files before them.

    Args:
      inputs: (path, None) or (path, why it cannot be used), as
        `expand_inputs` gives them.
      workers: decoding threads; None for one per core, 0 to decode each file
        in the calling thread when it is reached.
    """
    if workers == 0:
        for path, problem in inputs:
            yield path, problem if problem is not None else _load_or_reason(path)
        return
    pool = concurrent.futures.ThreadPoolExecutor(
        workers or os.cpu_count() or 1, thread_name_prefix="cpcjax-decode"
    )
    ahead: collections.deque = collections.deque()
    try:
        for path, problem in inputs:
            ahead.append((path, problem or pool.submit(_load_or_reason, path)))
            if len(ahead) > DECODE_AHEAD:
                path, result = ahead.popleft()
                yield path, _resolved(result)
        while ahead:
            path, result = ahead.popleft()
            yield path, _resolved(result)
    finally:
        # A caller that stops early (an error while predicting) waits only
        # for the files being decoded, not for the whole window.
        pool.shutdown(wait=True, cancel_futures=True)


def _load_or_reason(path: str) -> np.ndarray | str:
    try:
        return audio.load(path)
    except audio.BadAudio as e:
        return e.reason


def _resolved(result):
    return result.result() if isinstance(result, concurrent.futures.Future) else result


def max_samples(max_seconds: float) -> int:
    """The samples of a `max_seconds` chunk.

    Raises:
      ValueError: `max_seconds` is under MIN_CHUNK_SECONDS.
    """
    if not max_seconds >= MIN_CHUNK_SECONDS:
        raise ValueError(
            f"max_seconds must be at least {MIN_CHUNK_SECONDS} s (got {max_seconds})"
        )
    return int(max_seconds * SAMPLE_RATE)


def split_chunks(wav: np.ndarray, max_samples: int) -> list[np.ndarray]:
    """The fewest equal chunks (lengths differ by at most one sample) of at
    most `max_samples`; equal so no chunk is a short, barely informative tail."""
    return np.array_split(wav, -(-len(wav) // max_samples))


def chunk_utterances(
    chunks: Sequence[np.ndarray], batch_size: int, mesh
) -> tuple[pipeline.Utterances, int]:
    """Utterances over 16 kHz `chunks` (int16 sample units, integer or float
    arrays) and the global batch size to run them in.

    Args:
      chunks: the waveforms, whole.
      batch_size: the most rows of a global batch; a multiple of the devices.
      mesh: the device mesh the batches are split over.
    """
    n = len(chunks)
    utts = pipeline.Utterances(
        source=[{"audio": c} for c in chunks],
        records=np.arange(n),
        lengths=np.array([len(c) for c in chunks], np.int64),
        speakers=np.full(n, ""),
        names=np.arange(n).astype(str),
    )
    # Few chunks need no full batch of padding rows; a whole number per device.
    devices = mesh.devices.size
    return utts, min(batch_size, -(-n // devices) * devices)


def chunk_batches(
    chunks: Sequence[np.ndarray], buckets: Sequence[int], batch_size: int, mesh
) -> Iterator[tuple[np.ndarray, dict[str, jax.Array]]]:
    """Every chunk once, whole, in padded length-bucketed global batches.

    Chunks are grouped by length into `buckets` (doubled until the longest
    fits) and zero-padded to their bucket, so a few programs serve any
    lengths; "lengths" masks the padding.

    Args:
      chunks, batch_size, mesh: as for `chunk_utterances`.
      buckets: bucket lengths in samples.

    Yields:
      (chunk index per row, -1 for a padding row; the global batch: "wav"
      [B, L] float32 in [-1, 1], "lengths" [B], "weights" [B]).
    """
    utts, batch = chunk_utterances(chunks, batch_size, mesh)
    for ids, local in pipeline.eval_batches(
        utts, buckets, batch, mesh.devices.size, sharding.process_rows
    ):
        yield ids, sharding.to_global(local, mesh)


def expand_inputs(
    inputs: Sequence[str],
) -> tuple[list[tuple[str, str | None]], list[str]]:
    """Files and folders -> the files to read, and the folder files passed over.

    Folders are searched recursively for AUDIO_EXTENSIONS, in sorted order; a
    file named on its own is always tried, whatever its extension.

    Returns:
      inputs: [(file, None) or (path, why it cannot be used)], in order.
      skipped: files inside the folders whose extension is not searched for.
    """
    out: list[tuple[str, str | None]] = []
    skipped: list[str] = []
    for path in inputs:
        if paths.isdir(path):
            files = sorted(
                paths.join(root, name)
                for root, _, names in paths.walk(path)
                for name in names
            )
            found = [f for f in files if f.lower().endswith(AUDIO_EXTENSIONS)]
            skipped += [f for f in files if not f.lower().endswith(AUDIO_EXTENSIONS)]
            if not found:
                out.append(
                    (path, f"folder without {', '.join(AUDIO_EXTENSIONS)} files")
                )
            out.extend((f, None) for f in found)
        elif not paths.exists(path):
            out.append((path, "no such file"))
        elif paths.size(path) == 0:
            out.append((path, "empty file (0 bytes)"))
        else:
            out.append((path, None))
    return out, skipped


def skipped_note(skipped: Sequence[str]) -> str:
    """One line that counts and names the folder files a search passed over."""
    shown = ", ".join(skipped[:SKIPPED_SHOWN])
    more = len(skipped) - SKIPPED_SHOWN
    return (
        f"skipped {len(skipped)} file(s) in the folders that are not "
        f"{', '.join(AUDIO_EXTENSIONS)}: {shown}"
        + (f" and {more} more" if more > 0 else "")
        + " (name a file on its own to try it)"
    )


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
        params = checkpoint.restore_best_params(run_dir, like)
        return params, f"best dev step {best_step}"
    ckpt_dir = workdir_lib.checkpoint_dir(run_dir)
    if not paths.isdir(ckpt_dir):
        raise workdir_lib.WorkdirError(
            f"{run_dir} has no {workdir_lib.CHECKPOINTS_DIR}/ to restore params from"
        )
    step = workdir_lib.finished_steps(run_dir)
    if not step:
        raise workdir_lib.WorkdirError(f"{ckpt_dir} holds no checkpoint")
    params = checkpoint.restore_params(ckpt_dir, like, tuple(like))
    return params, f"latest checkpoint, step {step}"


@functools.lru_cache(maxsize=4)
def _load_cached(workdir: str, run: str | None, method: str | None) -> Predictor:
    # The workdir is checked before anything is built, so a wrong one fails at once.
    method_dir, config_dict = workdir_lib.method_workdir(workdir, method)
    run, result, why = workdir_lib.choose_run(method_dir, run)
    config = ml_collections.ConfigDict(config_dict)
    model = build.emotion_model(config)
    mesh = sharding.make_mesh()
    params, source = _restore(model, config, paths.join(method_dir, run), mesh)
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
    return _load_cached(paths.resolve(workdir), run, method)


def predict_files(
    workdir: str,
    paths: Sequence[str],
    run: str | None = None,
    max_seconds: float = MAX_SECONDS,
    method: str | None = None,
) -> tuple[list[dict], list[tuple[str, str]]]:
    """Predicts every audio file of `paths` (files or folders).

    Files inside the folders whose extension is not searched for are named
    in one warning of this module's logger.

    Args:
      workdir: a method workdir or a demo workdir (see `load`).
      paths: audio files, and folders searched recursively for
        AUDIO_EXTENSIONS.
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
        split_chunks(wav, max_samples(max_seconds))
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
    csv_path, json_path = f"{prefix}.csv", f"{prefix}.json"
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, CSV_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    paths.write_text(csv_path, table.getvalue())
    paths.write_json(
        json_path,
        {
            "run": predictor.info,
            "label_scale": predictor.label_scale,
            "max_seconds": max_seconds,
            "predictions": rows,
            "errors": [{"file": p, "reason": r} for p, r in errors],
        },
        indent=2,
    )
    return csv_path, json_path


def format_table(rows: list[dict]) -> str:
    """The rows as aligned text columns."""
    width = max([len("file")] + [len(r["file"]) for r in rows])
    lines = [
        f"{'file':<{width}}  {'seconds':>8}"
        + "".join(f"  {d:>10}" for d in DIMENSION_COLUMNS)
    ]
    for r in rows:
        lines.append(
            f"{r['file']:<{width}}  {r['seconds']:>8.2f}"
            + "".join(f"  {r[d]:>10.3f}" for d in DIMENSION_COLUMNS)
        )
    return "\n".join(lines)
