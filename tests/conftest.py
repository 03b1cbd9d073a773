"""Test setup: eight fake CPU devices, so sharding code runs as on a pod; and
the helpers the tests share: tiny configs, running the entry point, wav files."""

import json
import os
import subprocess
import sys

# Added to the XLA_FLAGS a developer runs with (e.g. --xla_cpu_max_isa=AVX2).
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np
import pytest

from cpcjax import cli

# In-process tests compile as every command does, through jax's persistent
# compilation cache: a program another test or process compiled is read back.
cli.compilation_cache()

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A model and schedule small enough for a test, for any corpus.
TINY_RUN = {
    "seeds": 1,
    "model.channels": 16,
    "model.context_hidden": 16,
    "model.d_model": 16,
    "model.mlp_hidden": 16,
    "model.num_negatives": 8,
    "model.predict_steps": 4,
    "pretrain.window": 5120,
    "pretrain.num_steps": 4,
    "pretrain.checkpoint_every": 2,
    "pretrain.log_every": 1,
    "finetune.num_steps": 4,
    "finetune.checkpoint_every": 2,
    "finetune.log_every": 1,
    "finetune.batch_size": 8,
    "finetune.eval_batch_size": 8,
    "finetune.buckets": (1.0,),
}
# The synthetic corpus at its smallest, one fold.
TINY_SYNTHETIC = {
    "folds": (1,),
    "synthetic.emotion_utterances_per_speaker": 6,
    "synthetic.unlabeled_speakers": 4,
    "synthetic.unlabeled_utterances_per_speaker": 3,
}
TINY = {**TINY_RUN, **TINY_SYNTHETIC}


def config_flags(fields: dict) -> list[str]:
    """--config.FIELD=VALUE flags that set `fields`, as a user would type them."""
    return [f"--config.{k}={v!r}" for k, v in fields.items()]


@pytest.fixture(scope="session")
def tiny_config():
    """`make(name, corpus="synthetic", **fields)`: a shipped config at test size,
    validated; `fields` are dotted names with "__" for "."."""
    from cpcjax import config as config_lib

    def make(name: str = "pre_cpc", corpus: str = "synthetic", **fields):
        c = config_lib.load(f"{name}:{corpus}")
        tiny = TINY if corpus == "synthetic" else TINY_RUN
        config_lib.set_fields(c, tiny)
        config_lib.set_fields(c, {k.replace("__", "."): v for k, v in fields.items()})
        for method in config_lib.expand(c):
            config_lib.validate(method)
        return c

    return make


@pytest.fixture(scope="session")
def run_main():
    """`run(config, workdir, data_dir, devices=8, fields=TINY, extra=())`: runs
    `python -m cpcjax.main` as a user would, and returns the finished process."""

    def run(config, workdir, data_dir, devices=8, fields=None, extra=(), **kwargs):
        env = dict(
            os.environ,
            CPCJAX_DATA_DIR=str(data_dir),
            XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        )
        cmd = [sys.executable, "-m", "cpcjax.main", f"--config={config}"]
        if workdir is not None:
            cmd.append(f"--workdir={workdir}")
        cmd += config_flags(TINY if fields is None else fields) + list(extra)
        return subprocess.run(
            cmd,
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            **kwargs,
        )

    return run


def write_wav(path, seconds=0.5, rate=16000, channels=1, seed=0, wav=None, **kwargs):
    """Writes a speech-like tone (or `wav`) with soundfile, making parent
    folders; extra keywords go to `soundfile.write` (format, subtype)."""
    import soundfile as sf

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if wav is None:
        rng = np.random.default_rng(seed)
        t = np.arange(int(seconds * rate)) / rate
        tone = 0.3 * np.sin(2 * np.pi * (150 + 20 * seed) * t)
        tone += 0.02 * rng.standard_normal(len(t))
        wav = np.stack([tone] * channels, axis=1) if channels > 1 else tone
        wav = wav.astype(np.float32)
        kwargs.setdefault("subtype", "PCM_16")
    sf.write(os.fspath(path), wav, rate, **kwargs)
    return path


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


def logged_losses(path, n=3):
    """The first `n` losses (all with n=None) a stage logged to its metrics.jsonl."""
    with open(path) as f:
        rows = [json.loads(line) for line in f]
    return [r["loss"] for r in rows if "loss" in r][:n]
