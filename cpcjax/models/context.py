"""The autoregressive context network g: c_t = g(z_<=t), a causal GRU or LSTM."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

CELLS = ("gru", "lstm")  # config.model.context_cell


def layer_name(cell: str, index: int) -> str:
    """Parameter name of recurrent layer `index`: gru, gru1, gru2, ...

    The first layer keeps the bare name, so the one-layer GRU's parameter
    tree, and the checkpoints written with it, do not change.
    """
    return cell if index == 0 else f"{cell}{index}"


class Context(nn.Module):
    """A stack of unidirectional recurrent layers over encoder frames.

    Attributes:
        hidden: units of every layer, the size of c_t.
        cell: "gru" (flax GRUCell) or "lstm" (flax LSTMCell).
        layers: number of stacked layers, as CPC_audio's nLevelsGRU.
        dtype: computation dtype; parameters stay float32.
    """

    hidden: int = 256
    cell: str = "gru"
    layers: int = 1
    dtype: Any = jnp.float32

    def _cell(self, index: int):
        kinds = {"gru": nn.GRUCell, "lstm": nn.LSTMCell}
        if self.cell not in kinds:
            raise ValueError(
                f"model.context_cell: unknown cell {self.cell!r}; use one of "
                f"{', '.join(CELLS)}"
            )
        return kinds[self.cell](
            self.hidden,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            name=layer_name(self.cell, index),
        )

    @nn.compact
    def __call__(self, z, frame_lens=None):
        """Summarises the past of every frame.

        Args:
            z: [B, T, C] encoder frames.
            frame_lens: [B] int number of valid frames, or None when all are.

        Returns:
            c: [B, T, hidden]; zero at frames >= frame_lens.
        """
        x = z.astype(self.dtype)
        for i in range(self.layers):
            x = nn.RNN(self._cell(i))(x, seq_lengths=frame_lens)  # [B, T, hidden]
        if frame_lens is None:
            return x
        # nn.RNN carries on past seq_lengths; those outputs are meaningless and
        # would leak into anything that forgets the mask.
        valid = jnp.arange(z.shape[1])[None, :] < frame_lens[:, None]  # [B, T]
        return jnp.where(valid[..., None], x, 0)
