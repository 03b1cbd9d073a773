"""Losses and metrics: concordance correlation (CCC), InfoNCE and its negatives."""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Only keeps ccc finite when both inputs are constant (0/0). Far below any
# real variance, so it moves no reported digit.
CCC_EPSILON = 1e-12


def _float(x):
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def ccc(x, y, mask=None, axis=0):
    """Population concordance correlation coefficient.

    ccc = 2 cov(x, y) / (var(x) + var(y) + (mean(x) - mean(y))^2), with
    population (1/N) moments.

    Args:
        x: predictions, e.g. [N] or [N, D].
        y: targets, same shape as `x`.
        mask: optional bool or float weights over the `axis` dimension ([N]),
            or of the same shape as `x`; entries with weight 0 are excluded.
        axis: the axis over which samples run; the others are kept (one CCC
            per column).

    Returns:
        The CCC, with `axis` reduced away.
    """
    x, y = _float(x), _float(y)
    x, y = jnp.moveaxis(x, axis, 0), jnp.moveaxis(y, axis, 0)  # [N, ...]
    if mask is None:
        w = jnp.ones(x.shape[:1], x.dtype)
    else:
        w = _float(mask)
        if w.ndim == x.ndim:
            w = jnp.moveaxis(w, axis, 0)
    w = jnp.broadcast_to(w.reshape(w.shape + (1,) * (x.ndim - w.ndim)), x.shape)
    n = jnp.maximum(jnp.sum(w, axis=0), 1e-12)
    mx = jnp.sum(w * x, axis=0) / n
    my = jnp.sum(w * y, axis=0) / n
    dx, dy = x - mx, y - my
    cov = jnp.sum(w * dx * dy, axis=0) / n
    vx = jnp.sum(w * dx * dx, axis=0) / n
    vy = jnp.sum(w * dy * dy, axis=0) / n
    return 2.0 * cov / (vx + vy + jnp.square(mx - my) + CCC_EPSILON)


def ccc_loss(preds, targets, mask=None, alpha=1.0 / 3, beta=1.0 / 3):
    """The paper's loss: 1 - alpha CCC_act - beta CCC_val - (1-alpha-beta) CCC_dom.

    Args:
        preds: [B, 3] predictions, columns (activation, valence, dominance).
        targets: [B, 3] labels, same columns.
        mask: optional [B] bool or float weights; False rows (padding) are
            left out of the CCC.
        alpha: weight of activation.
        beta: weight of valence.

    Returns:
        loss: scalar.
        cccs: [3] the per-dimension CCC of the batch.
    """
    cccs = ccc(preds, targets, mask=mask, axis=0)  # [3]
    weights = jnp.stack([alpha, beta, 1.0 - alpha - beta]).astype(cccs.dtype)
    return 1.0 - jnp.sum(weights * cccs), cccs


def _uniform_below(rng, shape, n, bound):
    """Integers uniform in [0, n) for each `n` (broadcast to `shape`).

    One 32-bit draw per value, scaled by n and shifted down (floor(u * n /
    2**32), in 16-bit halves so that it stays in uint32), where
    `jax.random.randint` takes two draws and a remainder: at the paper's
    pretraining shape the negatives cost half as much to draw. The bias is
    below n / 2**32 per value. An n of 0 gives 0. `bound`, a python int, is
    the largest n can be, at most 2**16.
    """
    if bound > 2**16:
        raise ValueError(
            f"negatives are drawn among at most 65536 frames or utterances; "
            f"this batch has {bound}: use shorter utterances (pretrain.window, "
            f"finetune.buckets) or a smaller batch"
        )
    bits = jax.random.bits(rng, shape, jnp.uint32)
    n = jnp.broadcast_to(jnp.asarray(n, jnp.uint32), shape)
    high = (bits >> 16) * n + (((bits & 0xFFFF) * n) >> 16)
    return (high >> 16).astype(jnp.int32)


