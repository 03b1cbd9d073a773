"""Prepares a corpus once into the data directory, in the format cpcjax reads.

  python -m cpcjax.prepare iemocap --manual_dir=/data/IEMOCAP_full_release
  python -m cpcjax.prepare msp_podcast --manual_dir=/data/MSP-PODCAST-Publish-1.11
  python -m cpcjax.prepare librispeech --manual_dir=/data/LibriSpeech \
      --subsets=train-clean-100,train-clean-360
  python -m cpcjax.prepare audio_folder --manual_dir=/data/ted --name=ted
  python -m cpcjax.prepare librispeech_tfds

Every corpus but `librispeech_tfds` is read from your own extracted copy and
needs neither the `tfds` CLI, Apache Beam nor ffmpeg; bad files are skipped
and listed with their reason in `<data_dir>/prepare_report_<builder>.tsv`.
`librispeech_tfds` is TFDS's stock `librispeech`: it downloads all of
LibriSpeech (57 GiB) and needs pydub and ffmpeg. A dataset already prepared as
TFRecord (as TFDS does by default) gets the ArrayRecord copy cpcjax reads,
written beside it, without preparing again.

Only cpcjax's own lines are printed: TFDS's messages and progress bars, and
TensorFlow's start-up notices, are off; errors still show.
"""

from __future__ import annotations

import os
import sys
from contextlib import nullcontext

from absl import flags

from cpcjax import cli, logs, paths

_DATA_DIR = flags.DEFINE_string(
    "data_dir",
    None,
    "Where prepared corpora go (default: $CPCJAX_DATA_DIR or "
    "~/cpcjax_data); the configs' data_dir field must point here.",
)
_MANUAL_DIR = flags.DEFINE_string(
    "manual_dir", None, "Your extracted copy of the corpus."
)
_SUBSETS = flags.DEFINE_list(
    "subsets",
    ["train-clean-100"],
    "librispeech: subsets to take, e.g. train-clean-100,train-clean-360.",
)
_NAME = flags.DEFINE_string(
    "name", None, "audio_folder: a name for this folder's dataset."
)
_SPEAKER_PATTERN = flags.DEFINE_string(
    "speaker_pattern",
    None,
    "audio_folder: regex on the relative path with a "
    "(?P<speaker>...) group; default: the first folder.",
)
_AUDIO_DIR = flags.DEFINE_string(
    "audio_dir", "Audios", "msp_podcast: audio folder name."
)
_LABELS_DIR = flags.DEFINE_string(
    "labels_dir", "Labels", "msp_podcast: labels folder name."
)

CORPORA = ("iemocap", "msp_podcast", "librispeech", "audio_folder", "librispeech_tfds")
# Downloaded by TFDS rather than read from the user's copy.
DOWNLOADED = ("librispeech_tfds",)


def add_array_record_copy(builder, label: str) -> None:
    """Writes each TFRecord shard of a prepared dataset again as ArrayRecord.

    The copies go beside the TFRecord files and become the dataset's file
    format, the TFRecord files an alternative, so `as_data_source` reads them;
    the examples are the same bytes in the same order. A line per split,
    starting with `label`, tells the progress.
    """
    import tensorflow as tf
    import tensorflow_datasets as tfds

    array_record = tfds.core.FileFormat.ARRAY_RECORD
    adapter = tfds.core.file_adapters.ADAPTER_FOR_FORMAT[array_record]
    for split in builder.info.splits.values():
        source = split.filename_template
        target = source.replace(filetype_suffix=array_record.file_suffix)
        for src, dst in zip(
            source.sharded_filepaths(split.num_shards),
            target.sharded_filepaths(split.num_shards),
        ):
            records = tf.data.TFRecordDataset(os.fspath(src)).as_numpy_iterator()
            # Renamed once whole, so an interrupted copy is never taken for one.
            partial = f"{dst}.incomplete"
            adapter.write_examples(partial, ((None, r) for r in records))
            os.replace(partial, dst)
        print(f"{label}: {split.name}: {split.num_shards} shards copied", flush=True)
    # The primary format, not an alternative: TFDS reads back a builder's
    # alternative formats into its dataset info but not into the formats it
    # offers `as_data_source`.
    streamed = builder.info.file_format
    builder.info.set_file_format(
        array_record, override=True, override_if_initialized=True
    )
    if streamed not in builder.info.alternative_file_formats:
        builder.info.add_alternative_file_format(streamed)
    builder.info.write_to_directory(builder.data_dir)


def write_index(builder, corpus: str) -> None:
    """Writes the index runs start from (`cpcjax.data.index`) if it is missing.

    cpcjax's builders write it as they prepare; TFDS's stock librispeech, and
    a dataset prepared before cpcjax wrote indexes, get it here.
    """
    from cpcjax.data import index

    count = index.ensure(builder)
    if count:
        print(
            f"{corpus}: indexed {count} utterances in {index.index_path(builder)}",
            flush=True,
        )


