"""Input pipeline over random-access TFDS data sources, keyed by step.

Every batch is a pure function of (seed, step): the utterances of step s come
from a permutation seeded by (seed, epoch) and the crops from a generator
seeded by (seed, step). So a resumed run sees exactly the batches an
uninterrupted run would, with nothing to checkpoint but the step, and the
rows of a global batch do not depend on how many processes or devices load
it: each process computes the same global index list and loads only its own
rows. We chose this over an iterator pipeline (tf.data, or grain's
checkpointable iterators) because the state to restore is one integer that
the train state already holds.

Audio is stored as int16 and scaled to float32 in [-1, 1) here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import tqdm

from cpcjax.config import ConfigError
from cpcjax.constants import FRAME_HOP, SAMPLE_RATE


@dataclasses.dataclass(frozen=True)
class Utterances:
    """A subset of a random-access source plus the metadata samplers need.

    `source[i]` returns a dict with an int16 "audio" array; the other fields
    are aligned with `records`, the source indices of this subset.
    """

    source: Any
    records: np.ndarray  # [N] indices into source
    lengths: np.ndarray  # [N] samples
    speakers: np.ndarray  # [N] str
    names: np.ndarray  # [N] utterance ids
    labels: np.ndarray | None = None  # [N, 3] activation, valence, dominance
    sessions: np.ndarray | None = None  # [N] int
    categories: np.ndarray | None = None  # [N] int
    partitions: np.ndarray | None = None  # [N] str, official split of each utterance

    def __len__(self) -> int:
        return len(self.records)

    def subset(self, rows: np.ndarray) -> Utterances:
        rows = np.asarray(rows, dtype=np.int64)

        def pick(a):
            return None if a is None else a[rows]

        return Utterances(
            source=self.source,
            records=self.records[rows],
            lengths=self.lengths[rows],
            speakers=self.speakers[rows],
            names=self.names[rows],
            labels=pick(self.labels),
            sessions=pick(self.sessions),
            categories=pick(self.categories),
            partitions=pick(self.partitions),
        )

    def audio(self, row: int) -> np.ndarray:
        """float32 waveform of row `row`."""
        wav = self.source[int(self.records[row])]["audio"]
        return np.asarray(wav, dtype=np.float32) / 32768.0


def index_fields(source, labeled: bool, desc: str) -> dict[str, np.ndarray]:
    """What the samplers need of every record, read from the records themselves.

    This reads every record whole, audio included: a prepared corpus keeps
    these fields in its index (`cpcjax.data.index`) so that a run does not.

    Returns:
        {"lengths", "speakers", "names"} and, if `labeled`, {"labels",
        "sessions", "categories"}: arrays aligned with the source's records.
    """
    n = len(source)
    lengths = np.zeros(n, np.int64)
    speakers, names, labels, sessions, categories = [], [], [], [], []
    for i in tqdm.trange(
        n, desc=f"indexing {desc}", unit="utt", leave=False, disable=n < 2000
    ):
        ex = source[i]
        lengths[i] = len(ex["audio"])
        speakers.append(_text(ex.get("speaker", "")))
        names.append(_text(ex.get("id", str(i))))
        if labeled:
            labels.append(np.asarray(ex["labels"], np.float32))
            sessions.append(int(ex.get("session", 0)))
            categories.append(int(ex.get("category", -1)))
    fields = {
        "lengths": lengths,
        "speakers": np.asarray(speakers, dtype=str),
        "names": np.asarray(names, dtype=str),
    }
    if labeled:
        fields.update(
            labels=np.asarray(labels, np.float32).reshape(n, 3),
            sessions=np.asarray(sessions, np.int64),
            categories=np.asarray(categories, np.int64),
        )
    return fields


def from_fields(
    source,
    fields: dict[str, np.ndarray],
    labeled: bool,
    partitions: np.ndarray | None = None,
) -> Utterances:
    """`Utterances` of every record of `source`, described by `fields`.

    Nothing is read from `source` here: its audio is read when a batch needs it.
    """
    return Utterances(
        source=source,
        records=np.arange(len(fields["lengths"])),
        lengths=fields["lengths"],
        speakers=fields["speakers"],
        names=fields["names"],
        labels=fields["labels"] if labeled else None,
        sessions=fields["sessions"] if labeled else None,
        categories=fields["categories"] if labeled else None,
        partitions=partitions,
    )


def index_source(
    source, labeled: bool, desc: str, partitions: np.ndarray | None = None
) -> Utterances:
    """`Utterances` of a source without an index: reads every record once."""
    return from_fields(source, index_fields(source, labeled, desc), labeled, partitions)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch, 0x5EED]).permutation(n)


class CropBatches:
    """Fixed-length random crops for CPC: batch(step) -> {"wav", "lengths", "speakers"}.

    "speakers" holds int ids (one per distinct speaker name of the corpus, an
    empty name being one more speaker) for same-speaker negative pools.
    """

    def __init__(
        self, utts: Utterances, window: int, global_batch: int, seed: int, rows: slice
    ):
        keep = np.flatnonzero(utts.lengths >= window)
        if len(keep) == 0:
            raise ConfigError(
                f"no utterance is as long as the pretraining window ({window} "
                f"samples); lower config.pretrain.window"
            )
        self.skipped = len(utts) - len(keep)
        self.utts = utts.subset(keep)
        # Ids from the sorted names: the same on every process.
        self.speaker_ids = np.unique(self.utts.speakers, return_inverse=True)[1]
        self.speaker_ids = self.speaker_ids.reshape(-1).astype(np.int32)
        self.window, self.global_batch, self.seed, self.rows = (
            window,
            global_batch,
            seed,
            rows,
        )

    def global_rows(self, step: int) -> np.ndarray:
        """Utterance rows of the global batch of `step`: epochs of permutations."""
        n, b = len(self.utts), self.global_batch
        positions = np.arange(step * b, (step + 1) * b)
        out = np.empty(b, np.int64)
        for epoch in np.unique(positions // n):
            sel = positions // n == epoch
            out[sel] = _epoch_order(self.seed, int(epoch), n)[positions[sel] % n]
        return out

    def batch(self, step: int) -> dict[str, np.ndarray]:
        rows = self.global_rows(step)
        spare = self.utts.lengths[rows] - self.window
        # Offsets for the whole global batch, then this process' share: the
        # crop of a row does not depend on the process count.
        offsets = (
            np.random.default_rng([self.seed, step, 0xC209]).random(len(rows))
            * (spare + 1)
        ).astype(np.int64)
        wav = np.stack(
            [
                self.utts.audio(r)[o : o + self.window]
                for r, o in zip(rows[self.rows], offsets[self.rows])
            ]
        )
        lengths = np.full(len(wav), self.window, np.int32)
        speakers = self.speaker_ids[rows[self.rows]]
        return {"wav": wav, "lengths": lengths, "speakers": speakers}


def bucket_lengths(buckets_seconds: Sequence[float]) -> list[int]:
    """Bucket lengths in samples, rounded up to whole frames."""
    hop = FRAME_HOP
    return [int(-(-round(s * SAMPLE_RATE) // hop) * hop) for s in buckets_seconds]


def _bucket_of(lengths: np.ndarray, buckets: Sequence[int]) -> np.ndarray:
    return np.minimum(np.searchsorted(buckets, lengths, side="left"), len(buckets) - 1)


class BucketBatches:
    """Padded, masked, length-bucketed batches of labeled utterances.

    batch(step) -> {"wav" [b, L], "lengths" [b], "targets" [b, 3], "weights" [b]}
    with L one of the bucket lengths, so a run compiles one program per
    bucket. Each epoch shuffles every bucket, cuts it into full batches
    (topping up the last from the same bucket) and shuffles the batch order.
    Utterances longer than the largest bucket get a random crop of it.
    Targets are standardised with (mean, std) of the training labels.
    """

    def __init__(
        self,
        utts: Utterances,
        buckets: Sequence[int],
        global_batch: int,
        seed: int,
        rows: slice,
        label_mean: np.ndarray,
        label_std: np.ndarray,
    ):
        self.utts, self.buckets = utts, list(buckets)
        self.global_batch, self.seed, self.rows = global_batch, seed, rows
        self.label_mean, self.label_std = label_mean, label_std
        self.bucket = _bucket_of(utts.lengths, self.buckets)
        members = [np.flatnonzero(self.bucket == k) for k in range(len(self.buckets))]
        self.members = [m for m in members if len(m)]
        self.batches_per_epoch = sum(-(-len(m) // global_batch) for m in self.members)
        self._cached_epoch: tuple[int, list[np.ndarray]] | None = None

    def _schedule(self, epoch: int) -> list[np.ndarray]:
        if self._cached_epoch is None or self._cached_epoch[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch, 0xB0C7])
            batches = []
            for m in self.members:
                order = rng.permutation(m)
                n_batches = -(-len(order) // self.global_batch)
                order = np.resize(order, n_batches * self.global_batch)
                batches.extend(order.reshape(n_batches, self.global_batch))
            self._cached_epoch = (
                epoch,
                [batches[i] for i in rng.permutation(len(batches))],
            )
        return self._cached_epoch[1]

    def batch(self, step: int) -> dict[str, np.ndarray]:
        epoch, k = divmod(step, self.batches_per_epoch)
        rows = self._schedule(epoch)[k]
        length = self.buckets[self.bucket[rows[0]]]
        crop_rng = np.random.default_rng([self.seed, step, 0xC809])
        starts = (
            crop_rng.random(len(rows))
            * (np.maximum(self.utts.lengths[rows] - length, 0) + 1)
        ).astype(np.int64)
        mine = rows[self.rows]
        wav, lengths = _pad(
            [
                self.utts.audio(r)[s : s + length]
                for r, s in zip(mine, starts[self.rows])
            ],
            length,
        )
        targets = (self.utts.labels[mine] - self.label_mean) / self.label_std
        return {
            "wav": wav,
            "lengths": lengths,
            "targets": targets.astype(np.float32),
            "weights": np.ones(len(mine), np.float32),
        }


def _pad(wavs: list[np.ndarray], length: int) -> tuple[np.ndarray, np.ndarray]:
    out = np.zeros((len(wavs), length), np.float32)
    lengths = np.zeros(len(wavs), np.int32)
    for i, w in enumerate(wavs):
        out[i, : len(w)] = w
        lengths[i] = len(w)
    return out, lengths


def eval_buckets(utts: Utterances, buckets: Sequence[int]) -> list[int]:
    """Training buckets, extended by doubling until the longest utterance fits."""
    out = list(buckets)
    while out[-1] < utts.lengths.max():
        out.append(out[-1] * 2)
    return out


def eval_batch_sizes(global_batch: int, multiple: int = 1) -> list[int]:
    """The batch sizes `eval_batches` uses, largest first.

    `global_batch`, then halvings of it that stay a multiple of `multiple` (the
    device count) and at least an eighth of it: a bucket's last few utterances
    fill a small batch instead of a full one of padding rows, and a program
    compiles for at most four sizes per bucket.
    """
    sizes = [global_batch]
    floor = max(multiple, global_batch // 8)
    while sizes[-1] % 2 == 0 and sizes[-1] // 2 % multiple == 0:
        if sizes[-1] // 2 < floor:
            break
        sizes.append(sizes[-1] // 2)
    return sizes


def eval_batches(
    utts: Utterances,
    buckets: Sequence[int],
    global_batch: int,
    multiple: int = 1,
    rows_of: Callable[[int], slice] | None = None,
) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Every utterance once, whole, in padded bucketed batches.

    Each bucket's utterances go in batches of `global_batch`; the rest in the
    largest of `eval_batch_sizes` that it fills (the smallest, padded, when
    none is filled).

    Args:
      utts: the utterances.
      buckets: bucket lengths in samples (doubled until the longest fits).
      global_batch: the largest batch.
      multiple: every batch size is a multiple of this (the device count).
      rows_of: a global batch size -> the slice of its rows this process
        loads; all of them if None.

    Yields (global row ids with -1 for padding rows, this process' batch).
    Padding rows have weight 0 and length 0.
    """
    sizes = eval_batch_sizes(global_batch, multiple)
    buckets = eval_buckets(utts, buckets)
    bucket = _bucket_of(utts.lengths, buckets)
    for k, length in enumerate(buckets):
        members = np.flatnonzero(bucket == k)
        start = 0
        while start < len(members):
            left = len(members) - start
            size = next((b for b in sizes if b <= left), sizes[-1])
            ids = np.full(size, -1, np.int64)
            chunk = members[start : start + size]
            ids[: len(chunk)] = chunk
            start += size
            mine = ids if rows_of is None else ids[rows_of(size)]
            wav, lengths = _pad(
                [utts.audio(r) if r >= 0 else np.zeros(0, np.float32) for r in mine],
                length,
            )
            yield (
                ids,
                {
                    "wav": wav,
                    "lengths": lengths,
                    "weights": (mine >= 0).astype(np.float32),
                },
            )
