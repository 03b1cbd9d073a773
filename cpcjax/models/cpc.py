"""Contrastive Predictive Coding: encoder f, context g, prediction heads h_k."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype

from cpcjax.models.context import Context
from cpcjax.models.encoder import KERNELS, PADDINGS, STRIDES, Encoder


class PredictHeads(nn.Module):
    """One bias-free linear map per future step: zhat_{t+k} = W_k c_t.

    The K maps are stored as one kernel [H, K, features] so all steps run as a
    single matmul.

    Attributes:
        num_steps: K, how many future frames are predicted.
        features: size of the predicted z (the encoder's channels).
        dtype: computation dtype; parameters stay float32.
    """

    num_steps: int = 12
    features: int = 512
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, c):
        """Predicts z_{t+1} .. z_{t+K} from c_t.

        Args:
            c: [B, T, H] context vectors.

        Returns:
            zhat: [B, T, K, features]; zhat[:, t, k - 1] predicts z_{t+k}.
        """
        # fan_in = H, as for K separate Dense layers.
        init = nn.initializers.lecun_normal(in_axis=0, out_axis=(1, 2))
        kernel = self.param(
            "kernel", init, (c.shape[-1], self.num_steps, self.features), jnp.float32
        )
        c, kernel = promote_dtype(c, kernel, dtype=self.dtype)
        return jnp.einsum("bth,hkf->btkf", c, kernel)  # [B, T, K, features]


class EncoderContext(nn.Module):
    """The encoder f and context network g that CPC and the recognizer share.

    Subclasses add their heads; the submodules are always named `encoder` and
    `context`, so a pretrained CPC's params["encoder"] and params["context"]
    drop into an EmotionModel.

    Attributes:
        channels: encoder channels (size of z_t).
        kernels: encoder kernel size per conv layer.
        strides: encoder stride per conv layer.
        paddings: encoder padding per conv layer.
        norm: encoder normalisation, "none" | "channel" | "layer".
        context_hidden: GRU units (size of c_t).
        dtype: computation dtype; parameters stay float32.
    """

    channels: int = 512
    kernels: tuple[int, ...] = KERNELS
    strides: tuple[int, ...] = STRIDES
    paddings: tuple[int, ...] = PADDINGS
    norm: str = "channel"
    context_hidden: int = 256
    dtype: Any = jnp.float32

    def setup(self):
        self.encoder = Encoder(
            channels=self.channels,
            kernels=self.kernels,
            strides=self.strides,
            paddings=self.paddings,
            norm=self.norm,
            dtype=self.dtype,
        )
        self.context = Context(hidden=self.context_hidden, dtype=self.dtype)

    def encode(self, wav, lengths=None):
        """Runs f then g.

        Args:
            wav: [B, S] float waveform.
            lengths: [B] int valid samples, or None when all are valid.

        Returns:
            z: [B, T, channels], c: [B, T, context_hidden] and frame_lens: [B]
            int32; z and c are zero past frame_lens.
        """
        z, frame_lens = self.encoder(wav, lengths)
        c = self.context(z, frame_lens)
        return z, c, frame_lens


class CPC(EncoderContext):
    """CPC model: encoder, causal GRU context and K linear prediction heads.

    Attributes:
        num_steps: K, future frames predicted from each c_t.
    """

    num_steps: int = 12

    def setup(self):
        super().setup()
        self.predict_heads = PredictHeads(
            num_steps=self.num_steps, features=self.channels, dtype=self.dtype
        )

    def __call__(self, wav, lengths=None):
        """Encodes and predicts.

        Args:
            wav: [B, S] float waveform.
            lengths: [B] int valid samples, or None when all are valid.

        Returns:
            A dict with z [B, T, C], c [B, T, H], zhat [B, T, K, C] and
            frame_lens [B] int32.
        """
        z, c, frame_lens = self.encode(wav, lengths)
        return {"z": z, "c": c, "zhat": self.predict_heads(c), "frame_lens": frame_lens}
