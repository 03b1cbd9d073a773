"""TFDS builder of any folder of audio files as unlabeled pretraining speech.

For corpora without a builder of their own, e.g. TED talks (the paper's
future work): every `.wav`, `.flac` and `.ogg` file under the manual dir,
found recursively in sorted order (dot-files and dot-folders skipped, other
extensions ignored), becomes unlabeled speech in one "train" split.

Each config is one dataset, named by the user (`folder_config("ted")`):
different folders need different names, since TFDS finds a prepared dataset
by name alone.

Speaker: `speaker_pattern` is a regular expression searched (`re.search`) in
the file's path relative to the manual dir, written with "/" on every OS; its
named group `speaker` is the speaker. The default, `^(?P<speaker>[^/]+)/`, is
the first folder (`talkA/part1.wav` -> "talkA"). Where the pattern does not
match (e.g. a file directly in the manual dir, for the default) the speaker
is "unknown".

Long files are cut into chunks of at most `chunk_seconds` (default 60 s) of
near-equal length, one example each, with ids "<id>#0", "<id>#1", ...; a
file no longer than that is one example with id "<id>" (its relative path
without extension). Chunks keep each stored example small: the CPC pipeline
reads a whole example to crop one window of about a second from it, so an
hour-long example would cost 115 MB of reading per window. Preparation still
decodes every file whole (in a worker process, as float32 at the file's own
rate and channel count: about 1.3 GB for an hour of 44.1 kHz stereo, with
up to 8 workers at once), so files of up to about an hour are fine on a
machine with 16 GB or more; cut longer recordings into parts beforehand.

Files that are unreadable, empty, silent, clipped or too short are skipped
and listed with their reason in `prepare_report_audio_folder_<name>.tsv` in the
data directory.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re

import numpy as np
import tensorflow_datasets as tfds

from cpcjax.data import audio
from cpcjax.data.corpora import base

DEFAULT_SPEAKER_PATTERN = r"^(?P<speaker>[^/]+)/"
DEFAULT_EXTENSIONS = (".wav", ".flac", ".ogg")
UNKNOWN_SPEAKER = "unknown"
CHUNK_SECONDS = 60.0
# What TFDS accepts in a config name (it becomes a folder of the data dir).
_CONFIG_NAME = re.compile(r"^[\w\-.+]+$")

_DESCRIPTION = """\
Unlabeled speech from a folder of audio files (wav, flac, ogg), at 16 kHz
mono, for contrastive pretraining. Each example is one file, or one chunk of
at most `chunk_seconds` of a longer file, with the speaker taken from the
file's path.
"""


@dataclasses.dataclass(eq=False)
class AudioFolderConfig(tfds.core.BuilderConfig):
    """Which files of the folder to take, and where their speaker is written.

    Make one with `folder_config(name, ...)`. The name is the dataset's
    identity: prepare another folder, pattern or chunk length under another
    name (or delete the prepared one first).

    Attributes:
        speaker_pattern: regex searched in the path relative to the manual
            dir ("/"-separated), with a named group `speaker`; files it does
            not match get speaker "unknown".
        extensions: file endings to take, case-insensitive.
        chunk_seconds: longest example; longer files are cut into chunks of
            near-equal length. None keeps every file whole.
    """

    speaker_pattern: str = DEFAULT_SPEAKER_PATTERN
    extensions: tuple[str, ...] = DEFAULT_EXTENSIONS
    chunk_seconds: float | None = CHUNK_SECONDS

    def __post_init__(self):
        if not _CONFIG_NAME.match(self.name or ""):
            raise ValueError(
                f"audio_folder: name {self.name!r} must be letters, "
                f"digits, '-', '_', '.' or '+' (it names the dataset's "
                f"folder)"
            )
        try:
            pattern = re.compile(self.speaker_pattern)
        except re.error as e:
            raise ValueError(
                f"{self.name}: speaker_pattern {self.speaker_pattern!r} "
                f"is not a regular expression ({e})"
            ) from None
        if "speaker" not in pattern.groupindex:
            raise ValueError(
                f"{self.name}: speaker_pattern {self.speaker_pattern!r} "
                f"has no named group (?P<speaker>...)"
            )
        if isinstance(self.extensions, str):
            self.extensions = (self.extensions,)
        self.extensions = tuple("." + e.lower().lstrip(".") for e in self.extensions)
        if not self.extensions:
            raise ValueError(f"{self.name}: extensions is empty")
        chunk = self.chunk_seconds
        if chunk is not None and not chunk > audio.MIN_SECONDS:
            raise ValueError(
                f"{self.name}: chunk_seconds must be None or more than "
                f"{audio.MIN_SECONDS} s, got {self.chunk_seconds}"
            )

    def speaker_of(self, relative_path: str) -> str:
        """The speaker of a file, from its "/"-separated path under the manual dir."""
        m = re.search(self.speaker_pattern, relative_path)
        return (m and m.group("speaker")) or UNKNOWN_SPEAKER


def folder_config(
    name: str,
    speaker_pattern: str = DEFAULT_SPEAKER_PATTERN,
    extensions: tuple[str, ...] = DEFAULT_EXTENSIONS,
    chunk_seconds: float | None = CHUNK_SECONDS,
) -> AudioFolderConfig:
    """The config of one folder's dataset.

    Args:
        name: the dataset's name, e.g. "ted" (a folder of the data dir).
        speaker_pattern: regex with a named group `speaker`, searched in each
            file's path relative to the manual dir; default: the first folder.
        extensions: file endings to take.
        chunk_seconds: longest example (longer files are cut); None: no cut.

    Returns:
        The config to pass as `AudioFolder(config=...)`.
    """
    config = AudioFolderConfig(
        name=name,
        speaker_pattern=speaker_pattern,
        extensions=extensions,
        chunk_seconds=chunk_seconds,
    )
    cut = f"chunks of at most {chunk_seconds:g} s" if chunk_seconds else "whole files"
    config.description = (
        f"{', '.join(config.extensions)} files of a folder, {cut}; "
        f"speaker from {speaker_pattern!r}."
    )
    return config


@dataclasses.dataclass(frozen=True)
class AudioFile:
    """One audio file of the folder.

    Attributes:
        id: path relative to the manual dir without extension, "/"-separated.
        speaker: from the config's speaker_pattern, or "unknown".
        path: the file.
    """

    id: str
    speaker: str
    path: str


def chunks(wav: np.ndarray, max_samples: int | None) -> list[np.ndarray]:
    """`wav` cut into the fewest near-equal parts of at most `max_samples`.

    Equal parts rather than full chunks plus a remainder, so no chunk is a
    sliver too short to crop a training window from.
    """
    if not max_samples or len(wav) <= max_samples:
        return [wav]
    return np.array_split(wav, math.ceil(len(wav) / max_samples))


class AudioFolder(base.ManualCorpusBuilder):
    """Any folder of wav/flac/ogg files as unlabeled speech."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    # No predefined configs: each folder is a dataset named by the user.
    BUILDER_CONFIGS = []
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Pass the folder holding your audio files (wav, flac or ogg, any rate and
channel count, in sub-folders as you like) as the manual dir.
"""
    EXPECTED_LAYOUT = """\