def sample_negatives(rng, frame_lens, num_frames, num_steps, num_negatives, group_size):
    """Draws negative frames for InfoNCE from each utterance's group.

    The batch is cut into fixed groups of `group_size` consecutive utterances;
    the frames of a group, flattened as j * num_frames + t, form the negative
    pool. The draw depends only on `rng` and shapes, so the loss is the same
    however many devices share the batch.

    For every (b, t, k) and negative: an utterance j of b's group is chosen
    uniformly, then a frame uniformly among its `frame_lens[j]` valid frames.
    When j is b itself, b's positive frame t + k is left out. An utterance
    with no valid frames yields index j * num_frames (a zero padding frame).

    Args:
        rng: PRNG key.
        frame_lens: [B] int valid frames per utterance.
        num_frames: T, frames per utterance in the batch (python int).
        num_steps: K, prediction steps.
        num_negatives: negatives per prediction (N - 1).
        group_size: G, utterances sharing a negative pool; must divide B.

    Returns:
        neg_idx: [B, T, K, num_negatives] int32 indices into the G * T frames
            of the utterance's group.

    Raises:
        ValueError: if B is not a multiple of `group_size`.
    """
    batch = frame_lens.shape[0]
    if group_size < 1 or batch % group_size:
        raise ValueError(
            f"model.negatives_group_size: {group_size} must divide the batch "
            f"size {batch}"
        )
    frame_lens = jnp.asarray(frame_lens, jnp.int32)
    shape = (batch, num_frames, num_steps, num_negatives)
    rng_utt, rng_frame = jax.random.split(rng)
    member = jnp.arange(batch) % group_size  # [B] position within the group
    first = jnp.arange(batch) - member  # [B] first utterance of the group
    bound = max(num_frames, group_size)
    j = _uniform_below(rng_utt, shape, group_size, bound)  # [B, T, K, N-1]
    lens_j = frame_lens[first[:, None, None, None] + j]  # [B, T, K, N-1]
    positive = (
        jnp.arange(num_frames)[:, None] + jnp.arange(1, num_steps + 1)[None, :]
    )  # [T, K]
    own = j == member[:, None, None, None]
    excluded = own & (positive[None, :, :, None] < lens_j)
    choices = lens_j - excluded.astype(jnp.int32)
    frame = _uniform_below(rng_frame, shape, choices, bound)
    # Drawing from one frame fewer and stepping over the positive keeps the
    # distribution uniform over the remaining frames.
    frame = jnp.where(
        excluded & (frame >= positive[None, :, :, None]), frame + 1, frame
    )
    return (j * num_frames + frame).astype(jnp.int32)


def sample_pool_negatives(rng, pools, frame_lens, num_frames, num_negatives):
    """Draws negatives from the utterances of the batch in the same pool.

    Utterance b's pool is every utterance of the batch whose pool id equals
    b's, b included. With speaker ids as pools this is CPC_audio's default
    (`--samplingType samespeaker`), and an utterance whose speaker is alone in
    the batch draws from itself; with `group_pools` it is the fixed groups of
    `sample_negatives`. As in CPC_audio, one draw serves every prediction step.

    For every (b, t) and negative: an utterance j of b's pool is chosen
    uniformly, then a frame uniformly among its `frame_lens[j]` valid frames.
    The draw depends only on `rng`, the pool ids and shapes, so the loss is
    the same however many devices share the batch.

    Args:
        rng: PRNG key.
        pools: [B] int pool id per utterance (a speaker id, or a group).
        frame_lens: [B] int valid frames per utterance.
        num_frames: T, frames per utterance in the batch.
        num_negatives: negatives per prediction (N - 1).

    Returns:
        neg_idx: [B, T, num_negatives] int32 indices into the batch's B * T
            frames (utterance j, frame t -> j * T + t).
    """
    pools = jnp.asarray(pools)
    frame_lens = jnp.asarray(frame_lens, jnp.int32)
    batch = pools.shape[0]
    same = pools[:, None] == pools[None, :]  # [B, B]
    pool_size = jnp.sum(same, axis=1)  # [B], >= 1: b is in its own pool
    # Row b lists b's pool first, in batch order.
    members = jnp.argsort(~same, axis=1, stable=True)  # [B, B]
    shape = (batch, num_frames, num_negatives)
    rng_utt, rng_frame = jax.random.split(rng)
    bound = max(batch, num_frames)
    pick = _uniform_below(rng_utt, shape, pool_size[:, None, None], bound)
    j = jnp.take_along_axis(members, pick.reshape(batch, -1), axis=1).reshape(shape)
    frame = _uniform_below(rng_frame, shape, frame_lens[j], bound)
    return (j * num_frames + frame).astype(jnp.int32)


