"""What every corpus prepared from the user's own files shares.

A subclass lists its items (utterances with metadata and an audio path) and
yields TFDS examples; this base checks the manual directory, decodes audio on
every core (streaming, bounded memory), skips and records every bad item, and
writes `prepare_report_<name>.tsv` into the data directory with a one-line
summary at the end, or stops with `NoUsableAudio` when nothing was usable.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import numpy as np
import tensorflow_datasets as tfds
import tqdm

from cpcjax.data import audio, index

log = logging.getLogger(__name__)
T = TypeVar("T")
# Where progress goes to a log rather than a terminal, a plain line this often.
PROGRESS_SECONDS = 30.0


class LayoutError(ValueError):
    """The manual directory is missing or is not laid out as the corpus is."""


class NoUsableAudio(LayoutError):
    """Every item of the manual directory was skipped: nothing to prepare."""


def audio_feature() -> tfds.features.Audio:
    """16 kHz mono int16, fed with numpy arrays (a path would need ffmpeg)."""
    return tfds.features.Audio(
        shape=(None,), dtype=np.int16, sample_rate=audio.SAMPLE_RATE
    )


class ManualCorpusBuilder(index.IndexedBuilder, tfds.core.GeneratorBasedBuilder):
    """A TFDS builder over an extracted corpus in `manual_dir`.

    Subclasses set EXPECTED_LAYOUT (shown when the manual dir is wrong) and
    EXPECTED_COUNT (utterances of the full release, or None), call
    `self.manual_root(dl_manager, must_contain=...)` in `_split_generators`
    and decode audio with `self.decoded(...)`.
    """

    EXPECTED_LAYOUT = ""
    EXPECTED_COUNT: int | None = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.problems = audio.Problems()
        self.kept = 0
        self.source = ""

    @property
    def _label(self) -> str:
        """The builder's name, and its config's where the config names a dataset."""
        config = self.builder_config
        if config is None or config.name in ("default", self.name):
            return self.name
        return f"{self.name}/{config.name}"

    @property
    def report_path(self) -> str:
        """`prepare_report_<name>[_<config>].tsv`: one report per prepared dataset."""
        suffix = (
            ""
            if self._label == self.name
            else "_" + self.builder_config.name.replace("/", "_")
        )
        return os.path.join(
            self._data_dir_root, f"prepare_report_{self.name}{suffix}.tsv"
        )

    def manual_root(self, dl_manager, must_contain: Iterable[str] = ()) -> str:
        """The manual dir, checked to exist and hold `must_contain` (relative paths).

        Called first by every `_split_generators`, so it also starts the
        preparation with an empty report (a builder may prepare twice).
        """
        self.problems, self.kept = audio.Problems(), 0
        try:
            root = dl_manager.manual_dir
        except AssertionError:  # TFDS asserts when the dir is missing or empty
            root = getattr(dl_manager, "_manual_dir", None)
        root = os.fspath(root) if root else ""
        if not root or not os.path.isdir(root):
            raise LayoutError(
                f"{self.name}: manual dir {root or '(none given)'} does not "
                f"exist or is empty; pass --manual_dir=DIR laid out as:\n"
                f"{self.EXPECTED_LAYOUT}"
            )
        missing = [p for p in must_contain if not os.path.exists(os.path.join(root, p))]
        if missing:
            raise LayoutError(
                f"{self.name}: {root} lacks {', '.join(missing)}; expected "
                f"layout:\n{self.EXPECTED_LAYOUT}"
            )
        self.source = root
        return root

    def release_root(self, root: str) -> str:
        """Where the release starts inside the manual dir; checks its layout."""
        return root

    def utterances(self, root: str) -> list:
        """The items of a single-split corpus, for `_generate_examples`."""
        raise NotImplementedError

    def _split_generators(self, dl_manager):
        # One "train" split; corpora with official partitions override this.
        root = self.release_root(self.manual_root(dl_manager))
        return {"train": self._generate_examples(self.utterances(root))}

    def decoded(
        self, items: list[T], path_of: Callable[[T], str], desc: str
    ) -> Iterator[tuple[T, np.ndarray]]:
        """(item, 16 kHz int16 audio) for every item whose audio is usable.

        Bad files are recorded in `self.problems` and skipped. Progress is a
        bar with counts and ETA on a terminal, a plain line every
        PROGRESS_SECONDS otherwise: a bar's carriage returns would make a log
        one endless line.
        """
        results = audio.load_many(items, path_of)
        if sys.stderr.isatty():
            results = tqdm.tqdm(
                results, total=len(items), desc=desc, unit="file", dynamic_ncols=True
            )
        last = time.monotonic()
        for done, (item, result) in enumerate(results, 1):
            if time.monotonic() - last >= PROGRESS_SECONDS:
                last = time.monotonic()
                print(f"{desc} {done}/{len(items)} files", file=sys.stderr, flush=True)
            if isinstance(result, audio.BadAudio):
                self.problems.add("audio", result.path, result.reason)
                continue
            self.kept += 1
            yield item, result

    def finish(self) -> None:
        """Writes the report and prints the one-line summary; warns on odd counts.

        Raises:
            NoUsableAudio: nothing was kept; the message names the manual dir,
                what was skipped and the report.
        """
        self.problems.write(self.report_path)
        if not self.kept:
            # Raised before TFDS finds the split empty, which it would report
            # as an AssertionError saying only "No examples were yielded".
            raise NoUsableAudio(
                f"{self._label}: no usable audio in {self.source or 'the manual dir'}"
                f" (skipped {self.problems.summary()}; reasons in {self.report_path})"
            )
        line = (
            f"{self.name}: prepared {self.kept} utterances, skipped "
            f"{self.problems.summary()} (reasons in {self.report_path})"
        )
        print(line, flush=True)
        if self.EXPECTED_COUNT and self.kept != self.EXPECTED_COUNT:
            print(
                f"{self.name}: warning: the full release has {self.EXPECTED_COUNT} "
                f"utterances, this copy gave {self.kept}; see {self.report_path}",
                flush=True,
            )
