"""Contrastive Predictive Coding: encoder f, context g, prediction heads h_k."""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype

from cpcjax.models.context import Context
from cpcjax.models.encoder import KERNELS, PADDINGS, STRIDES, Encoder


@jax.custom_vjp
def _heads_matmul(c, kernel):
    """c [N, H] @ kernel [H, K * features], with the kernel gradient as c^T g.

    Differentiated by XLA, the kernel gradient comes out as [K * features,
    H] and is copied to the kernel's layout, and Adam's moments read it
    transposed as well. Taken as c^T g it is [H, K * features] at once: the
    paper-size pretraining step runs 3% faster. The sums are the same; their
    last bits may differ from XLA's order.
    """
    return c @ kernel


def _heads_matmul_fwd(c, kernel):
    return c @ kernel, (c, kernel)


def _heads_matmul_bwd(residuals, g):
    c, kernel = residuals
    return g @ kernel.T, jnp.einsum("nh,nx->hx", c, g)


_heads_matmul.defvjp(_heads_matmul_fwd, _heads_matmul_bwd)


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
        batch, frames, hidden = c.shape
        c2 = c.reshape(batch * frames, hidden)
        zhat = _heads_matmul(c2, kernel.reshape(hidden, -1))  # [B * T, K * features]
        return zhat.reshape(batch, frames, self.num_steps, self.features)


HEADS = ("linear", "transformer")  # config.model.predict_heads


class TransformerHead(nn.Module):
    """One of CPC_audio's transformer prediction heads (`--rnnMode transformer`).

    A single post-norm transformer layer: causal multi-head self-attention
    with a learned relative-position term, then a ReLU feed-forward block.
    The relative-position table and the causal mask are sized for exactly
    `seq_len` positions, so the head only runs on sequences of that length.

    Attributes:
        features: model width; the input (c_t) must have this size too.
        seq_len: the fixed number of positions.
        num_heads: attention heads.
        ff_hidden: units of the feed-forward block.
        dropout: rate on the attention weights and the feed-forward block.
        dtype: computation dtype; parameters stay float32.
    """

    features: int
    seq_len: int
    num_heads: int = 8
    ff_hidden: int = 2048
    dropout: float = 0.1
    dtype: Any = jnp.float32

    def _dense(self, features, name, use_bias=False):
        return nn.Dense(
            features,
            use_bias=use_bias,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            name=name,
        )

    def _norm(self, name):
        # torch's LayerNorm: epsilon 1e-5 and the two-pass variance.
        return nn.LayerNorm(
            epsilon=1e-5,
            use_fast_variance=False,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            name=name,
        )

    @nn.compact
    def __call__(self, x, deterministic=True):
        """Maps x [B, seq_len, features] to predictions of the same shape."""
        batch, length, dim = x.shape
        heads, dk = self.num_heads, dim // self.num_heads

        def split(y):  # [B, S, D] -> [B, heads, S, dk]
            return y.reshape(batch, length, heads, dk).transpose(0, 2, 1, 3)

        q = split(self._dense(dim, "query")(x))
        k = split(self._dense(dim, "key")(x))
        v = split(self._dense(dim, "value")(x))

        def init(key, shape, dtype):  # uniform in +-1/sqrt(dk), as CPC_audio
            bound = 1.0 / math.sqrt(dk)
            return jax.random.uniform(key, shape, dtype, -bound, bound)

        relpos = self.param("relpos", init, (dk, self.seq_len), jnp.float32)
        scores = jnp.einsum("bhsd,bhtd->bhst", q, k)  # [B, heads, S, S]
        qp = jnp.einsum("bhsd,dt->bhst", q, relpos.astype(q.dtype))  # [B, h, S, S]
        # The skew (CPC_audio's): a zero column in front, read back as
        # [S + 1, S] and row 0 dropped, gives query s and key j <= s the term
        # q_s . relpos[:, S - 1 - (s - j)]: one column per distance back. Keys
        # after s get other values, which the causal mask drops.
        qp = jnp.concatenate([jnp.zeros_like(qp[..., :1]), qp], axis=-1)
        qp = qp.reshape(batch, heads, length + 1, length)[:, :, 1:]  # [B, h, S, S]
        scores = (scores + qp) / math.sqrt(dk)
        causal = jnp.tril(jnp.ones((length, length), bool))
        scores = jnp.where(causal, scores.astype(jnp.float32), -jnp.inf)
        weights = jax.nn.softmax(scores, axis=-1).astype(self.dtype)
        weights = nn.Dropout(self.dropout)(weights, deterministic=deterministic)
        attended = jnp.einsum("bhst,bhtd->bhsd", weights, v)  # [B, heads, S, dk]
        attended = attended.transpose(0, 2, 1, 3).reshape(batch, length, dim)
        y = self._norm("attention_norm")(x + self._dense(dim, "out")(attended))
        h = nn.relu(self._dense(self.ff_hidden, "ff_hidden", use_bias=True)(y))
        h = nn.Dropout(self.dropout)(h, deterministic=deterministic)
        h = self._dense(dim, "ff_out", use_bias=True)(h)
        return self._norm("ff_norm")(y + h)  # [B, S, D]