def group_pools(batch: int, group_size: int) -> jax.Array:
    """[B] pool ids of fixed groups of `group_size` consecutive utterances.

    Raises:
        ValueError: if `batch` is not a multiple of `group_size`.
    """
    if group_size < 1 or batch % group_size:
        raise ValueError(
            f"model.negatives_group_size: {group_size} must divide the batch "
            f"size {batch}"
        )
    return jnp.arange(batch) // group_size


def _valid_positions(frame_lens, num_frames, num_steps, positions):
    """[B, T, K] float: t + k inside the utterance and t < positions."""
    target = jnp.arange(num_frames)[:, None] + jnp.arange(1, num_steps + 1)[None]
    valid = target[None] < jnp.asarray(frame_lens)[:, None, None]  # [B, T, K]
    if positions is not None:
        valid = valid & (jnp.arange(num_frames) < positions)[None, :, None]
    return valid.astype(jnp.float32)


def _nce_from_scores(scores, valid):
    """Loss and accuracy from scores [B, T, K, N] (positive first) and `valid`."""
    nll = -jax.nn.log_softmax(scores, axis=-1)[..., 0]  # [B, T, K]
    per_step = jnp.sum(nll * valid, axis=(0, 1)) / jnp.maximum(
        jnp.sum(valid, axis=(0, 1)), 1.0
    )  # [K]
    correct = (jnp.argmax(scores, axis=-1) == 0).astype(jnp.float32)
    accuracy = jnp.sum(correct * valid) / jnp.maximum(jnp.sum(valid), 1.0)
    return jnp.sum(per_step), accuracy


def info_nce_shared(zhat, z, neg_idx, frame_lens, positions=None, scale=1.0):
    """InfoNCE with negatives anywhere in the batch, shared by the K steps.

    The form of CPC_audio's criterion: the same negatives for every step,
    picked from the batch's flattened frames (as `sample_pool_negatives`
    draws them, or as CPC_audio's own sampler did).

    Args:
        zhat: [B, T, K, D] predictions; zhat[:, t, k - 1] predicts z_{t+k}.
        z: [B, T, D] encoder frames.
        neg_idx: [B, P, N-1] int indices into the B * T frames, for the first
            P <= T positions; later positions are not scored.
        frame_lens: [B] int valid frames per utterance.
        positions: score only t < positions (CPC_audio scores t < T - K);
            None scores every t with t + k inside the utterance.
        scale: multiplies every score (1 / D for CPC_audio's mean product).

    Returns:
        loss: scalar, the sum over k of the mean over valid (b, t).
        accuracy: scalar, the fraction of valid (b, t, k) whose positive has
            the top score.
    """
    batch, num_frames, num_steps, dim = zhat.shape
    count = neg_idx.shape[1]
    zhat = zhat[:, :count]  # [B, P, K, D]
    negatives = z.reshape(batch * num_frames, dim)[neg_idx]  # [B, P, N-1, D]
    target = jnp.arange(count)[:, None] + jnp.arange(1, num_steps + 1)[None]
    positives = z[:, jnp.minimum(target, num_frames - 1)]  # [B, P, K, D]
    pos = jnp.einsum(
        "bpkd,bpkd->bpk", zhat, positives, preferred_element_type=jnp.float32
    )
    neg = jnp.einsum(
        "bpkd,bpnd->bpkn", zhat, negatives, preferred_element_type=jnp.float32
    )
    # A negative drawn on the positive's own frame scores exactly as the
    # positive does (CPC_audio scores both with one product), so a tie
    # counts as correct: the two contractions could otherwise differ in the
    # last bit and break it either way.
    pos_frame = jnp.arange(batch)[:, None, None] * num_frames + jnp.minimum(
        target, num_frames - 1
    )  # [B, P, K]
    same = neg_idx[:, :, None, :] == pos_frame[..., None]  # [B, P, K, N-1]
    neg = jnp.where(same, pos[..., None], neg)
    scores = jnp.concatenate([pos[..., None], neg], axis=-1) * scale  # [B,P,K,N]
    valid = _valid_positions(frame_lens, num_frames, num_steps, positions)
    return _nce_from_scores(scores, valid[:, :count])