def prepare(corpus: str, data_dir: str, manual_dir: str | None = None, **options):
    """Prepares `corpus` into `data_dir` as ArrayRecord files, once.

    Args:
        corpus: one of CORPORA.
        data_dir: the data directory.
        manual_dir: the user's extracted copy; unused for DOWNLOADED corpora
            and for a dataset already prepared.
        **options: `sources.builder_for`'s options (subsets, name, ...).

    Returns:
        The builder, prepared.

    Raises:
        LayoutError: no manual dir, one not laid out as the corpus is, or
            one without a usable file (`NoUsableAudio`).
    """
    import tensorflow_datasets as tfds

    from cpcjax.data import sources
    from cpcjax.data.corpora.base import LayoutError

    builder = sources.builder_for(corpus, data_dir, **options)
    if builder.is_prepared():
        if sources.random_access(builder):
            print(
                f"{corpus}: already prepared in {builder.data_dir}; nothing to do "
                f"(delete that folder to prepare again)"
            )
        else:
            print(
                f"{corpus}: {builder.data_dir} holds "
                f"{builder.info.file_format.value} files only; adding the "
                f"ArrayRecord copy cpcjax reads",
                flush=True,
            )
            add_array_record_copy(builder, corpus)
            print(f"{corpus}: ArrayRecord copy written in {builder.data_dir}")
        write_index(builder, corpus)
        return builder
    if corpus in DOWNLOADED:
        print(
            f"{corpus}: downloading from {builder.info.homepage} and preparing in "
            f"{builder.data_dir}; this takes hours",
            flush=True,
        )
    else:
        if not manual_dir:
            raise LayoutError(
                f"--manual_dir is required: your extracted copy of {corpus}"
            )
        manual_dir = paths.resolve(manual_dir)
        print(f"{corpus}: preparing {manual_dir} in {builder.data_dir}", flush=True)
    # ArrayRecord writes local files only, and the corpora's readers read
    # local audio: a remote data dir is prepared locally and copied, a remote
    # manual dir copied here first.
    with (
        paths.staged_dir(data_dir, exclude=paths.TFDS_SCRATCH) as local_dir,
        paths.local_copy(manual_dir) if manual_dir else nullcontext() as local_manual,
    ):
        staged = sources.builder_for(corpus, local_dir, **options)
        # TFDS announces its start and end itself; cpcjax prints its own lines.
        staged._log_download_bytes = staged._log_download_done = lambda: None
        staged.download_and_prepare(
            file_format="array_record",
            download_config=tfds.download.DownloadConfig(
                manual_dir=local_manual, try_download_gcs=False
            ),
        )
        write_index(staged, corpus)
    builder = sources.builder_for(corpus, data_dir, **options)
    print(f"{corpus}: prepared in {builder.data_dir}")
    return builder


def main(argv) -> None:
    if len(argv) != 2 or argv[1] not in CORPORA:
        cli.fail(
            f"name one corpus: python -m cpcjax.prepare {{{'|'.join(CORPORA)}}} "
            f"--manual_dir=DIR (see --help)"
        )
    corpus = argv[1]
    if corpus == "audio_folder" and not _NAME.value:
        cli.fail("audio_folder needs --name=NAME (the dataset's name in configs)")
    logs.import_tensorflow()
    import tensorflow_datasets as tfds

    # cli.run has quieted the libraries' logging (cpcjax.logs); TFDS's bars
    # print regardless, and cpcjax shows its own progress.
    tfds.disable_progress_bar()

    from cpcjax.configs.base import DEFAULT_DATA_DIR
    from cpcjax.data.corpora.base import LayoutError

    data_dir = paths.resolve(
        _DATA_DIR.value or os.environ.get("CPCJAX_DATA_DIR", DEFAULT_DATA_DIR)
    )
    paths.check_reachable(data_dir, "--data_dir")
    if _MANUAL_DIR.value:
        paths.check_reachable(_MANUAL_DIR.value, "--manual_dir")
    try:
        prepare(
            corpus,
            data_dir,
            _MANUAL_DIR.value,
            subsets=tuple(_SUBSETS.value),
            name=_NAME.value,
            speaker_pattern=_SPEAKER_PATTERN.value,
            audio_dir=_AUDIO_DIR.value,
            labels_dir=_LABELS_DIR.value,
        )
    except LayoutError as e:
        # Whole, not cli.fail's first line: a wrong manual dir's error goes on
        # with the layout expected.
        print(f"error: {e}", file=sys.stderr)
        sys.exit(cli.EXIT_USAGE)


if __name__ == "__main__":
    cli.run(main, doc=__doc__)
