"""The index of a prepared dataset: what the samplers need, without the audio.

A run needs each utterance's length, speaker and name, and for a labeled
corpus its labels, session and category; never its audio before a batch
needs it. Reading these fields from the examples means reading every example
whole (11.6 GB for LibriSpeech train-clean-100) before the first step, on
every host. So preparation writes them once, for every split, into
`cpcjax_index_v1.npz` in the builder's versioned data dir, beside the
dataset's files (TFDS replaces that dir whole when it prepares again), and a
run reads only that file.

A dataset prepared before cpcjax wrote an index is indexed on first use, by
reading it once. Process 0 caches the index beside the dataset; where the data
dir is read-only, the run goes on without caching and indexes again next time.

Every path goes through etils.epath, so the data dir may be on gs://.
"""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Sequence

import numpy as np
from etils import epath

from cpcjax.data import pipeline

log = logging.getLogger(__name__)

VERSION = 1
FILE_NAME = f"cpcjax_index_v{VERSION}.npz"
BASE_FIELDS = ("lengths", "speakers", "names")
LABEL_FIELDS = ("labels", "sessions", "categories")
# TFDS's stock librispeech names two fields otherwise.
STOCK_FIELDS = {"speech": "audio", "speaker_id": "speaker"}


class IndexedBuilder:
    """Mixin for a TFDS builder: `download_and_prepare` also writes the index.

    Put it before the TFDS base class. A dataset that was prepared already
    (so that TFDS returns at once) gets its index now if it lacks one.
    """

    def download_and_prepare(self, *args, **kwargs):
        super().download_and_prepare(*args, **kwargs)
        ensure(self)


def index_path(builder) -> epath.Path:
    """Where the index of a prepared `builder` lives."""
    return epath.Path(builder.data_dir) / FILE_NAME


def is_labeled(builder) -> bool:
    """Whether the dataset's examples carry emotion labels."""
    return "labels" in builder.info.features


def source(builder, split: str):
    """Random access to the examples of `split`, with cpcjax's field names."""
    data = builder.as_data_source(split)
    if "speech" in builder.info.features:
        from cpcjax.data.sources import RenamedSource

        return RenamedSource(data, STOCK_FIELDS)
    return data


def _num_examples(builder, split: str) -> int:
    return int(builder.info.splits[split].num_examples)


def read(builder) -> dict[str, dict[str, np.ndarray]]:
    """The index file's fields by split; {} if there is no usable index.

    A split whose count differs from the dataset's is left out, so it is
    indexed again rather than trusted.
    """
    path = index_path(builder)
    # exists() rather than FileNotFoundError: on gs:// through TensorFlow's
    # file system a missing file raises TensorFlow's own error.
    if not path.exists():
        return {}
    with path.open("rb") as f:
        data = f.read()
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, EOFError) as e:
        log.warning("%s: unreadable index, indexing again (%s)", path, e)
        return {}
    if int(arrays.get("version", -1)) != VERSION:
        return {}
    out = {}
    for split in arrays["splits"].tolist():
        fields = {
            k.split(".", 1)[1]: v
            for k, v in arrays.items()
            if k.startswith(f"{split}.") and k != f"{split}.num_examples"
        }
        count = int(arrays[f"{split}.num_examples"])
        if split in builder.info.splits and count == _num_examples(builder, split):
            out[split] = fields
    return out


def write(builder, index: dict[str, dict[str, np.ndarray]]) -> epath.Path:
    """Writes `index` (fields by split) as the builder's index file.

    It is written under a temporary name and moved over any older index, so a
    reader never sees half a file.
    """
    arrays = {"version": np.asarray(VERSION), "splits": np.asarray(sorted(index))}
    for split, fields in index.items():
        arrays[f"{split}.num_examples"] = np.asarray(len(fields["lengths"]))
        arrays.update({f"{split}.{k}": v for k, v in fields.items()})
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path = index_path(builder)
    partial = path.parent / f"{path.name}.incomplete-{uuid.uuid4().hex}"
    partial.write_bytes(buffer.getvalue())
    try:
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def _scan(builder, split: str) -> dict[str, np.ndarray]:
    return pipeline.index_fields(
        source(builder, split), is_labeled(builder), f"{builder.name} {split}"
    )


def ensure(builder) -> int:
    """Indexes every split of a prepared random-access dataset that lacks one.

    Called when a dataset is prepared; reads the dataset once if needed.

    Returns:
        The number of utterances indexed now (0: the index was complete).
    """
    from cpcjax.data import sources

    if not builder.is_prepared() or not sources.random_access(builder):
        return 0
    index = read(builder)
    missing = [s for s in builder.info.splits if s not in index]
    if not missing:
        return 0
    index.update({s: _scan(builder, s) for s in missing})
    write(builder, index)
    return sum(len(index[s]["lengths"]) for s in missing)


def _is_main_process() -> bool:
    import jax

    return jax.process_index() == 0


def load(builder, splits: Sequence[str], desc: str) -> dict[str, dict]:
    """The index of `splits`, read from the index file.

    Splits it lacks (a dataset prepared before cpcjax wrote an index) are
    indexed now by reading their examples once; process 0 then caches the
    whole index beside the dataset, if it can write there.
    """
    index = read(builder)
    missing = [s for s in splits if s not in index]
    if not missing:
        return index
    count = sum(_num_examples(builder, s) for s in missing)
    path = index_path(builder)
    log.info(
        "%s: no index in %s (prepared before cpcjax wrote one): reading its %d "
        "utterances once to index them; the index is cached there for later runs",
        desc,
        path.parent,
        count,
    )
    index.update({s: _scan(builder, s) for s in missing})
    if _is_main_process():
        try:
            write(builder, index)
        except Exception as e:
            # Whatever the file system raises (read-only, no permission on a
            # bucket), the run needs only the index in memory.
            log.warning(
                "%s: could not cache the index in %s (%s: %s); later runs will "
                "index it again",
                desc,
                path.parent,
                type(e).__name__,
                e,
            )
    return index


def utterances(
    builder,
    splits: Sequence[str],
    labeled: bool,
    desc: str,
    partitions: bool = False,
) -> pipeline.Utterances:
    """`Utterances` of the concatenated `splits` of a prepared dataset.

    Reads the index, not the audio: audio is read when a batch needs it.

    Args:
        builder: a prepared TFDS builder with random access (ArrayRecord).
        splits: its splits to take, in this order.
        labeled: whether to take the labels, sessions and categories.
        desc: the corpus' name in log lines.
        partitions: whether each utterance records its split as `partitions`.
    """
    index = load(builder, splits, desc)
    keys = BASE_FIELDS + (LABEL_FIELDS if labeled else ())
    fields = {k: np.concatenate([index[s][k] for s in splits]) for k in keys}
    data = [source(builder, s) for s in splits]
    if len(data) == 1:
        (data,) = data
    else:
        from cpcjax.data.sources import ConcatSource

        data = ConcatSource(data)
    names = None
    if partitions:
        names = np.concatenate([[s] * len(index[s]["lengths"]) for s in splits])
    return pipeline.from_fields(data, fields, labeled, partitions=names)
