"""Frame features of audio files from a CPC model: z (encoder) and c (context).

    python -m cpcjax.embed --cpc=DIR --out=OUT_DIR a.wav b.flac some_folder/ ...

DIR is either what `python -m cpcjax.import_cpc_audio` wrote (config.json
and checkpoints/) or a pretraining stage of a cpcjax workdir: preCPC's
WORKDIR/pretrain/, miniCPC's WORKDIR/pretrain/fold<k>/, and the same inside a
demo workdir (WORKDIR/<method>/pretrain/...). The model's config comes from
the imported config.json or from the config.json of the stage's method
workdir, the params from the latest checkpoint of checkpoints/.

Each input gives OUT_DIR/<name>.npz with `z` [T, channels] and `c` [T,
context_hidden], float32, one frame per 10 ms: T = samples // 160 at 16 kHz.
A file named on the command line keeps its name (x.wav -> OUT_DIR/x.npz); a
file found in a folder keeps its path below that folder
(some_folder/s1/x.wav -> OUT_DIR/s1/x.npz).

Inputs are read as `python -m cpcjax.predict` reads them: any rate and channel
count as 16 kHz mono, folders searched recursively. Each file is embedded
whole; files are batched by length (padded to a few length buckets and
masked, so a file's features do not depend on what it was batched with). A
file that cannot be used gets one `error: FILE: REASON` line on stderr and
the others are still embedded; the exit code is then 1. A --cpc that is
neither kind of folder exits with 2.

From Python, `load(DIR)` gives an `Embedder`: call it on [B, S] float
waveforms in [-1, 1] at 16 kHz for (z [B, T, C], c [B, T, H]).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import logging
import posixpath
import sys
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import flags

from cpcjax import cli, import_cpc_audio, inference, paths
from cpcjax import workdir as workdir_lib
from cpcjax.constants import FRAME_HOP
from cpcjax.data import pipeline
from cpcjax.models import build
from cpcjax.train import checkpoint, sharding

# Files decoded and held before they are embedded: bounds host memory.
GROUP_FILES = inference.GROUP_CHUNKS
# int16 full scale: `inference.chunk_batches` takes audio in int16 units.
INT16_SCALE = 32768.0
EXPECTED = (
    "expected a folder written by import_cpc_audio (config.json and "
    "checkpoints/) or a cpcjax pretraining stage (WORKDIR/pretrain/ or "
    "WORKDIR/pretrain/fold<k>/)"
)
log = logging.getLogger(__name__)


class SourceError(Exception):
    """A --cpc folder that holds no usable CPC model; the message says why."""


@dataclasses.dataclass
class Embedder:
    """A restored CPC encoder and context network, and the program that applies it.

    Call it on waveforms: `z, c = embedder(wav)` with wav [B, S] float in
    [-1, 1] at 16 kHz gives z [B, T, channels] and c [B, T, context_hidden]
    float32, T = S // 160.

    Attributes:
      info: where the model came from: "cpc" (the folder), "kind" ("imported"
        or "pretrain"), "checkpoint" (its directory) and "step".
      config: the model's config (its `model` fields size the outputs).
    """

    info: dict
    config: ml_collections.ConfigDict
    model: object
    params: dict
    mesh: object
    buckets: list[int]
    batch_size: int

    @functools.cached_property
    def _encode(self):
        def encode(params, batch):
            z, c, _ = self.model.apply(
                {"params": params}, batch["wav"], batch["lengths"], method="encode"
            )
            return z.astype(jnp.float32), c.astype(jnp.float32)  # [B, T, C], [B, T, H]

        return jax.jit(encode, out_shardings=sharding.replicated(self.mesh))

    def embed_waveforms(
        self, wavs: Sequence[np.ndarray]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """(z [T, C], c [T, H]) per 16 kHz waveform, T = its samples // 160.

        Args:
          wavs: int16 arrays, or float arrays in [-1, 1] (of any length).
        """
        # Float waveforms become exact int16 units: the scale is a power of 2.
        chunks = [
            np.asarray(w, np.float32) * INT16_SCALE
            if np.issubdtype(np.asarray(w).dtype, np.floating)
            else np.asarray(w)
            for w in wavs
        ]
        out: list = [None] * len(chunks)
        if not chunks:
            return out
        for ids, batch in inference.chunk_batches(
            chunks, self.buckets, self.batch_size, self.mesh
        ):
            z, c = (np.asarray(a) for a in self._encode(self.params, batch))
            for row in np.flatnonzero(ids >= 0):
                # The encoder's last frame of a length just short of a whole
                # frame sees mostly padding: only whole frames are kept.
                frames = len(chunks[ids[row]]) // FRAME_HOP
                out[ids[row]] = (z[row, :frames], c[row, :frames])
        return out

    def __call__(
        self, wav: np.ndarray, lengths: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """z [B, T, C] and c [B, T, H] float32 of `wav` [B, S], T = S // 160.

        Args:
          wav: [B, S] float waveforms in [-1, 1] at 16 kHz.
          lengths: [B] valid samples per row, or None when all S are; frames
            past a row's lengths // 160 are zero.
        """
        wav = np.asarray(wav, np.float32)
        if wav.ndim != 2:
            raise ValueError(f"wav must be [B, S], not of shape {wav.shape}")
        batch, samples = wav.shape
        lengths = (
            np.full(batch, samples)
            if lengths is None
            else np.minimum(np.asarray(lengths, np.int64), samples)
        )
        frames = samples // FRAME_HOP
        m, h = self.config.model.channels, self.config.model.context_hidden
        z = np.zeros((batch, frames, m), np.float32)
        c = np.zeros((batch, frames, h), np.float32)
        rows = self.embed_waveforms([w[:n] for w, n in zip(wav, lengths)])
        for i, (zi, ci) in enumerate(rows):
            z[i, : len(zi)], c[i, : len(ci)] = zi, ci
        return z, c

    def embed_files(
        self, inputs: Sequence[str], workers: int | None = None
    ) -> Iterator[tuple[str, str, tuple[np.ndarray, np.ndarray] | str]]:
        """Embeds every audio file of `inputs` (files or folders).

        Files inside the folders whose extension is not searched for are named
        in one warning of `cpcjax.inference`'s logger.

        Args:
          inputs: audio files, and folders searched recursively for
            `inference.AUDIO_EXTENSIONS`.
          workers: decoding threads, as for `inference.decode_files`.

        Yields:
          (path, output name, (z [T, C], c [T, H]) or why the file cannot be
          used), in input order. The output name is the file's name without
          its extension, below its folder for a file found in a folder
          ("s1/x" for some_folder/s1/x.wav); two inputs of one name are
          refused after the first.
        """
        files, names, skipped = [], {}, []
        for arg in inputs:
            found, passed = inference.expand_inputs([arg])
            skipped += passed
            folder = paths.isdir(arg)
            for path, problem in found:
                # A folder's files keep their place below it; a file named on
                # its own (or a folder's problem) keeps only its own name.
                below = folder and problem is None
                name = posixpath.splitext(
                    paths.relpath(path, arg) if below else paths.name(path)
                )[0]
                if problem is None and name in names:
                    problem = f"same output {name}.npz as {names[name]}"
                if problem is None:
                    names[name] = path
                files.append((path, name, problem))
        if skipped:
            inference.log.warning("%s", inference.skipped_note(skipped))
        decoded = inference.decode_files([(p, why) for p, _, why in files], workers)
        # (path, name, audio or why it cannot be used), in input order.
        pending: list[tuple[str, str, np.ndarray | str]] = []

        def flush():
            ready = [i for i, (_, _, w) in enumerate(pending) if not isinstance(w, str)]
            features = dict(
                zip(ready, self.embed_waveforms([pending[i][2] for i in ready]))
            )
            for i, (path, name, wav) in enumerate(pending):
                yield path, name, features.get(i, wav)
            pending.clear()

        for (path, name, _), (_, wav) in zip(files, decoded, strict=True):
            pending.append((path, name, wav))
            if len(pending) >= GROUP_FILES:
                yield from flush()
        yield from flush()


def resolve_source(directory: str) -> tuple[ml_collections.ConfigDict, str, dict]:
    """The model config, checkpoint directory and info of a --cpc folder.

    Args:
      directory: an import_cpc_audio folder or a pretraining stage, or the
        checkpoints/ folder of either.

    Raises:
      SourceError: naming what the folder lacks and what was expected.
    """
    root = paths.resolve(directory)
    if paths.name(root) == workdir_lib.CHECKPOINTS_DIR:
        root = paths.parent(root)
    if not paths.isdir(root):
        raise SourceError(f"--cpc={directory}: no such folder; {EXPECTED}")
    imported = import_cpc_audio.read_imported(root)
    if imported is not None:
        config = import_cpc_audio.model_config(imported["fields"])
        kind = "imported"
    else:
        stage = paths.name(root)
        if stage.startswith("fold") and paths.name(paths.parent(root)) == (
            workdir_lib.PRETRAIN_DIR
        ):
            method_dir = paths.parent(paths.parent(root))
        elif stage == workdir_lib.PRETRAIN_DIR:
            method_dir = paths.parent(root)
        else:
            raise SourceError(f"--cpc={directory}: {EXPECTED}")
        config_dict = workdir_lib.read_config(method_dir)
        if config_dict is None:
            raise SourceError(
                f"--cpc={directory}: {method_dir} has no "
                f"{workdir_lib.CONFIG_FILE} (the config of its run); {EXPECTED}"
            )
        config = ml_collections.ConfigDict(config_dict)
        kind = "pretrain"
    step = _latest_step(root)
    if step is None:
        folds = paths.glob(root, "fold*")
        hint = (
            f"it holds per-fold stages: pass one of them, e.g. {folds[0]}"
            if folds
            else f"it has no checkpoint in {workdir_lib.CHECKPOINTS_DIR}/; {EXPECTED}"
        )
        raise SourceError(f"--cpc={directory}: {hint}")
    info = {
        "cpc": root,
        "kind": kind,
        "checkpoint": workdir_lib.checkpoint_dir(root),
        "step": step,
    }
    return config, workdir_lib.checkpoint_dir(root), info


def _latest_step(stage_dir: str) -> int | None:
    """The latest complete checkpoint's step (an import's is 0), or None."""
    ckpt_dir = workdir_lib.checkpoint_dir(stage_dir)
    if not paths.isdir(ckpt_dir):
        return None
    ckpts = checkpoint.Checkpoints(ckpt_dir)
    try:
        return ckpts.latest_step()
    finally:
        ckpts.close()


def _restore(model, ckpt_dir: str, mesh) -> dict:
    """The encoder and context params of the latest checkpoint, replicated."""
    wav = jax.ShapeDtypeStruct((1, FRAME_HOP * 32), jnp.float32)
    # Only what `encode` uses is built: transformer heads fit the pretraining
    # window alone, and features do not need them.
    shapes = jax.eval_shape(
        functools.partial(model.init, method="encode"), jax.random.key(0), wav
    )["params"]
    rep = sharding.replicated(mesh)
    like = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=rep), shapes
    )
    return checkpoint.restore_params(ckpt_dir, like, build.CPC_KEYS)


@functools.lru_cache(maxsize=4)
def _load_cached(directory: str) -> Embedder:
    config, ckpt_dir, info = resolve_source(directory)
    model = build.cpc_model(config)
    mesh = sharding.make_mesh()
    params = _restore(model, ckpt_dir, mesh)
    devices = mesh.devices.size
    return Embedder(
        info=info,
        config=config,
        model=model,
        params=params,
        mesh=mesh,
        buckets=pipeline.bucket_lengths(config.finetune.buckets),
        batch_size=-(-config.finetune.eval_batch_size // devices) * devices,
    )


def load(directory: str) -> Embedder:
    """The CPC model of `directory`, restored for frame features (cached: a
    notebook's repeated calls reuse the params and compiled programs).

    Args:
      directory: an import_cpc_audio folder or a cpcjax pretraining stage
        (WORKDIR/pretrain/ or WORKDIR/pretrain/fold<k>/).

    Raises:
      SourceError: the folder is neither, or holds no checkpoint.
    """
    return _load_cached(paths.resolve(directory))


def write_features(out_dir: str, name: str, z: np.ndarray, c: np.ndarray) -> str:
    """Writes OUT_DIR/<name>.npz with z and c; returns its path."""
    buffer = io.BytesIO()
    np.savez(buffer, z=z.astype(np.float32), c=c.astype(np.float32))
    path = paths.join(out_dir, f"{name}.npz")
    paths.write_bytes(path, buffer.getvalue())
    return path


def main(argv: list[str]) -> None:
    opts = flags.FLAGS
    inputs = argv[1:]
    if not inputs:
        cli.fail(
            "no audio files or folders given (usage: python -m cpcjax.embed "
            "--cpc=DIR --out=OUT_DIR FILE_OR_FOLDER ...)"
        )
    paths.check_reachable(opts.cpc, "--cpc")
    paths.check_reachable(opts.out, "--out")
    # The library's warning (files a folder search passed over) is the user's.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("embed: %(message)s"))
    inference.log.addHandler(handler)
    inference.log.setLevel(logging.WARNING)
    inference.log.propagate = False
    try:
        embedder = load(opts.cpc)
    except SourceError as e:
        cli.fail(str(e))
    m = embedder.config.model
    print(
        f"embed: {embedder.info['kind']} CPC of {embedder.info['cpc']} "
        f"(step {embedder.info['step']}; z: {m.channels}, c: {m.context_hidden} "
        "channels, 100 frames/s)",
        file=sys.stderr,
    )
    done, failed = 0, 0
    for path, name, result in embedder.embed_files(inputs):
        if isinstance(result, str):
            print(f"error: {path}: {result}", file=sys.stderr)
            failed += 1
            continue
        write_features(opts.out, name, *result)
        done += 1
    print(
        f"embed: {done} file(s) embedded to {opts.out}, {failed} failed",
        file=sys.stderr,
    )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    flags.DEFINE_string(
        "cpc",
        None,
        "An import_cpc_audio folder, or a pretraining stage: WORKDIR/pretrain/ "
        "or WORKDIR/pretrain/fold<k>/.",
    )
    flags.DEFINE_string("out", None, "Folder for the <name>.npz feature files.")
    flags.mark_flags_as_required(["cpc", "out"])
    cli.run(main, doc=__doc__)
