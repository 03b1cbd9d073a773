"""Frame features (`python -m cpcjax.embed`, `cpcjax.embed.load`) from an
imported CPC_audio checkpoint and from a tiny trained pretraining stage."""

import functools
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROOT, write_wav
from parity import TOLERANCE, VARIANTS, load_fixture, relative_error

from cpcjax import cpc_audio, embed, experiment, import_cpc_audio, probe
from cpcjax import workdir as workdir_lib
from cpcjax.constants import FRAME_HOP
from cpcjax.data import audio, sources
from cpcjax.models import build
from cpcjax.train import sharding
from cpcjax.train.steps import Programs

# Batched and padded against one file alone: the same up to float32 rounding.
ATOL = 1e-5


def _import(directory, name="gru_linear_layernorm", heads=True):
    """An import_cpc_audio folder of a parity fixture's weights."""
    _, args, model_state, crit_state = load_fixture(name)
    fields = cpc_audio.model_fields(args)
    params = cpc_audio.to_params(model_state, crit_state if heads else None, fields)
    import_cpc_audio.write(str(directory), fields, params, name)
    return str(directory), fields, params


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """(folder, fields, params) of the GRU fixture imported without heads,
    as a published checkpoint is."""
    return _import(tmp_path_factory.mktemp("imported"), heads=False)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A folder of files of several lengths, rates and channel counts, two of
    them of one name in different subfolders; and a file outside it."""
    root = tmp_path_factory.mktemp("inputs")
    folder = root / "corpus"
    write_wav(folder / "s1" / "x.wav", seconds=0.5, seed=1)
    write_wav(folder / "s2" / "x.wav", seconds=1.37, rate=44100, channels=2, seed=2)
    write_wav(folder / "s2" / "y.flac", seconds=0.9, rate=8000, seed=3)
    write_wav(folder / "z.wav", seconds=2.3, rate=22050, seed=4)
    single = write_wav(root / "alone" / "one.wav", seconds=0.7, seed=5)
    return str(folder), str(single)


def _unbatched(model, params, wav):
    """z, c of one 16 kHz int16 file alone, its valid whole frames."""
    x = jnp.asarray(wav[None].astype(np.float32) / 32768.0)
    # Jitted: the GRU's scan runs op by op otherwise, far slower than compiling.
    encode = jax.jit(functools.partial(model.apply, method="encode"))
    z, c, _ = encode({"params": params}, x)
    frames = len(wav) // FRAME_HOP
    return np.asarray(z[0, :frames]), np.asarray(c[0, :frames])


@pytest.mark.parametrize("name", VARIANTS)
def test_load_gives_cpc_audio_z_and_c(tmp_path, name):
    directory, _, _ = _import(tmp_path, name)
    arrays = load_fixture(name)[0]
    embedder = embed.load(directory)
    z, c = embedder(arrays["wav"])  # [B, T, C], [B, T, H]
    assert z.dtype == c.dtype == np.float32
    assert z.shape == arrays["z"].shape and c.shape == arrays["c"].shape
    assert relative_error(z, arrays["z"]) <= TOLERANCE
    assert relative_error(c, arrays["c"]) <= TOLERANCE
    assert embedder.info["kind"] == "imported"
    assert embed.load(os.path.join(directory, "checkpoints")).info["cpc"] == directory


def test_lengths_mask_the_frames_past_them(imported):
    directory, fields, params = imported
    rng = np.random.default_rng(0)
    wav = (0.1 * rng.standard_normal((3, 4000))).astype(np.float32)
    lengths = np.array([4000, 2500, 1759])
    z, c = embed.load(directory)(wav, lengths)
    assert z.shape[:2] == c.shape[:2] == (3, 4000 // FRAME_HOP)
    model = build.cpc_model(import_cpc_audio.model_config(fields))
    for row, n in enumerate(lengths):
        want_z, want_c = _unbatched(model, params, wav[row, :n] * 32768.0)
        frames = n // FRAME_HOP
        np.testing.assert_allclose(z[row, :frames], want_z, atol=ATOL)
        np.testing.assert_allclose(c[row, :frames], want_c, atol=ATOL)
        assert not z[row, frames:].any() and not c[row, frames:].any()


def test_files_batched_by_length_equal_each_file_alone(imported, inputs):
    directory, fields, params = imported
    folder, single = inputs
    embedder = embed.load(directory)
    results = list(embedder.embed_files([folder, single], workers=0))
    names = [name for _, name, _ in results]
    assert names == ["s1/x", "s2/x", "s2/y", "z", "one"]
    model = build.cpc_model(import_cpc_audio.model_config(fields))
    for path, _, (z, c) in results:
        wav = audio.load(path)
        frames = len(wav) // FRAME_HOP
        assert z.shape == (frames, fields["model.channels"])
        assert c.shape == (frames, fields["model.context_hidden"])
        want_z, want_c = _unbatched(model, params, wav)
        np.testing.assert_allclose(z, want_z, atol=ATOL)
        np.testing.assert_allclose(c, want_c, atol=ATOL)


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "cpcjax.embed", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_cli_writes_each_file_and_reports_the_bad_ones(imported, inputs, tmp_path):
    directory, fields, _ = imported
    folder, single = inputs
    corrupt = tmp_path / "bad" / "corrupt.flac"
    corrupt.parent.mkdir()
    corrupt.write_bytes(b"fLaC" + np.random.default_rng(0).bytes(3000))
    missing = str(tmp_path / "missing.wav")
    twin = str(write_wav(tmp_path / "twin" / "one.wav", seconds=0.3))
    out = tmp_path / "features"
    proc = _cli(
        f"--cpc={directory}",
        f"--out={out}",
        str(corrupt),
        folder,
        missing,
        single,
        twin,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    errors = [l for l in proc.stderr.splitlines() if l.startswith("error: ")]
    assert [l.split(": ")[1] for l in errors] == [str(corrupt), missing, twin]
    assert "unreadable" in errors[0] and "no such file" in errors[1]
    # Two inputs of one name: the second is refused, the first written.
    assert errors[2] == f"error: {twin}: same output one.npz as {single}"
    assert "5 file(s) embedded" in proc.stderr and "3 failed" in proc.stderr
    written = sorted(
        os.path.relpath(os.path.join(r, f), out)
        for r, _, files in os.walk(out)
        for f in files
    )
    assert written == ["one.npz", "s1/x.npz", "s2/x.npz", "s2/y.npz", "z.npz"]
    embedder = embed.load(directory)
    for name, path in [("s2/x", os.path.join(folder, "s2", "x.wav")), ("one", single)]:
        saved = np.load(out / f"{name}.npz")
        assert saved["z"].dtype == saved["c"].dtype == np.float32
        ((_, _, (z, c)),) = embedder.embed_files([path], workers=0)
        np.testing.assert_allclose(saved["z"], z, atol=ATOL)
        np.testing.assert_allclose(saved["c"], c, atol=ATOL)


def test_cli_refuses_a_folder_without_a_model_and_has_help(tmp_path, inputs):
    proc = _cli(f"--cpc={tmp_path}", f"--out={tmp_path / 'out'}", inputs[1])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: --cpc={tmp_path}: {embed.EXPECTED}"
    ]
    assert not (tmp_path / "out").exists()
    proc = _cli("--help")
    assert proc.returncode == 0 and "--cpc" in proc.stdout


@pytest.fixture(scope="module")
def mini_cpc(tmp_path_factory, tiny_config):
    """(config, workdir) of a tiny miniCPC workdir that has trained its fold 1
    pretraining stage (on the corpus' audio) and nothing else."""
    c = tiny_config("mini_cpc")
    c.data_dir = str(tmp_path_factory.mktemp("data"))
    workdir = str(tmp_path_factory.mktemp("mini_cpc"))
    workdir_lib.claim(c, workdir)
    mesh = sharding.make_mesh()
    experiment.pretrain_stage(
        c,
        Programs.build(c, mesh),
        mesh,
        sources.emotion_corpus(c),
        workdir_lib.pretrain_dir(workdir, 1),
        "pretrain fold1",
    )
    return c, workdir


def test_load_reads_a_pretraining_stage(mini_cpc, inputs, tmp_path):
    c, workdir = mini_cpc
    stage = workdir_lib.pretrain_dir(workdir, 1)
    embedder = embed.load(stage)
    assert embedder.info["kind"] == "pretrain"
    assert embedder.info["step"] == c.pretrain.num_steps
    params = probe.load_cpc_params(workdir_lib.checkpoint_dir(stage), c)
    model = build.cpc_model(c)
    wav = audio.load(inputs[1])
    ((_, _, (z, ctx)),) = embedder.embed_files([inputs[1]], workers=0)
    want_z, want_c = _unbatched(model, params, wav)
    np.testing.assert_allclose(z, want_z, atol=ATOL)
    np.testing.assert_allclose(ctx, want_c, atol=ATOL)

    # preCPC's single stage, WORKDIR/pretrain/, read through the same config.
    pre = tmp_path / "pre_cpc"
    shutil.copytree(stage, workdir_lib.pretrain_dir(str(pre)))
    shutil.copy(os.path.join(workdir, workdir_lib.CONFIG_FILE), pre)
    z_pre, c_pre = embed.load(workdir_lib.pretrain_dir(str(pre)))(wav[None] / 32768.0)
    np.testing.assert_allclose(z_pre[0], z, atol=ATOL)
    np.testing.assert_allclose(c_pre[0], ctx, atol=ATOL)

    with pytest.raises(embed.SourceError, match="per-fold stages"):
        embed.load(workdir_lib.pretrain_dir(workdir))
    with pytest.raises(embed.SourceError, match="expected a folder"):
        embed.load(workdir)
