"""Reading user audio for corpus preparation: any rate and channel count in,
16 kHz mono int16 out, and a clear reason for every file that cannot be used.

libsndfile (the `soundfile` package) reads wav, flac and ogg without ffmpeg;
soxr resamples.
"""

from __future__ import annotations

import concurrent.futures
import csv
import io
import os
import re
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import numpy as np
import soundfile as sf
import soxr

from cpcjax import paths
from cpcjax.constants import SAMPLE_RATE

# A file whose samples sit at full scale this often is clipped beyond use.
CLIPPED_FRACTION = 0.01
# Peak below this (about -80 dBFS) is digital silence.
SILENT_PEAK = 1e-4
MIN_SECONDS = 0.1  # shorter than 10 encoder frames: nothing to learn from


class BadAudio(Exception):
    """A file that is skipped; `reason` says why in a few words."""

    def __init__(self, path: str, reason: str):
        # Both args reach Exception, so the error pickles back from a worker.
        super().__init__(path, reason)
        self.path, self.reason = path, reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def load(path: str) -> np.ndarray:
    """Reads `path` as 16 kHz mono int16.

    Downmixes by averaging channels and resamples with soxr (high quality)
    when the file is not 16 kHz.

    Raises:
      BadAudio: unreadable, truncated, empty, too short, silent or clipped.
    """
    try:
        if paths.size(path) == 0:
            raise BadAudio(path, "empty (0 bytes)")
        # libsndfile opens local files only: a remote one is read into memory.
        source = io.BytesIO(paths.read_bytes(path)) if paths.is_remote(path) else path
        info = sf.info(source)
        if not isinstance(source, str):
            source.seek(0)
        wav, rate = sf.read(source, dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError, OSError, ValueError) as e:
        # libsndfile says "Error opening '<path>': <why>"; the path is already ours.
        why = str(e).splitlines()[0].rsplit("': ", 1)[-1]
        raise BadAudio(path, f"unreadable ({why[:160]})") from None
    # libsndfile shortens a cut wav to the data present and says so only here.
    cut = re.search(r"data\s*:\s*(\d+)\s*\(should be (\d+)\)", info.extra_info or "")
    if cut:
        raise BadAudio(
            path,
            f"truncated (header promises {cut.group(1)} bytes of audio, "
            f"the file holds {cut.group(2)})",
        )
    if info.frames > 0 and len(wav) < info.frames:
        raise BadAudio(path, f"truncated ({len(wav)} of {info.frames} frames)")
    if len(wav) == 0:
        raise BadAudio(path, "empty (0 samples)")
    if not np.all(np.isfinite(wav)):
        raise BadAudio(path, "NaN or infinite samples")
    peak = np.abs(wav).max()
    if peak < SILENT_PEAK:
        raise BadAudio(path, "silent")
    if np.mean(np.abs(wav) >= 0.999) > CLIPPED_FRACTION:
        raise BadAudio(
            path, f"clipped (over {CLIPPED_FRACTION:.0%} of samples at full scale)"
        )
    mono = wav.mean(axis=1)
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ")
    if len(mono) < MIN_SECONDS * SAMPLE_RATE:
        raise BadAudio(path, f"too short ({len(mono) / SAMPLE_RATE:.3f} s)")
    # libsndfile scaled int16 by 1/32768; the inverse makes int16 round-trip exactly.
    return np.clip(np.round(mono * 32768.0), -32768, 32767).astype(np.int16)


class Problems:
    """Every skipped item of a preparation, with its reason, for the report file."""

    def __init__(self):
        self.rows: list[tuple[str, str, str]] = []

    def add(self, kind: str, where: str, reason: str) -> None:
        """kind: "audio" or "label"; where: file (and line); reason: why skipped."""
        self.rows.append((kind, where, reason))

    def __len__(self) -> int:
        return len(self.rows)

    def write(self, path: str) -> None:
        """A TSV with one line per skipped item (header: kind, where, reason)."""
        table = io.StringIO(newline="")
        writer = csv.writer(table, delimiter="\t")
        writer.writerow(("kind", "where", "reason"))
        writer.writerows(self.rows)
        paths.write_text(path, table.getvalue())

    def summary(self) -> str:
        kinds = {}
        for kind, _, _ in self.rows:
            kinds[kind] = kinds.get(kind, 0) + 1
        return ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "nothing"


T = TypeVar("T")


def load_many(
    items: Iterable[T],
    path_of: Callable[[T], str],
    workers: int | None = None,
    window: int = 64,
) -> Iterator[tuple[T, np.ndarray | BadAudio]]:
    """Decodes the audio of `items` on `workers` processes, in order, streaming.

    At most `window` files are in flight, so memory stays bounded however
    large the corpus. Yields (item, int16 audio) or (item, BadAudio).
    """
    workers = workers or min(os.cpu_count() or 1, 8)
    with concurrent.futures.ProcessPoolExecutor(workers) as pool:
        pending: list[tuple[T, concurrent.futures.Future]] = []
        for item in items:
            pending.append((item, pool.submit(_load_or_error, path_of(item))))
            if len(pending) >= window:
                first, future = pending.pop(0)
                yield first, future.result()
        for item, future in pending:
            yield item, future.result()


def _load_or_error(path: str) -> np.ndarray | BadAudio:
    try:
        return load(path)
    except BadAudio as e:
        return e
