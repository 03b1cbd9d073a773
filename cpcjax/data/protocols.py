"""Evaluation protocols: which utterances train, select and test a model."""

from __future__ import annotations

import numpy as np


def session_folds(sessions: np.ndarray) -> list[int]:
    """Leave-one-session-out: one fold per session, numbered by its session."""
    return sorted(int(s) for s in np.unique(sessions))


def leave_one_session_out(
    sessions: np.ndarray,
    test_session: int,
    dev_fraction: float,
    seed: int,
    speakers: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Rows of the train / dev / test splits of one fold.

    The test split is every utterance of `test_session`, so its two speakers
    are never seen in training. The dev split (for monitoring and model
    selection) is fixed by (seed, fold) so that repeated runs of a fold share
    it: a random `dev_fraction` of the remaining utterances; or, given
    `speakers`, every utterance of whole held-out speakers, drawn until they
    hold `dev_fraction` of the remaining utterances (one at least, and never
    all), so that model selection, like the test, meets unseen speakers.
    """
    test = np.flatnonzero(sessions == test_session)
    rest = np.flatnonzero(sessions != test_session)
    if len(test) == 0 or len(rest) == 0:
        raise ValueError(
            f"fold {test_session}: no utterances in session {test_session} "
            f"or outside it"
        )
    rng = np.random.default_rng([seed, test_session, 0xDE7])
    n_dev = max(1, int(round(dev_fraction * len(rest))))
    if speakers is None:
        shuffled = rng.permutation(rest)
        return {
            "train": np.sort(shuffled[n_dev:]),
            "dev": np.sort(shuffled[:n_dev]),
            "test": test,
        }
    rest_speakers = speakers[rest]
    candidates = rng.permutation(np.unique(rest_speakers))
    if len(candidates) < 2:
        raise ValueError(
            f"fold {test_session}: a speaker-independent dev split needs two "
            f"speakers or more outside session {test_session}; set "
            f"finetune.dev_split='utterances'"
        )
    held, count = [], 0
    for speaker in candidates[:-1]:
        held.append(speaker)
        count += int(np.sum(rest_speakers == speaker))
        if count >= n_dev:
            break
    in_dev = np.isin(rest_speakers, held)
    return {"train": rest[~in_dev], "dev": rest[in_dev], "test": test}


def folds(
    utts,
    corpus: str,
    only: tuple = (),
    dev_fraction: float = 0.1,
    seed: int = 0,
    dev_split: str = "utterances",
) -> dict:
    """fold name -> train/dev/test rows, as the corpus' protocol defines them.

    IEMOCAP and the synthetic corpus: leave-one-session-out, folds named by
    their test session (`only` picks some), with a dev split of utterances or
    of whole speakers (`dev_split`). MSP-Podcast: its official
    partitions, one fold named by its test set: Train / Development / Test1
    (Test2 where a release has no Test1).
    """
    if corpus == "msp_podcast":
        parts = utts.partitions
        test = next((p for p in ("test1", "test2") if np.any(parts == p)), None)
        if test is None or not np.any(parts == "train"):
            raise ValueError(
                "msp_podcast: the prepared release has no Train and Test1 "
                "(or Test2) partitions with usable audio"
            )
        return {
            test: {
                "train": np.flatnonzero(parts == "train"),
                "dev": np.flatnonzero(parts == "development"),
                "test": np.flatnonzero(parts == test),
            }
        }
    names = [int(f) for f in only] or session_folds(utts.sessions)
    return {
        f: leave_one_session_out(
            utts.sessions,
            f,
            dev_fraction,
            seed,
            utts.speakers if dev_split == "speakers" else None,
        )
        for f in names
    }


def protocol_name(corpus: str) -> str:
    return (
        "official partitions (Train / Development / Test1)"
        if corpus == "msp_podcast"
        else "leave-one-session-out"
    )
