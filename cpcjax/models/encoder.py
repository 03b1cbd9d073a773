"""The CPC encoder f: raw 16 kHz waveform -> frame features z_t (100 frames/s)."""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cpcjax.constants import NORMS

KERNELS = (10, 8, 4, 4, 4)
STRIDES = (5, 4, 2, 2, 2)  # their product is constants.FRAME_HOP
PADDINGS = (3, 2, 1, 1, 1)


_NWC = ("NWC", "WIO", "NWC")


def _conv(x, kernel, stride, padding, precision):
    return lax.conv_general_dilated(
        x, kernel, (stride,), padding, dimension_numbers=_NWC, precision=precision
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _block_conv(x, kernel, stride, pad_lo, pad_hi, precision):
    return _conv(x, kernel, stride, [(pad_lo, pad_hi)], precision)


def _stored(x, kernel):
    """`x` on every platform; on CPU, as a buffer no fusion reaches into.

    XLA CPU fuses the producers of a convolution's input (the layer before's
    norm, ReLU and frame mask) into the transposed copy of it that the kernel
    gradient reads, and computes them there a second time, slowly: the first
    paper-size layer's copy took 100 ms where a stored array's takes 51.
    Fusion does not reach into a conditional's branch, so passing `x`
    through one makes the kernel gradient read a stored copy. The predicate
    holds for every value of the weight, NaN included, but XLA does not
    fold it (with two identical branches it drops the conditional). The
    paper-size steps run 5-8% faster, the demo's 4-13%, with the same
    gradients to the last bit.
    """

    def cpu(x, w):
        always = (w == w) | (w != w)
        return lax.cond(always, lambda v: v, jnp.zeros_like, x)

    return lax.platform_dependent(
        x, kernel[(0,) * kernel.ndim], cpu=cpu, default=lambda x, w: x
    )


def _block_conv_fwd(x, kernel, stride, pad_lo, pad_hi, precision):
    y = _block_conv(x, kernel, stride, pad_lo, pad_hi, precision)
    return y, (_stored(x, kernel), kernel)


def _block_conv_bwd(stride, pad_lo, pad_hi, precision, residuals, dy):
    x, kernel = residuals
    batch, length, channels = x.shape
    size, _, features = kernel.shape
    taps = size // stride  # the kernel's blocks of `stride` frames
    blocks = dy.shape[1] + taps - 1  # blocks of the padded input that are read
    # Output frame t reads the padded input's blocks t .. t + taps - 1, block
    # t + j through the kernel's block j. So input block u receives dy[u - j]
    # through block j: a stride-1 convolution of dy with the kernel's blocks
    # reversed and transposed, [taps, features, stride * channels].
    blocks_kernel = jnp.flip(kernel.reshape(taps, stride * channels, features), 0)
    dx = _conv(
        dy,
        blocks_kernel.transpose(0, 2, 1).astype(dy.dtype),
        1,
        [(taps - 1, taps - 1)],
        precision,
    ).reshape(batch, blocks * stride, channels)
    # Back from the padded input to x: drop the padding, and add zeros for
    # frames past the last block read.
    right = blocks * stride - pad_lo - length
    dx = lax.pad(
        dx, jnp.zeros((), dx.dtype), ((0, 0, 0), (-pad_lo, -right, 0), (0, 0, 0))
    )
    _, kernel_vjp = jax.vjp(
        lambda k: _conv(x, k, stride, [(pad_lo, pad_hi)], precision), kernel
    )
    (dkernel,) = kernel_vjp(dy)
    return dx.astype(x.dtype), dkernel


_block_conv.defvjp(_block_conv_fwd, _block_conv_bwd)


def strided_conv(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count=1,
    precision=None,
    preferred_element_type=None,
):
    """`lax.conv_general_dilated`, with a faster input gradient for strided 1-D convs.

    XLA takes the input gradient of a strided convolution as a convolution of
    the output gradient dilated by the stride, which on CPU runs at about half
    the forward's speed. Where the kernel spans a whole number of strides, the
    input is a sequence of blocks of `stride` frames, and the same gradient is
    a stride-1 convolution over blocks (`_block_conv_bwd`): the paper-size
    encoder's second layer takes it 30% faster. The forward and the kernel
    gradient are XLA's own. Other convolutions are passed through. It takes
    the arguments of `lax.conv_general_dilated`, as `nn.Conv` calls it.
    """
    blocked = (
        lhs.ndim == 3
        and len(window_strides) == 1
        and window_strides[0] > 1
        and rhs.shape[0] % window_strides[0] == 0
        and not isinstance(padding, str)
        and all(d == 1 for d in tuple(lhs_dilation or ()) + tuple(rhs_dilation or ()))
        and feature_group_count == 1
        and preferred_element_type is None
        and dimension_numbers == lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NWC)
    )
    if not blocked:
        return lax.conv_general_dilated(
            lhs,
            rhs,
            window_strides,
            padding,
            lhs_dilation=lhs_dilation,
            rhs_dilation=rhs_dilation,
            dimension_numbers=dimension_numbers,
            feature_group_count=feature_group_count,
            precision=precision,
            preferred_element_type=preferred_element_type,
        )
    ((pad_lo, pad_hi),) = padding
    return _block_conv(lhs, rhs, window_strides[0], pad_lo, pad_hi, precision)


