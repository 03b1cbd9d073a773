"""The autoregressive context network g: c_t = g(z_<=t), a causal GRU."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp


class Context(nn.Module):
    """One-layer unidirectional GRU over encoder frames.

    Attributes:
        hidden: GRU units, the size of c_t.
        dtype: computation dtype; parameters stay float32.
    """

    hidden: int = 256
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z, frame_lens=None):
        """Summarises the past of every frame.

        Args:
            z: [B, T, C] encoder frames.
            frame_lens: [B] int number of valid frames, or None when all are.

        Returns:
            c: [B, T, hidden]; zero at frames >= frame_lens.
        """
        cell = nn.GRUCell(
            self.hidden, dtype=self.dtype, param_dtype=jnp.float32, name="gru"
        )
        rnn = nn.RNN(cell)
        if frame_lens is None:
            return rnn(z.astype(self.dtype))
        c = rnn(z.astype(self.dtype), seq_lengths=frame_lens)  # [B, T, hidden]
        # nn.RNN carries on past seq_lengths; those outputs are meaningless and
        # would leak into anything that forgets the mask.
        valid = jnp.arange(z.shape[1])[None, :] < frame_lens[:, None]  # [B, T]
        return jnp.where(valid[..., None], c, 0)
