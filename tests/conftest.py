"""Test setup: eight fake CPU devices, so sharding code runs as on a pod."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np
import pytest


def make_source(
    num: int, labeled: bool, seed: int = 0, min_len: int = 12000, max_len: int = 40000
) -> list[dict]:
    """An in-memory random-access source shaped like a prepared TFDS split."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(num):
        length = int(rng.integers(min_len, max_len))
        ex = {
            "audio": (rng.standard_normal(length) * 3000).astype(np.int16),
            "speaker": f"spk{i % 6}",
            "id": f"utt{i:04d}",
        }
        if labeled:
            ex.update(
                labels=rng.uniform(1, 5, 3).astype(np.float32),
                session=1 + i % 5,
                category=i % 4,
            )
        out.append(ex)
    return out


@pytest.fixture
def labeled_utts():
    from cpcjax.data import pipeline

    return pipeline.index_source(
        make_source(40, labeled=True), labeled=True, desc="test"
    )


@pytest.fixture
def unlabeled_utts():
    from cpcjax.data import pipeline

    return pipeline.index_source(
        make_source(24, labeled=False, seed=1, min_len=20480),
        labeled=False,
        desc="test",
    )
