"""The emotion recognizer: self-attention over c_t, [mean; std] pooling, MLP."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cpcjax.models.cpc import EncoderContext, PredictHeads


def masked_mean_std(u, mask, epsilon: float = 1e-6):
    """Mean and standard deviation over the valid frames of each utterance.

    Args:
        u: [B, T, D] frame features.
        mask: [B, T] bool, True at valid frames.
        epsilon: added to the variance so the gradient of sqrt stays finite.

    Returns:
        mean, std: each [B, D] float32.
    """
    w = mask.astype(jnp.float32)[..., None]  # [B, T, 1]
    u = u.astype(jnp.float32)
    # An utterance with no valid frame gets mean 0, std sqrt(epsilon), not NaN.
    count = jnp.maximum(jnp.sum(w, axis=1), 1.0)  # [B, 1]
    mean = jnp.sum(u * w, axis=1) / count  # [B, D]
    var = jnp.sum(jnp.square(u - mean[:, None]) * w, axis=1) / count
    return mean, jnp.sqrt(var + epsilon)


class Recognizer(nn.Module):
    """Multi-head self-attention, utterance pooling and a regression MLP.

    Attributes:
        num_heads: attention heads.
        d_model: query/key/value and output size of the attention.
        hidden: units of the MLP's hidden layer.
        num_outputs: regressed dimensions (activation, valence, dominance).
        dropout: rate on the attention weights and on the MLP's hidden layer.
        dtype: computation dtype; parameters stay float32.
    """

    num_heads: int = 4
    d_model: int = 256
    hidden: int = 256
    num_outputs: int = 3
    dropout: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, c, mask, deterministic=True):
        """Predicts the utterance's emotion dimensions.

        Per-head attention weights [B, heads, T, T] are sown into
        "intermediates" under `attention/attention_weights` and the pooled
        embedding [B, 2 * d_model] under `embedding`, when that collection is
        mutable.

        Args:
            c: [B, T, H] context vectors.
            mask: [B, T] bool, True at valid frames.
            deterministic: disables dropout when True.

        Returns:
            preds: [B, num_outputs] float32.
        """
        mask = mask.astype(bool)
        u = nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads,
            qkv_features=self.d_model,
            out_features=self.d_model,
            dropout_rate=self.dropout,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            name="attention",
        )(
            c,
            mask=nn.make_attention_mask(mask, mask),
            deterministic=deterministic,
            sow_weights=True,
        )  # [B, T, d_model]
        # Fully masked rows (padded queries) softmax over a finite big_neg into
        # uniform weights, never NaN, and pooling below drops them anyway.
        mean, std = masked_mean_std(u, mask)
        embedding = jnp.concatenate([mean, std], axis=-1)  # [B, 2 * d_model]
        self.sow("intermediates", "embedding", embedding)
        x = nn.Dense(
            self.hidden, dtype=self.dtype, param_dtype=jnp.float32, name="hidden"
        )(embedding)
        x = nn.Dropout(self.dropout)(nn.relu(x), deterministic=deterministic)
        x = nn.Dense(
            self.num_outputs, dtype=self.dtype, param_dtype=jnp.float32, name="output"
        )(x)
        return x.astype(jnp.float32)


class EmotionModel(EncoderContext):
    """Encoder + context + recognizer, optionally with CPC prediction heads.

    Attributes:
        num_heads: recognizer attention heads.
        d_model: recognizer attention size.
        mlp_hidden: recognizer MLP hidden units.
        num_outputs: regressed dimensions.
        dropout: recognizer dropout rate.
        num_steps: K of the prediction heads (used with `with_predict_heads`).
        with_predict_heads: adds `predict_heads` for the InfoNCE term of
            jointCPC.
        freeze_cpc: stops gradients at z and c, so the encoder and context
            are not trained.
    """

    num_heads: int = 4
    d_model: int = 256
    mlp_hidden: int = 256
    num_outputs: int = 3
    dropout: float = 0.0
    num_steps: int = 12
    with_predict_heads: bool = False
    freeze_cpc: bool = False

    def setup(self):
        super().setup()
        self.recognizer = Recognizer(
            num_heads=self.num_heads,
            d_model=self.d_model,
            hidden=self.mlp_hidden,
            num_outputs=self.num_outputs,
            dropout=self.dropout,
            dtype=self.dtype,
        )
        if self.with_predict_heads:
            self.predict_heads = PredictHeads(
                num_steps=self.num_steps, features=self.channels, dtype=self.dtype
            )

    def __call__(self, wav, lengths=None, deterministic=True):
        """Predicts emotion dimensions from waveforms.

        Args:
            wav: [B, S] float waveform, zero padded.
            lengths: [B] int valid samples, or None when all are valid.
            deterministic: disables dropout when True.

        Returns:
            A dict with preds [B, num_outputs] float32, z [B, T, C],
            c [B, T, H], frame_lens [B] int32, and zhat [B, T, K, C] when
            `with_predict_heads`.
        """
        z, c, frame_lens = self.encode(wav, lengths)
        if self.freeze_cpc:
            z, c = jax.lax.stop_gradient(z), jax.lax.stop_gradient(c)
        mask = jnp.arange(c.shape[1])[None, :] < frame_lens[:, None]  # [B, T]
        out = {
            "preds": self.recognizer(c, mask, deterministic=deterministic),
            "z": z,
            "c": c,
            "frame_lens": frame_lens,
        }
        if self.with_predict_heads:
            out["zhat"] = self.predict_heads(c)
        return out
