"""Shapes, causality, padding invariance and parameter layout of the models."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from cpcjax.constants import FRAME_HOP
from cpcjax.models.context import Context
from cpcjax.models.cpc import CPC, PredictHeads
from cpcjax.models.encoder import ChannelNorm, Encoder, frame_lengths, strided_conv
from cpcjax.models.recognizer import EmotionModel

SMALL = dict(channels=32, context_hidden=16)
SMALL_RECOGNIZER = dict(num_heads=2, d_model=16, mlp_hidden=16)


def _init(model, *args, **kwargs):
    # Eager init compiles every initializer op on its own; one jit is much faster.
    return jax.jit(model.init)(jax.random.key(1), *args, **kwargs)


def _reference_frame_lengths(n):
    for k, s, p in zip((10, 8, 4, 4, 4), (5, 4, 2, 2, 2), (3, 2, 1, 1, 1)):
        n = max((n + 2 * p - k) // s + 1, 0)
    return n


def test_encoder_gives_128_frames_of_512_channels_for_20480_samples():
    wav = jax.random.normal(jax.random.key(0), (2, 20480))
    (z, frame_lens), _ = jax.jit(Encoder(channels=512).init_with_output)(
        jax.random.key(1), wav
    )
    assert z.shape == (2, 128, 512)
    np.testing.assert_array_equal(frame_lens, [128, 128])
    assert frame_lens.dtype == jnp.int32


def test_frame_lengths_matches_layer_by_layer_loop():
    samples = [0, 1, 9, 159, 160, 161, 1599, 1600, 3200, 4000, 20479, 20480]
    samples += [160 * k for k in (2, 7, 31, 100)]
    expected = [_reference_frame_lengths(n) for n in samples]
    assert frame_lengths(20480) == 128
    assert [frame_lengths(n) for n in samples] == expected
    # Every stage converts frames and seconds through FRAME_HOP.
    assert all(frame_lengths(FRAME_HOP * k) == k for k in (2, 7, 31, 100))
    np.testing.assert_array_equal(frame_lengths(np.array(samples)), expected)
    np.testing.assert_array_equal(frame_lengths(jnp.array(samples)), expected)


def test_channel_norm_is_unbiased_per_frame_normalisation():
    x = jax.random.normal(jax.random.key(0), (2, 5, 7)) * 3 + 1
    y, _ = jax.jit(ChannelNorm().init_with_output)(jax.random.key(1), x)
    x = np.asarray(x, np.float64)
    var = x.var(-1, ddof=1, keepdims=True)
    want = (x - x.mean(-1, keepdims=True)) / np.sqrt(var + 1e-5)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def test_unknown_norm_names_the_field():
    with pytest.raises(ValueError, match="model.norm"):
        Encoder(channels=8, norm="batch").init(jax.random.key(0), jnp.zeros((1, 1600)))


@pytest.mark.parametrize("norm", ["channel", "layer", "none"])
@pytest.mark.parametrize("pad", ["zeros", "noise"])
def test_encoder_valid_frames_ignore_padding(norm, pad):
    encoder = Encoder(channels=32, norm=norm)
    lengths = [3200, 4000]
    key = jax.random.key(0)
    wav = jax.random.normal(key, (2, 8000))
    params = _init(encoder, wav)
    if pad == "zeros":
        wav = jnp.where(jnp.arange(8000)[None] < jnp.array(lengths)[:, None], wav, 0)
    apply = jax.jit(encoder.apply)
    z, frame_lens = apply(params, wav, jnp.array(lengths))
    np.testing.assert_array_equal(frame_lens, [frame_lengths(n) for n in lengths])
    for b, n in enumerate(lengths):
        alone, alone_lens = apply(params, wav[b : b + 1, :n])
        assert int(alone_lens[0]) == int(frame_lens[b]) == alone.shape[1]
        np.testing.assert_allclose(
            z[b, : alone.shape[1]], alone[0], rtol=1e-5, atol=1e-5
        )
        assert not np.any(np.asarray(z[b, alone.shape[1] :]))


def test_context_is_causal():
    z = jax.random.normal(jax.random.key(0), (2, 12, 8))
    context = Context(hidden=16)
    params = _init(context, z)
    t0 = 5
    changed = z.at[:, t0 + 1 :].add(jax.random.normal(jax.random.key(2), (2, 6, 8)))
    apply = jax.jit(context.apply)
    c = apply(params, z)
    c_changed = apply(params, changed)
    np.testing.assert_allclose(
        c[:, : t0 + 1], c_changed[:, : t0 + 1], rtol=1e-6, atol=1e-6
    )
    after = np.abs(
        np.asarray(c[:, t0 + 1 :] - c_changed[:, t0 + 1 :])
    )  # [B, T-t0-1, H]
    assert np.all(after.max(-1) > 1e-4)


def test_context_zeroes_frames_past_length():
    z = jax.random.normal(jax.random.key(0), (2, 6, 4))
    context = Context(hidden=8)
    params = _init(context, z)
    apply = jax.jit(context.apply)
    c = apply(params, z, jnp.array([6, 3]))
    assert not np.any(np.asarray(c[1, 3:]))
    np.testing.assert_allclose(c[1, :3], apply(params, z[1:, :3])[0], atol=1e-6)


def test_emotion_model_prediction_ignores_padding():
    model = EmotionModel(**SMALL, **SMALL_RECOGNIZER)
    lengths = [3200, 4000, 0]
    wav = jax.random.normal(jax.random.key(0), (3, 8000))
    wav = jnp.where(jnp.arange(8000)[None] < jnp.array(lengths)[:, None], wav, 0)
    params = _init(model, wav, jnp.array(lengths))
    apply = jax.jit(model.apply)
    padded = apply(params, wav, jnp.array(lengths))["preds"]
    assert padded.shape == (3, 3) and padded.dtype == jnp.float32
    for b, n in enumerate(lengths[:2]):
        alone = apply(params, wav[b : b + 1, :n], jnp.array([n]))["preds"]
        np.testing.assert_allclose(padded[b], alone[0], rtol=1e-5, atol=1e-5)
    assert not np.allclose(padded[0], padded[1])
    # An utterance with no valid frame must not poison the batch with NaN.
    assert np.all(np.isfinite(np.asarray(padded[2])))


def test_param_trees_have_the_documented_top_level_keys():
    wav = jnp.zeros((1, 3200))

    def params(model):
        return jax.eval_shape(model.init, jax.random.key(0), wav)["params"]

    cpc = params(CPC(**SMALL, num_steps=3))
    emo = params(EmotionModel(**SMALL, **SMALL_RECOGNIZER))
    joint = params(
        EmotionModel(**SMALL, **SMALL_RECOGNIZER, num_steps=3, with_predict_heads=True)
    )
    assert set(cpc) == {"encoder", "context", "predict_heads"}
    assert set(emo) == {"encoder", "context", "recognizer"}
    assert set(joint) == {"encoder", "context", "recognizer", "predict_heads"}
    # A pretrained CPC's encoder and context must drop into the recognizer.
    for name in ("encoder", "context"):
        assert cpc[name] == emo[name]
    assert cpc["predict_heads"] == joint["predict_heads"]


def test_cpc_output_shapes_and_bfloat16_keeps_float32_params():
    model = CPC(**SMALL, num_steps=3, dtype=jnp.bfloat16)
    out, variables = jax.eval_shape(
        model.init_with_output,
        jax.random.key(0),
        jnp.ones((2, 3200)),
        jnp.array([3200, 1600]),
    )
    assert out["z"].shape == (2, 20, 32) and out["c"].shape == (2, 20, 16)
    assert out["zhat"].shape == (2, 20, 3, 32) and out["frame_lens"].shape == (2,)
    assert out["zhat"].dtype == jnp.bfloat16 and out["frame_lens"].dtype == jnp.int32
    dtypes = {leaf.dtype for leaf in jax.tree_util.tree_leaves(variables)}
    assert dtypes == {jnp.dtype(jnp.float32)}


def test_freeze_cpc_stops_gradients_into_encoder_and_context():
    wav = jax.random.normal(jax.random.key(0), (2, 1600))
    lengths = jnp.array([1600, 1200])
    model = EmotionModel(**SMALL, **SMALL_RECOGNIZER)
    params = _init(model, wav, lengths)

    @jax.jit
    def grads(params):
        def loss(p, freeze):
            out = model.clone(freeze_cpc=freeze).apply(p, wav, lengths)
            return jnp.sum(out["preds"] ** 2)

        return (
            jax.grad(loss)(params, True)["params"],
            jax.grad(loss)(params, False)["params"],
        )

    def norm(tree):
        return sum(float(jnp.sum(jnp.abs(x))) for x in jax.tree_util.tree_leaves(tree))

    frozen, trained = grads(params)
    assert norm(frozen["encoder"]) == 0 and norm(frozen["context"]) == 0
    assert norm(frozen["recognizer"]) > 0
    assert norm(trained["encoder"]) > 0 and norm(trained["context"]) > 0


def test_default_context_keeps_its_one_gru_parameter_tree():
    tree = jax.eval_shape(
        Context(hidden=8).init, jax.random.key(0), jnp.zeros((1, 4, 3))
    )
    assert set(tree["params"]) == {"gru"}
    assert set(tree["params"]["gru"]) == {"ir", "iz", "in", "hr", "hz", "hn"}


@pytest.mark.parametrize(
    "length,kernel,stride,padding",
    [
        (4096, 8, 4, (2, 2)),  # the paper encoder's second layer
        (131, 4, 2, (1, 1)),  # an odd length
        (130, 8, 4, (3, 0)),  # the last frame is never read: its gradient is 0
        (133, 12, 4, (0, 5)),  # three blocks per kernel; padding read in part
    ],
)
def test_strided_conv_gradients_match_xla(length, kernel, stride, padding):
    x = jax.random.normal(jax.random.key(0), (2, length, 24))
    w = jax.random.normal(jax.random.key(1), (kernel, 24, 16)) / 10
    dims = lax.conv_dimension_numbers(x.shape, w.shape, ("NWC", "WIO", "NWC"))

    def conv(fn):
        return lambda x, w: fn(x, w, (stride,), [padding], dimension_numbers=dims)

    assert "custom_vjp" in str(jax.make_jaxpr(conv(strided_conv))(x, w))
    y, ours_vjp = jax.vjp(conv(strided_conv), x, w)
    y_xla, xla_vjp = jax.vjp(conv(lax.conv_general_dilated), x, w)
    np.testing.assert_array_equal(y, y_xla)
    dy = jax.random.normal(jax.random.key(2), y.shape)
    (dx, dw), (dx_xla, dw_xla) = ours_vjp(dy), xla_vjp(dy)
    assert dx.shape == x.shape and dw.shape == w.shape
    np.testing.assert_allclose(dx, dx_xla, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(dw, dw_xla)


def test_strided_conv_kernel_gradient_reads_a_stored_input_on_cpu():
    x = jax.random.normal(jax.random.key(0), (2, 64, 8))
    w = jax.random.normal(jax.random.key(1), (8, 8, 4)) / 10
    dims = lax.conv_dimension_numbers(x.shape, w.shape, ("NWC", "WIO", "NWC"))

    def loss(fn, w, x):
        # An elementwise producer, which XLA CPU would fuse into the
        # kernel gradient's transposed copy of the input.
        y = fn(jnp.maximum(2 * x + 1, 0), w, (4,), [(2, 2)], dimension_numbers=dims)
        return jnp.sum(y * x[:, ::4, :4])

    ours = jax.jit(jax.grad(functools.partial(loss, strided_conv)))
    hlo = ours.lower(w, x).compile().as_text()
    assert "conditional(" in hlo  # XLA kept the boundary
    xla = jax.grad(functools.partial(loss, lax.conv_general_dilated))
    np.testing.assert_array_equal(ours(w, x), xla(w, x))
    # The conditional's predicate holds for a NaN weight too: the kernel
    # gradient, which does not depend on the kernel, stays XLA's.
    nan = w.at[0, 0, 0].set(jnp.nan)
    dw = ours(nan, x)
    assert np.all(np.isfinite(np.asarray(dw)))
    np.testing.assert_array_equal(dw, xla(nan, x))


def test_predict_heads_gradients_match_xla_and_come_in_the_kernel_layout():
    heads = PredictHeads(num_steps=3, features=8)
    c = jax.random.normal(jax.random.key(0), (2, 5, 6))
    params = heads.init(jax.random.key(1), c)
    kernel = params["params"]["kernel"]  # [H, K, features]
    g = jax.random.normal(jax.random.key(2), (2, 5, 3, 8))

    def ours(c, kernel):
        return jnp.sum(heads.apply({"params": {"kernel": kernel}}, c) * g)

    def xla(c, kernel):
        return jnp.sum(jnp.einsum("bth,hkf->btkf", c, kernel) * g)

    np.testing.assert_allclose(ours(c, kernel), xla(c, kernel), rtol=1e-6)
    (dc, dk), (dc_xla, dk_xla) = (
        jax.grad(ours, argnums=(0, 1))(c, kernel),
        jax.grad(xla, argnums=(0, 1))(c, kernel),
    )
    assert dk.shape == kernel.shape and dk.dtype == jnp.float32
    np.testing.assert_allclose(dc, dc_xla, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dk, dk_xla, rtol=1e-5, atol=1e-6)
    # The kernel gradient is one [H, K * features] dot: no transposed copy.
    hlo = jax.jit(jax.grad(ours, argnums=1)).lower(c, kernel).compile().as_text()
    assert "f32[6,24]" in hlo and "f32[24,6]" not in hlo
    # bfloat16 computation keeps float32 parameters and gradients.
    bf16 = PredictHeads(num_steps=3, features=8, dtype=jnp.bfloat16)
    out, vjp = jax.vjp(lambda k: bf16.apply({"params": {"kernel": k}}, c), kernel)
    assert out.dtype == jnp.bfloat16 and vjp(out)[0].dtype == jnp.float32


def test_strided_conv_passes_other_convolutions_through():
    x = jax.random.normal(jax.random.key(0), (2, 50, 3))
    w = jax.random.normal(jax.random.key(1), (10, 3, 4))  # 10 is not a multiple of 4
    dims = lax.conv_dimension_numbers(x.shape, w.shape, ("NWC", "WIO", "NWC"))
    args = ((4,), [(3, 3)])
    jaxpr = jax.make_jaxpr(
        lambda x, w: strided_conv(x, w, *args, dimension_numbers=dims)
    )(x, w)
    assert "custom_vjp" not in str(jaxpr)
    ours = jax.grad(
        lambda x: jnp.sum(strided_conv(x, w, *args, dimension_numbers=dims) ** 2)
    )(x)
    xla = jax.grad(
        lambda x: jnp.sum(
            lax.conv_general_dilated(x, w, *args, dimension_numbers=dims) ** 2
        )
    )(x)
    np.testing.assert_array_equal(ours, xla)


def test_context_variants_are_causal_and_masked():
    z = jax.random.normal(jax.random.key(0), (2, 9, 5))
    for cell, layers in (("lstm", 1), ("lstm", 2), ("gru", 3)):
        model = Context(hidden=6, cell=cell, layers=layers)
        params = _init(model, z)
        names = {cell if i == 0 else f"{cell}{i}" for i in range(layers)}
        assert set(params["params"]) == names
        c = model.apply(params, z)
        later = model.apply(params, z.at[:, 5:].set(3.0))
        np.testing.assert_allclose(c[:, :5], later[:, :5], rtol=1e-6)
        masked = model.apply(params, z, jnp.array([9, 4]))
        assert np.all(np.asarray(masked[1, 4:]) == 0)


def test_instance_norm_ignores_padding():
    wav = jax.random.normal(jax.random.key(0), (1, 3200))
    model = Encoder(channels=8, norm="instance")
    params = _init(model, wav)
    alone, _ = model.apply(params, wav)
    padded, lens = model.apply(
        params, jnp.pad(wav, ((0, 0), (0, 1600))), jnp.array([3200])
    )
    assert int(lens[0]) == alone.shape[1]
    np.testing.assert_allclose(padded[0, : alone.shape[1]], alone[0], atol=1e-5)


def test_transformer_heads_need_their_window_and_leave_the_tail_empty():
    model = CPC(
        channels=16,
        context_hidden=16,
        num_steps=3,
        heads="transformer",
        head_seq_len=17,
    )
    wav = jax.random.normal(jax.random.key(0), (2, 3200))  # 20 frames
    params = _init(model, wav)
    assert set(params["params"]["predict_heads"]) == {"head0", "head1", "head2"}
    zhat = model.apply(params, wav)["zhat"]
    assert zhat.shape == (2, 20, 3, 16)
    assert np.all(np.asarray(zhat[:, 17:]) == 0)
    with pytest.raises(ValueError, match="exactly 20 frames"):
        model.apply(params, wav[:, :1600])