<folder>/                       <- manual_dir
  <speaker>/.../<file>.wav      (or .flac, .ogg; any depth; speaker from the
                                 config's speaker_pattern, default the first
                                 folder)
"""

    def __init__(
        self, *, config: str | tfds.core.BuilderConfig | None = None, **kwargs
    ):
        # TFDS resolves a string only among predefined configs, and there are
        # none: a bare name means that name with the default settings (enough
        # to read a prepared dataset, whatever pattern prepared it).
        if config is None:
            raise ValueError(
                "audio_folder needs a config naming the folder's dataset, "
                "e.g. AudioFolder(config=folder_config('ted'), "
                "data_dir=...)"
            )
        if isinstance(config, str):
            config = folder_config(config)
        super().__init__(config=config, **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        config = self.builder_config
        return self.dataset_info_from_configs(
            description=_DESCRIPTION,
            features=tfds.features.FeaturesDict(
                {
                    "audio": base.audio_feature(),
                    "id": tfds.features.Text(
                        doc="Path under the folder without extension, '/'-separated, "
                        "e.g. talkA/part1; '#<k>' appended for the k-th chunk of a "
                        "long file."
                    ),
                    "speaker": tfds.features.Text(
                        doc=f"From speaker_pattern {config.speaker_pattern!r}; "
                        f"'{UNKNOWN_SPEAKER}' where it does not match."
                    ),
                }
            ),
            supervised_keys=None,
            # Which settings prepared this name, for whoever reads it later.
            metadata=tfds.core.MetadataDict(
                speaker_pattern=config.speaker_pattern,
                extensions=list(config.extensions),
                chunk_seconds=config.chunk_seconds,
            ),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = self.manual_root(dl_manager)
        files = self.audio_files(root)
        if not files:
            raise base.LayoutError(
                f"{self.name}/{self.builder_config.name}: {root} holds no "
                f"{', '.join(self.builder_config.extensions)} file; expected layout:\n"
                f"{self.EXPECTED_LAYOUT}"
            )
        return {"train": self._generate_examples(files)}

    def audio_files(self, root: str) -> list[AudioFile]:
        """Every file under `root` with one of the config's extensions, sorted by path.

        A file whose id (path without extension) was already taken, e.g.
        `a.wav` beside `a.flac`, is recorded in `self.problems`.
        """
        config = self.builder_config
        found: dict[str, AudioFile] = {}
        for dirpath, dirnames, filenames in os.walk(root):
            # Sorted for reproducible ids order and report; dot-entries are OS
            # clutter (macOS `._*` resource forks), not audio.
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith(".") or not name.lower().endswith(config.extensions):
                    continue
                path = os.path.join(dirpath, name)
                relative = os.path.relpath(path, root).replace(os.sep, "/")
                file_id = os.path.splitext(relative)[0]
                if file_id in found:
                    self.problems.add(
                        "audio",
                        path,
                        f"same id {file_id!r} as "
                        f"{found[file_id].path} (kept the first)",
                    )
                    continue
                found[file_id] = AudioFile(file_id, config.speaker_of(relative), path)
        return list(found.values())

    def _generate_examples(self, files: list[AudioFile]):
        config = self.builder_config
        max_samples = (
            int(config.chunk_seconds * audio.SAMPLE_RATE)
            if config.chunk_seconds
            else None
        )
        cut_files = examples_of_cut = 0
        for item, wav in self.decoded(
            files, lambda f: f.path, desc=f"{self.name}/{config.name}: decoding"
        ):
            parts = chunks(wav, max_samples)
            if len(parts) == 1:
                yield item.id, {"audio": wav, "id": item.id, "speaker": item.speaker}
                continue
            for k, part in enumerate(parts):
                chunk_id = f"{item.id}#{k}"
                yield chunk_id, {"audio": part, "id": chunk_id, "speaker": item.speaker}
            cut_files += 1
            examples_of_cut += len(parts)
            # The summary counts examples, as the prepared split does.
            self.kept += len(parts) - 1
        if cut_files:
            print(
                f"{self.name}/{config.name}: cut {cut_files} files longer than "
                f"{config.chunk_seconds:g} s into {examples_of_cut} chunks",
                flush=True,
            )
        self.finish()
