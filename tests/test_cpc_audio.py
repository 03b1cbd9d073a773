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

from cpcjax import cpc_audio, losses
from cpcjax.config import set_fields
from cpcjax.configs import base
from cpcjax.models import build

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "cpc_audio")
VARIANTS = ("gru_linear_layernorm", "lstm2_linear_instancenorm", "lstm_transformer_id")
# max |cpcjax - CPC_audio| / max |CPC_audio|, per array (float32).
TOLERANCE = 1e-5


def load_fixture(name):
    """(arrays, args, model state, criterion state) of one variant."""
    arrays = dict(np.load(os.path.join(FIXTURES, f"{name}.npz")))
    with open(os.path.join(FIXTURES, f"{name}.json")) as f:
        args = json.load(f)
    weights = {k[7:]: v for k, v in arrays.items() if k.startswith("weight/")}
    model = {k[9:]: v for k, v in weights.items() if k.startswith("gEncoder.")}
    crit = {k[13:]: v for k, v in weights.items() if k.startswith("cpcCriterion.")}
    return arrays, args, model, crit


def config_for(fields):
    config = base.get_config("synthetic")
    set_fields(config, fields)
    return config


def relative_error(ours, theirs):
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    return np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs))


@pytest.fixture(scope="module", params=VARIANTS)
def variant(request):
    arrays, args, model_state, crit_state = load_fixture(request.param)
    fields = cpc_audio.model_fields(args)
    model = build.cpc_model(config_for(fields))
    params = cpc_audio.to_params(model_state, crit_state, fields)
    out = model.apply({"params": params}, jnp.asarray(arrays["wav"]))
    return request.param, arrays, fields, out


def test_imported_params_match_the_model_tree(variant):
    name, arrays, fields, _ = variant
    _, args, model_state, crit_state = load_fixture(name)
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
