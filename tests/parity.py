"""CPC_audio's reference outputs, shared by the parity and embed tests.

tests/fixtures/cpc_audio/ holds, per variant, CPC_audio's weights, a waveform
and what CPC_audio computed from them (benchmarks/cpc_audio_fixture.py wrote
them).
"""

import json
import os

import numpy as np

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "cpc_audio")
COMMITTED = ("gru_linear_layernorm", "lstm2_linear_instancenorm", "lstm_transformer_id")
# The parity tests run on another folder of reference outputs where this
# names one: e.g. the full-size models, written by
# `python benchmarks/cpc_audio_fixture.py CPC_audio DIR --size=full`.
REFERENCE_ENV = "CPCJAX_CPC_AUDIO_REFERENCE"
REFERENCE = os.environ.get(REFERENCE_ENV) or FIXTURES
VARIANTS = (
    COMMITTED
    if REFERENCE == FIXTURES
    else tuple(sorted(f[:-4] for f in os.listdir(REFERENCE) if f.endswith(".npz")))
)
# max |cpcjax - CPC_audio| / max |CPC_audio|, per array (float32).
TOLERANCE = 1e-5


def load_fixture(name, directory=FIXTURES):
    """(arrays, args, model state, criterion state) of one variant."""
    arrays = dict(np.load(os.path.join(directory, f"{name}.npz")))
    with open(os.path.join(directory, f"{name}.json")) as f:
        args = json.load(f)
    weights = {k[7:]: v for k, v in arrays.items() if k.startswith("weight/")}
    model = {k[9:]: v for k, v in weights.items() if k.startswith("gEncoder.")}
    crit = {k[13:]: v for k, v in weights.items() if k.startswith("cpcCriterion.")}
    return arrays, args, model, crit


def relative_error(ours, theirs):
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    return np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs))