class TransformerHeads(nn.Module):
    """K transformer heads over the first T - K positions, as CPC_audio trains them.

    CPC_audio predicts from c_t for t < T - K only, so every step has a
    target inside the window; positions from T - K on get zero predictions,
    which the loss leaves out (`info_nce(..., positions=T - K)`).

    Attributes:
        num_steps: K.
        features: size of the predicted z; c_t must have the same size.
        seq_len: T - K, the fixed number of positions the heads run on.
        dtype: computation dtype; parameters stay float32.
    """

    num_steps: int = 12
    features: int = 256
    seq_len: int = 116
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, c, deterministic=True):
        """Predicts z_{t+1} .. z_{t+K} from c_{<=t}.

        Args:
            c: [B, T, features] context vectors, with T - K == seq_len.
            deterministic: disables dropout when True.

        Returns:
            zhat: [B, T, K, features]; zero at t >= seq_len.
        """
        batch, num_frames, width = c.shape
        if num_frames - self.num_steps != self.seq_len:
            raise ValueError(
                f"model.predict_heads='transformer' runs on windows of exactly "
                f"{self.seq_len + self.num_steps} frames (pretrain.window); got "
                f"{num_frames}"
            )
        if width != self.features:
            raise ValueError(
                f"model.predict_heads='transformer' needs model.context_hidden "
                f"== model.channels; got {width} and {self.features}"
            )
        x = c[:, : self.seq_len].astype(self.dtype)  # [B, T - K, H]
        zhat = jnp.stack(
            [
                TransformerHead(
                    self.features, self.seq_len, dtype=self.dtype, name=f"head{k}"
                )(x, deterministic)
                for k in range(self.num_steps)
            ],
            axis=2,
        )  # [B, T - K, K, features]
        return jnp.pad(zhat, ((0, 0), (0, self.num_steps), (0, 0), (0, 0)))


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
        norm: encoder normalisation, "none" | "channel" | "layer" | "instance".
        context_hidden: recurrent units (size of c_t).
        context_cell: "gru" or "lstm".
        context_layers: stacked recurrent layers.
        dtype: computation dtype; parameters stay float32.
    """

    channels: int = 512
    kernels: tuple[int, ...] = KERNELS
    strides: tuple[int, ...] = STRIDES
    paddings: tuple[int, ...] = PADDINGS
    norm: str = "channel"
    context_hidden: int = 256
    context_cell: str = "gru"
    context_layers: int = 1
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
        self.context = Context(
            hidden=self.context_hidden,
            cell=self.context_cell,
            layers=self.context_layers,
            dtype=self.dtype,
        )

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
    """CPC model: encoder, causal recurrent context and K prediction heads.

    Attributes:
        num_steps: K, future frames predicted from each c_t.
        heads: "linear" (one bias-free map per step) or "transformer"
            (CPC_audio's transformer heads, on windows of exactly
            `head_seq_len + num_steps` frames).
        head_seq_len: T - K for transformer heads.
    """

    num_steps: int = 12
    heads: str = "linear"
    head_seq_len: int = 116

    def setup(self):
        super().setup()
        if self.heads == "transformer":
            self.predict_heads = TransformerHeads(
                num_steps=self.num_steps,
                features=self.channels,
                seq_len=self.head_seq_len,
                dtype=self.dtype,
            )
        elif self.heads == "linear":
            self.predict_heads = PredictHeads(
                num_steps=self.num_steps, features=self.channels, dtype=self.dtype
            )
        else:
            raise ValueError(
                f"model.predict_heads: unknown heads {self.heads!r}; use one of "
                f"{', '.join(HEADS)}"
            )

    def __call__(self, wav, lengths=None, deterministic=True):
        """Encodes and predicts.

        Args:
            wav: [B, S] float waveform.
            lengths: [B] int valid samples, or None when all are valid.
            deterministic: disables the transformer heads' dropout when True.

        Returns:
            A dict with z [B, T, C], c [B, T, H], zhat [B, T, K, C] and
            frame_lens [B] int32.
        """
        z, c, frame_lens = self.encode(wav, lengths)
        if self.heads == "transformer":
            zhat = self.predict_heads(c, deterministic)
        else:
            zhat = self.predict_heads(c)
        return {"z": z, "c": c, "zhat": zhat, "frame_lens": frame_lens}
