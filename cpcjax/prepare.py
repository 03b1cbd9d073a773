"""Prepares a corpus from your own extracted copy, once, into the data directory.

  python -m cpcjax.prepare iemocap --manual_dir=/data/IEMOCAP_full_release
  python -m cpcjax.prepare msp_podcast --manual_dir=/data/MSP-PODCAST-Publish-1.11
  python -m cpcjax.prepare librispeech --manual_dir=/data/LibriSpeech --subsets=train-clean-100
  python -m cpcjax.prepare audio_folder --manual_dir=/data/ted --name=ted

Needs neither the `tfds` CLI, Apache Beam nor ffmpeg. Bad files are skipped
and listed with their reason in `<data_dir>/prepare_report_<builder>.tsv`.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

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

CORPORA = ("iemocap", "msp_podcast", "librispeech", "audio_folder")


def main(argv) -> None:
    if len(argv) != 2 or argv[1] not in CORPORA:
        print(
            f"usage: python -m cpcjax.prepare {{{'|'.join(CORPORA)}}} --manual_dir=DIR",
            file=sys.stderr,
        )
        sys.exit(2)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow_datasets as tfds
    from absl import logging as absl_logging

    # TFDS's own INFO lines would bury the progress bar and the summary.
    absl_logging.set_verbosity(absl_logging.WARNING)

    from cpcjax.config import DEFAULT_DATA_DIR
    from cpcjax.data import sources
    from cpcjax.data.corpora.base import LayoutError

    corpus = argv[1]
    if corpus == "audio_folder" and not _NAME.value:
        print(
            "error: audio_folder needs --name=NAME (the dataset's name in configs)",
            file=sys.stderr,
        )
        sys.exit(2)
    if not _MANUAL_DIR.value:
        print(
            f"error: --manual_dir is required: your extracted copy of {corpus}",
            file=sys.stderr,
        )
        sys.exit(2)
    data_dir = os.path.expanduser(
        _DATA_DIR.value or os.environ.get("CPCJAX_DATA_DIR", DEFAULT_DATA_DIR)
    )
    options = {
        "subsets": tuple(_SUBSETS.value),
        "name": _NAME.value,
        "speaker_pattern": _SPEAKER_PATTERN.value,
        "audio_dir": _AUDIO_DIR.value,
        "labels_dir": _LABELS_DIR.value,
    }
    builder = sources.builder_for(corpus, data_dir, **options)
    if builder.is_prepared():
        print(
            f"{corpus}: already prepared in {builder.data_dir}; nothing to do "
            f"(delete that folder to prepare again)"
        )
        return
    try:
        builder.download_and_prepare(
            file_format="array_record",
            download_config=tfds.download.DownloadConfig(
                manual_dir=os.path.abspath(os.path.expanduser(_MANUAL_DIR.value)),
                try_download_gcs=False,
            ),
        )
    except LayoutError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"{corpus}: prepared in {builder.data_dir}")


if __name__ == "__main__":
    app.run(main)