def _clamp_nonnegative(n):
    if isinstance(n, jax.Array):
        return jnp.maximum(n, 0)
    if isinstance(n, np.ndarray | np.generic):
        return np.maximum(n, 0)
    return max(n, 0)


def _layer_length(n, kernel: int, stride: int, padding: int):
    return _clamp_nonnegative((n + 2 * padding - kernel) // stride + 1)


def frame_lengths(num_samples, kernels=KERNELS, strides=STRIDES, paddings=PADDINGS):
    """Number of frames the encoder produces for `num_samples` input samples.

    Args:
        num_samples: a python int, or a numpy / jax integer array of lengths.
        kernels: kernel size of each conv layer.
        strides: stride of each conv layer.
        paddings: zero padding added on both sides by each conv layer.

    Returns:
        The frame counts, of the same kind as `num_samples` (20480 -> 128).
    """
    n = num_samples
    for k, s, p in zip(kernels, strides, paddings, strict=True):
        n = _layer_length(n, k, s, p)
    return n


class ChannelNorm(nn.Module):
    """Per-frame normalisation over channels, as CPC_audio's ChannelNorm.

    Unlike BatchNorm it has no running state and does not mix frames or
    utterances, so padding and device count cannot change a frame's value.

    Attributes:
        epsilon: added to the variance.
        dtype: computation dtype of the output.
    """

    epsilon: float = 1e-5
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        features = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (features,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
        # Statistics in float32: a bfloat16 variance over 512 channels is too coarse.
        x32 = x.astype(jnp.float32)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        var = jnp.var(x32, axis=-1, keepdims=True, ddof=1)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.epsilon)
        return (y * scale + bias).astype(self.dtype)


class InstanceNorm(nn.Module):
    """Per-utterance, per-channel normalisation over time, as torch's InstanceNorm1d.

    CPC_audio's `normMode=instanceNorm` (affine, no running statistics). The
    statistics run over the valid frames only, so padding does not change
    them.

    Attributes:
        epsilon: added to the (biased) variance.
        dtype: computation dtype of the output.
    """

    epsilon: float = 1e-5
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, mask=None):
        """Normalises `x` [B, T, C] over T; `mask` [B, T] bool marks valid frames."""
        features = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (features,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
        x32 = x.astype(jnp.float32)
        w = jnp.ones(x.shape[:2] + (1,), jnp.float32) if mask is None else mask
        w = jnp.asarray(w, jnp.float32).reshape(x.shape[:2] + (1,))  # [B, T, 1]
        count = jnp.maximum(jnp.sum(w, axis=1, keepdims=True), 1.0)  # [B, 1, 1]
        mean = jnp.sum(x32 * w, axis=1, keepdims=True) / count  # [B, 1, C]
        var = jnp.sum(jnp.square(x32 - mean) * w, axis=1, keepdims=True) / count
        y = (x32 - mean) * jax.lax.rsqrt(var + self.epsilon)
        return (y * scale + bias).astype(self.dtype)


def _frame_mask(lengths, num_frames: int):
    return jnp.arange(num_frames)[None, :] < lengths[:, None]  # [B, T]


class Encoder(nn.Module):
    """Five strided 1-D convolutions, each followed by a norm and a ReLU.

    Attributes:
        channels: output channels of every layer.
        kernels: kernel size per layer.
        strides: stride per layer; the default's product, `FRAME_HOP`, gives
            10 ms frames at 16 kHz.
        paddings: symmetric zero padding per layer.
        norm: "none", "channel" (per-frame over channels), "layer"
            (nn.LayerNorm over channels) or "instance" (per channel over the
            utterance's frames).
        dtype: computation dtype; parameters stay float32.
    """

    channels: int = 512
    kernels: tuple[int, ...] = KERNELS
    strides: tuple[int, ...] = STRIDES
    paddings: tuple[int, ...] = PADDINGS
    norm: str = "channel"
    dtype: Any = jnp.float32

    def _make_norm(self, index: int):
        if self.norm == "none":
            return lambda x: x
        if self.norm == "channel":
            return ChannelNorm(dtype=self.dtype, name=f"norm{index}")
        if self.norm == "instance":
            return InstanceNorm(dtype=self.dtype, name=f"norm{index}")
        if self.norm == "layer":
            return nn.LayerNorm(
                epsilon=1e-5,
                dtype=self.dtype,
                param_dtype=jnp.float32,
                name=f"norm{index}",
            )
        raise ValueError(
            f"model.norm: unknown norm {self.norm!r}; use one of {', '.join(NORMS)}"
        )

    @nn.compact
    def __call__(self, wav, lengths=None):
        """Encodes a batch of waveforms.

        Args:
            wav: [B, S] float waveform.
            lengths: [B] int number of valid samples per utterance, or None when
                all S samples are valid.

        Returns:
            z: [B, T, channels] frame features; frames past an utterance's
                length are zero.
            frame_lens: [B] int32 number of valid frames per utterance.
        """
        if not len(self.kernels) == len(self.strides) == len(self.paddings):
            raise ValueError(
                "model.kernels, model.strides and model.paddings must have the "
                "same length"
            )
        batch, num_samples = wav.shape
        x = wav.astype(self.dtype)[..., None]  # [B, S, 1]
        if lengths is None:
            frame_lens = jnp.full(
                (batch,),
                frame_lengths(num_samples, self.kernels, self.strides, self.paddings),
                jnp.int32,
            )
        else:
            lens = jnp.asarray(lengths, jnp.int32)
            # Zeroing everything past the true length at every layer makes the
            # valid frames independent of how much padding follows them: each
            # conv then sees exactly the zeros it would have padded with.
            x = jnp.where(_frame_mask(lens, num_samples)[..., None], x, 0)
        layers = zip(self.kernels, self.strides, self.paddings, strict=True)
        for i, (k, s, p) in enumerate(layers):
            x = nn.Conv(
                self.channels,
                kernel_size=(k,),
                strides=(s,),
                padding=((p, p),),
                dtype=self.dtype,
                param_dtype=jnp.float32,
                conv_general_dilated=strided_conv,
                name=f"conv{i}",
            )(x)
            mask = None
            if lengths is not None:
                lens = _layer_length(lens, k, s, p)
                mask = _frame_mask(lens, x.shape[1])  # [B, T_i]
            norm = self._make_norm(i)
            x = norm(x, mask) if self.norm == "instance" else norm(x)
            x = nn.relu(x)  # [B, T_i, channels]
            if mask is not None:
                x = jnp.where(mask[..., None], x, 0)
        if lengths is not None:
            frame_lens = lens.astype(jnp.int32)
        return x, frame_lens