def info_nce(zhat, z, neg_idx, frame_lens, group_size, positions=None, scale=1.0):
    """CPC's InfoNCE loss with negatives from fixed groups of utterances.

    For each valid (b, t, k), i.e. t + k < frame_lens[b], the scores are the
    dot products of zhat[b, t, k - 1] with the positive z[b, t + k] and with
    the negatives neg_idx[b, t, k - 1] of b's group; the loss is the negative
    log-softmax of the positive.

    Scores against every frame of the group come from one einsum and are
    then picked out, which is far smaller than gathering a [.., N-1, D] tensor
    of negative vectors.

    Args:
        zhat: [B, T, K, D] predictions; zhat[:, t, k - 1] predicts z_{t+k}.
        z: [B, T, D] encoder frames.
        neg_idx: [B, T, K, N-1] int indices into the group's flattened frames
            (utterance j of the group, frame t -> j * T + t), as from
            `sample_negatives`.
        frame_lens: [B] int valid frames per utterance.
        group_size: G, utterances per negative pool; must divide B.
        positions: score only t < positions (CPC_audio scores t < T - K);
            None scores every t with t + k inside the utterance.
        scale: multiplies every score (1 / D for CPC_audio's mean product).

    Returns:
        loss: scalar, the sum over k of the mean over valid (b, t).
        accuracy: scalar, the fraction of valid (b, t, k) whose positive has
            the top score.
    """
    batch, num_frames, num_steps, dim = zhat.shape
    if group_size < 1 or batch % group_size:
        raise ValueError(
            f"model.negatives_group_size: {group_size} must divide the batch "
            f"size {batch}"
        )
    groups = batch // group_size
    zhat_g = zhat.reshape(groups, group_size, num_frames, num_steps, dim)
    z_g = z.reshape(groups, group_size * num_frames, dim)  # [Gn, G*T, D]
    scores = jnp.einsum(
        "gjtkd,gnd->gjtkn", zhat_g, z_g, preferred_element_type=jnp.float32
    )  # [Gn, G, T, K, G*T]

    steps = jnp.arange(1, num_steps + 1)  # [K]
    target = jnp.arange(num_frames)[:, None] + steps[None, :]  # [T, K]
    member = jnp.arange(batch) % group_size  # [B]
    # Invalid positions are clipped into range; the mask below drops them.
    pos_idx = member[:, None, None] * num_frames + jnp.minimum(target, num_frames - 1)
    pos_idx = jnp.broadcast_to(pos_idx, (batch, num_frames, num_steps))
    idx = jnp.concatenate([pos_idx[..., None], neg_idx.astype(pos_idx.dtype)], -1)
    idx = idx.reshape(groups, group_size, num_frames, num_steps, -1)
    picked = jnp.take_along_axis(scores, idx, axis=-1)  # [Gn, G, T, K, N]
    picked = picked.astype(jnp.float32).reshape(batch, num_frames, num_steps, -1)
    valid = _valid_positions(frame_lens, num_frames, num_steps, positions)
    return _nce_from_scores(picked * scale, valid)
