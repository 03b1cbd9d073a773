"""Golden values for CCC and a loop-by-loop reference for InfoNCE."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec

from cpcjax.losses import (
    _uniform_below,
    ccc,
    ccc_loss,
    group_pools,
    info_nce,
    info_nce_shared,
    sample_negatives,
    sample_pool_negatives,
)


def test_ccc_golden_values():
    np.testing.assert_allclose(
        ccc(jnp.array([0.0, 1, 1]), jnp.array([0.0, 1, 2])), 2 / 3, atol=1e-4
    )
    np.testing.assert_allclose(
        ccc(jnp.array([2.5, 0.0, 2, 8]), jnp.array([3.0, -0.5, 2, 7])),
        0.97679,
        atol=1e-5,
    )


def test_ccc_is_one_for_identical_and_finite_for_constant_inputs():
    x = jnp.array([1.0, 2.0, 4.0])
    np.testing.assert_allclose(ccc(x, x), 1.0, atol=1e-6)
    assert np.isfinite(float(ccc(jnp.ones(3), jnp.ones(3))))


def test_ccc_mask_equals_ccc_of_the_subset():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(10, 3)), rng.normal(size=(10, 3))
    keep = np.array([1, 1, 0, 1, 0, 1, 1, 1, 0, 1], bool)
    want = ccc(jnp.asarray(x[keep]), jnp.asarray(y[keep]))
    np.testing.assert_allclose(
        ccc(jnp.asarray(x), jnp.asarray(y), jnp.asarray(keep)),
        want,
        rtol=1e-6,
        atol=1e-6,
    )
    # Samples on axis 1 and a per-column reference.
    got = ccc(jnp.asarray(x.T), jnp.asarray(y.T), jnp.asarray(keep), axis=1)
    for d in range(3):
        want = ccc(jnp.asarray(x[keep, d]), jnp.asarray(y[keep, d]))
        np.testing.assert_allclose(got[d], want, rtol=1e-6, atol=1e-6)


def test_ccc_loss_weights_the_three_dimensions():
    rng = np.random.default_rng(1)
    preds = jnp.asarray(rng.normal(size=(8, 3)))
    targets = jnp.asarray(rng.normal(size=(8, 3)))
    mask = jnp.array([True] * 6 + [False] * 2)
    loss, cccs = ccc_loss(preds, targets, mask, alpha=0.5, beta=0.2)
    want = [ccc(preds[:6, d], targets[:6, d]) for d in range(3)]
    np.testing.assert_allclose(cccs, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        loss, 1 - 0.5 * want[0] - 0.2 * want[1] - 0.3 * want[2], rtol=1e-6, atol=1e-6
    )
    perfect, _ = ccc_loss(targets, targets)
    np.testing.assert_allclose(perfect, 0.0, atol=1e-6)


def _info_nce_loops(zhat, z, neg_idx, frame_lens, group_size):
    batch, frames, steps, _ = zhat.shape
    losses = {k: [] for k in range(steps)}
    correct = []
    for b in range(batch):
        first = b // group_size * group_size
        for t in range(frames):
            for k in range(steps):
                if t + k + 1 >= frame_lens[b]:
                    continue
                vectors = [z[b, t + k + 1]]
                for i in neg_idx[b, t, k]:
                    vectors.append(z[first + i // frames, i % frames])
                scores = np.array([zhat[b, t, k] @ v for v in vectors], np.float64)
                top = scores.max()
                log_sum_exp = top + np.log(np.sum(np.exp(scores - top)))
                losses[k].append(log_sum_exp - scores[0])
                correct.append(np.argmax(scores) == 0)
    return sum(np.mean(v) for v in losses.values()), np.mean(correct)


def test_info_nce_matches_explicit_loops():
    batch, group, frames, steps, dim, negatives = 4, 2, 6, 2, 3, 3
    rng = np.random.default_rng(0)
    zhat = rng.normal(size=(batch, frames, steps, dim)).astype(np.float32)
    z = rng.normal(size=(batch, frames, dim)).astype(np.float32)
    neg_idx = rng.integers(0, group * frames, size=(batch, frames, steps, negatives))
    frame_lens = np.array([6, 4, 5, 3])
    loss, accuracy = info_nce(
        jnp.asarray(zhat),
        jnp.asarray(z),
        jnp.asarray(neg_idx),
        jnp.asarray(frame_lens),
        group,
    )
    want_loss, want_accuracy = _info_nce_loops(zhat, z, neg_idx, frame_lens, group)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(accuracy, want_accuracy, rtol=1e-6)
    assert 0 < want_accuracy < 1  # both outcomes occur, so accuracy is tested


def test_info_nce_is_float32_for_bfloat16_inputs_and_differentiable():
    rng = np.random.default_rng(2)
    zhat = jnp.asarray(rng.normal(size=(2, 5, 2, 4)), jnp.bfloat16)
    z = jnp.asarray(rng.normal(size=(2, 5, 4)), jnp.bfloat16)
    neg_idx = jnp.asarray(rng.integers(0, 10, size=(2, 5, 2, 3)))
    lens = jnp.array([5, 4])
    loss, _ = info_nce(zhat, z, neg_idx, lens, 2)
    assert loss.dtype == jnp.float32 and np.isfinite(float(loss))
    grad = jax.grad(lambda a: info_nce(a, z.astype(jnp.float32), neg_idx, lens, 2)[0])(
        zhat.astype(jnp.float32)
    )
    assert np.all(np.isfinite(np.asarray(grad))) and np.any(np.asarray(grad) != 0)


def test_info_nce_rejects_batch_not_divisible_by_group():
    with pytest.raises(ValueError, match="model.negatives_group_size"):
        info_nce(
            jnp.zeros((3, 4, 1, 2)),
            jnp.zeros((3, 4, 2)),
            jnp.zeros((3, 4, 1, 2), jnp.int32),
            jnp.array([4, 4, 4]),
            2,
        )


def test_sample_negatives_draws_valid_frames_of_the_group_except_the_positive():
    sample = jax.jit(sample_negatives, static_argnums=(2, 3, 4, 5))
    frame_lens = jnp.array([10, 4, 7, 2, 9, 5])
    batch, group, steps, frames, negatives = 6, 3, 3, 10, 64
    rng = jax.random.key(0)
    idx = sample(rng, frame_lens, frames, steps, negatives, group)
    assert idx.shape == (batch, frames, steps, negatives) and idx.dtype == jnp.int32
    idx = np.asarray(idx)
    assert idx.min() >= 0 and idx.max() < group * frames
    lens = np.asarray(frame_lens)
    first = (np.arange(batch) // group * group)[:, None, None, None]
    utt, frame = idx // frames, idx % frames
    assert np.all(frame < lens[first + utt])
    for b in range(batch):
        group_lens = lens[b // group * group :][:group]
        pool = {j * frames + t for j in range(group) for t in range(group_lens[j])}
        assert set(idx[b].ravel()) == pool
        for t in range(frames):
            for k in range(1, steps + 1):
                if t + k < lens[b]:
                    assert (b % group) * frames + t + k not in idx[b, t, k - 1]
    again = sample(rng, frame_lens, frames, steps, negatives, group)
    np.testing.assert_array_equal(idx, again)
    other = sample(jax.random.key(1), frame_lens, frames, steps, negatives, group)
    assert np.any(idx != np.asarray(other))


def test_uniform_below_is_floor_of_the_draw_times_n():
    key = jax.random.key(3)
    n = np.array([0, 1, 2, 3, 7, 127, 1000, 2**16 - 1, 2**16], np.uint64)
    shape = (4096, n.size)
    draw = jax.jit(_uniform_below, static_argnums=(1, 3))
    got = np.asarray(draw(key, shape, n, 2**16))
    bits = np.asarray(jax.random.bits(key, shape, jnp.uint32)).astype(np.uint64)
    np.testing.assert_array_equal(got, (bits * n) >> np.uint64(32))
    assert got.dtype == np.int32
    assert np.all(got[:, 1:] < n[1:].astype(np.int64)) and np.all(got[:, 0] == 0)
    # Every value below a small n is drawn, about equally often.
    counts = np.bincount(got[:, 4], minlength=7)
    assert counts.size == 7 and counts.min() > 4096 / 7 * 0.8
    with pytest.raises(ValueError, match="at most 65536 frames or utterances"):
        sample_negatives(key, jnp.array([70000, 70000]), 70000, 1, 2, 2)


def test_sample_negatives_does_not_depend_on_sharding():
    frame_lens = jnp.array([10, 4, 7, 2, 9, 5, 8, 3])
    rng = jax.random.key(3)
    want = sample_negatives(rng, frame_lens, 10, 2, 5, 4)
    mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))
    sharded = NamedSharding(mesh, PartitionSpec("data"))
    got = jax.jit(sample_negatives, static_argnums=(2, 3, 4, 5), out_shardings=sharded)(
        rng, jax.device_put(frame_lens, sharded), 10, 2, 5, 4
    )
    np.testing.assert_array_equal(want, got)


def test_sample_negatives_rejects_batch_not_divisible_by_group():
    with pytest.raises(ValueError, match="model.negatives_group_size"):
        sample_negatives(jax.random.key(0), jnp.array([4, 4, 4]), 4, 1, 2, 2)


def test_speaker_negatives_come_from_the_same_speaker_and_valid_frames():
    speakers = jnp.array([3, 1, 3, 7, 1, 3])
    lens = np.array([6, 5, 4, 6, 3, 2])
    idx = np.asarray(sample_pool_negatives(jax.random.key(0), speakers, lens, 6, 50))
    assert idx.shape == (6, 6, 50)
    utt, frame = idx // 6, idx % 6
    assert np.all(np.asarray(speakers)[utt] == np.asarray(speakers)[:, None, None])
    assert np.all(frame < lens[utt])
    assert set(utt[3].ravel()) == {3}  # a speaker alone draws from itself
    assert set(utt[0].ravel()) == {0, 2, 5}


def test_shared_group_negatives_stay_in_their_group_and_valid_frames():
    lens = np.array([6, 5, 4, 6, 3, 2, 6, 1])
    pools = group_pools(8, 4)
    np.testing.assert_array_equal(pools, [0, 0, 0, 0, 1, 1, 1, 1])
    idx = np.asarray(sample_pool_negatives(jax.random.key(0), pools, lens, 6, 200))
    assert idx.shape == (8, 6, 200)
    utt, frame = idx // 6, idx % 6
    assert np.all(utt // 4 == np.arange(8)[:, None, None] // 4)
    assert np.all(frame < lens[utt])
    # Every utterance of the group is drawn, the utterance itself included.
    assert set(utt[1].ravel()) == {0, 1, 2, 3}


def test_group_pools_reject_batch_not_divisible_by_group():
    with pytest.raises(ValueError, match="model.negatives_group_size: 3 must divide"):
        group_pools(8, 3)


def test_speaker_negative_loss_does_not_depend_on_sharding():
    rng = np.random.default_rng(0)
    zhat = jnp.asarray(rng.normal(size=(8, 10, 3, 4)), jnp.float32)
    z = jnp.asarray(rng.normal(size=(8, 10, 4)), jnp.float32)
    speakers = jnp.array([0, 1, 0, 2, 1, 1, 3, 0])
    lens = jnp.full((8,), 10)

    def loss(key, zhat, z, speakers, lens):
        idx = sample_pool_negatives(key, speakers, lens, 10, 5)
        return info_nce_shared(zhat, z, idx[:, :7], lens, positions=7, scale=0.25)

    want = loss(jax.random.key(2), zhat, z, speakers, lens)
    mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))
    sharded = NamedSharding(mesh, PartitionSpec("data"))
    put = [jax.device_put(a, sharded) for a in (zhat, z, speakers, lens)]
    got = jax.jit(loss)(jax.random.key(2), *put)
    np.testing.assert_allclose(want, got, rtol=1e-6)


def test_info_nce_positions_and_scale():
    rng = np.random.default_rng(1)
    zhat = jnp.asarray(rng.normal(size=(2, 6, 2, 3)), jnp.float32)
    z = jnp.asarray(rng.normal(size=(2, 6, 3)), jnp.float32)
    lens = jnp.array([6, 6])
    idx = sample_negatives(jax.random.key(0), lens, 6, 2, 4, 2)
    full, _ = info_nce(zhat, z, idx, lens, 2, scale=0.5)
    same, _ = info_nce(zhat * 0.5, z, idx, lens, 2)
    np.testing.assert_allclose(full, same, rtol=1e-6)
    # Positions past `positions` do not count, whatever they predict.
    cut, _ = info_nce(zhat, z, idx, lens, 2, positions=4)
    noisy = zhat.at[:, 4:].set(100.0)
    np.testing.assert_allclose(cut, info_nce(noisy, z, idx, lens, 2, positions=4)[0])
