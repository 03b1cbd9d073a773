"""Parity with facebookresearch/CPC_audio, on outputs its own code computed.

tests/fixtures/cpc_audio/ holds, per variant, CPC_audio's weights, a waveform
and what CPC_audio computed from them (benchmarks/cpc_audio_fixture.py wrote
them); these tests need no torch.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from parity import (
    COMMITTED,
    REFERENCE,
    TOLERANCE,
    VARIANTS,
    load_fixture,
    relative_error,
)

from cpcjax import cpc_audio, import_cpc_audio, losses
from cpcjax.config import set_fields
from cpcjax.configs import base
from cpcjax.models import build

# A facebookresearch/CPC_audio checkout for the live parity check.
CHECKOUT_ENV = "CPC_AUDIO_CHECKOUT"
FIXTURE_SCRIPT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "benchmarks",
    "cpc_audio_fixture.py",
)


def config_for(fields):
    config = base.get_config("synthetic")
    set_fields(config, fields)
    return config


@pytest.fixture(scope="module", params=VARIANTS)
def variant(request):
    arrays, args, model_state, crit_state = load_fixture(request.param, REFERENCE)
    fields = cpc_audio.model_fields(args)
    model = build.cpc_model(config_for(fields))
    params = cpc_audio.to_params(model_state, crit_state, fields)
    out = model.apply({"params": params}, jnp.asarray(arrays["wav"]))
    return request.param, arrays, fields, out


def test_imported_params_match_the_model_tree(variant):
    name, arrays, fields, _ = variant
    _, args, model_state, crit_state = load_fixture(name, REFERENCE)
    model = build.cpc_model(config_for(fields))
    init = model.init(jax.random.key(0), jnp.asarray(arrays["wav"]))["params"]
    params = cpc_audio.to_params(model_state, crit_state, fields)
    shapes = jax.tree.map(np.shape, params)
    assert shapes == jax.tree.map(np.shape, init)


def test_z_c_and_predictions_match_cpc_audio(variant):
    name, arrays, fields, out = variant
    window = arrays["predictions"].shape[1]
    assert relative_error(out["z"], arrays["z"]) <= TOLERANCE
    assert relative_error(out["c"], arrays["c"]) <= TOLERANCE
    zhat = out["zhat"][:, :window]  # [B, W, K, D]
    assert relative_error(zhat, arrays["predictions"]) <= TOLERANCE


def test_info_nce_matches_cpc_audio_given_its_negatives(variant):
    name, arrays, fields, out = variant
    num_frames, steps = arrays["z"].shape[1], fields["model.predict_steps"]
    loss, accuracy = losses.info_nce_shared(
        out["zhat"],
        out["z"],
        jnp.asarray(arrays["negatives"]),  # [B, T - K, N - 1]
        out["frame_lens"],
        positions=num_frames - steps,
        scale=1.0 / fields["model.channels"],
    )
    # CPC_audio's total loss is the sum of its per-step losses.
    np.testing.assert_allclose(loss, arrays["losses"].sum(), rtol=TOLERANCE)
    np.testing.assert_allclose(accuracy, arrays["accuracy"].mean(), rtol=TOLERANCE)


def test_unsupported_flags_name_the_flag():
    for flags, flag in [
        ({"normMode": "batchNorm"}, "normMode"),
        ({"arMode": "transformer"}, "arMode"),
        ({"rnnMode": "ffd"}, "rnnMode"),
        ({"cpc_mode": "reverse"}, "cpc_mode"),
        ({"rnnMode": "transformer", "hiddenGar": 128}, "rnnMode"),
    ]:
        with pytest.raises(cpc_audio.Unsupported, match=flag):
            cpc_audio.model_fields(flags)


def test_defaults_are_cpc_audio_defaults():
    fields = cpc_audio.model_fields({})
    assert fields["model.context_cell"] == "lstm"
    assert fields["model.predict_heads"] == "transformer"
    assert fields["model.negatives"] == "speaker"
    assert fields["model.norm"] == "channel"


def test_config_refuses_variants_where_they_cannot_run():
    from cpcjax.config import ConfigError, validate

    for fields, field in [
        ({"model.predict_heads": "transformer", "finetune.cpc_weight": 1.0}, "heads"),
        ({"model.negatives": "speaker", "finetune.cpc_weight": 1.0}, "negatives"),
        ({"model.predict_heads": "transformer", "model.context_hidden": 16}, "heads"),
        ({"model.context_cell": "rnn"}, "context_cell"),
        ({"model.score": "cosine"}, "score"),
    ]:
        config = config_for(fields)
        with pytest.raises(ConfigError, match=field):
            validate(config)
    validate(config_for(cpc_audio.model_fields({"hiddenEncoder": 32, "hiddenGar": 32})))


def _import(*args, cwd=None):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "cpcjax.import_cpc_audio", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
    )


def _fake_zip(path, args=None):
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"")
    if args is not None:
        with open(
            os.path.join(os.path.dirname(path), "checkpoint_args.json"), "w"
        ) as f:
            json.dump(args, f)


def test_import_errors_are_one_line_and_exit_1(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    truncated = tmp_path / "cut.pt"
    truncated.write_bytes(b"PK\x03\x04" + b"\0" * 40)
    bad = tmp_path / "bad" / "checkpoint_3.pt"
    bad.parent.mkdir()
    _fake_zip(bad, {"normMode": "batchNorm"})
    for path, words in [
        (text, "not a CPC_audio checkpoint"),
        (truncated, "truncated"),
        (bad, "normMode='batchNorm'"),
        (tmp_path / "missing.pt", "no such file"),
    ]:
        r = _import(str(path), f"--out={tmp_path / 'out'}")
        assert r.returncode == 1, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], r.stderr


def test_import_without_torch_says_how_to_install_it(tmp_path):
    try:
        import torch  # noqa: F401

        pytest.skip("torch is installed here")
    except ImportError:
        pass
    ok = tmp_path / "run" / "checkpoint_1.pt"
    ok.parent.mkdir()
    _fake_zip(ok, {"hiddenEncoder": 32, "hiddenGar": 32})
    r = _import(str(ok), f"--out={tmp_path / 'out'}")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [f"error: {import_cpc_audio.TORCH_HINT}"]


def test_import_help_exits_0():
    r = _import("--help")
    assert r.returncode == 0 and "CHECKPOINT.pt" in r.stdout + r.stderr


@pytest.mark.parametrize("heads", [True, False])
def test_written_checkpoint_restores_into_the_model(tmp_path, heads):
    from cpcjax.train import checkpoint

    arrays, args, model_state, crit_state = load_fixture("gru_linear_layernorm")
    fields = cpc_audio.model_fields(args)
    params = cpc_audio.to_params(model_state, crit_state if heads else None, fields)
    ckpt_dir = import_cpc_audio.write(str(tmp_path), fields, params, "fixture")
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["fields"] == fields
    config = config_for(saved["fields"])
    model = build.cpc_model(config)
    wav = jnp.asarray(arrays["wav"])
    like = model.init(jax.random.key(5), wav)["params"]
    restored = checkpoint.restore_params(ckpt_dir, like, tuple(params))
    out = model.apply({"params": restored}, wav)
    assert relative_error(out["z"], arrays["z"]) <= TOLERANCE
    assert relative_error(out["c"], arrays["c"]) <= TOLERANCE
    if heads:
        window = arrays["predictions"].shape[1]
        assert (
            relative_error(out["zhat"][:, :window], arrays["predictions"]) <= TOLERANCE
        )


def test_import_reads_both_formats_with_torch(tmp_path):
    torch = pytest.importorskip("torch")
    arrays, args, model_state, crit_state = load_fixture("gru_linear_layernorm")

    def tensors(state):
        return {k: torch.from_numpy(v.astype(np.float32)) for k, v in state.items()}

    run = tmp_path / "run"
    run.mkdir()
    torch.save(
        {"gEncoder": tensors(model_state), "cpcCriterion": tensors(crit_state)},
        run / "checkpoint_2.pt",
    )
    (run / "checkpoint_args.json").write_text(json.dumps(args))
    r = _import(str(run / "checkpoint_2.pt"), f"--out={tmp_path / 'a'}")
    assert r.returncode == 0, r.stderr
    published = tmp_path / "published.pt"
    torch.save({"config": args, "weights": tensors(model_state)}, published)
    r = _import(str(published), f"--out={tmp_path / 'b'}")
    assert r.returncode == 0 and "no prediction heads" in r.stdout, r.stderr
    from cpcjax import embed

    for out in ("a", "b"):
        z, c = embed.load(str(tmp_path / out))(arrays["wav"])
        assert relative_error(z, arrays["z"]) <= TOLERANCE
        assert relative_error(c, arrays["c"]) <= TOLERANCE


def test_fixture_is_what_a_cpc_audio_checkout_computes(tmp_path):
    """Live parity: CPC_audio's own code, from the checkout named by
    $CPC_AUDIO_CHECKOUT, recomputes the committed fixture's outputs."""
    pytest.importorskip("torch")
    checkout = os.environ.get(CHECKOUT_ENV)
    if not checkout:
        pytest.skip(f"${CHECKOUT_ENV} names no CPC_audio checkout")
    import subprocess
    import sys

    subprocess.run(
        [sys.executable, FIXTURE_SCRIPT, checkout, "."],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    for name in COMMITTED:
        live, args, _, _ = load_fixture(name, str(tmp_path))
        committed, committed_args, _, _ = load_fixture(name)
        assert args["arMode"] == committed_args["arMode"]
        for key in ("z", "c", "predictions", "losses", "accuracy"):
            assert relative_error(live[key], committed[key]) <= TOLERANCE, key
