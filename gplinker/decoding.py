"""Vectorised decoding: positive cells of head logits, never a Python loop over the n×n grid."""

from __future__ import annotations

import torch


def positive_cells(logits: torch.Tensor, threshold: float = 0.0, channel_chunk: int = 64) -> torch.Tensor:
    """Indices ``(b, h, i, j)`` of cells with ``logits > threshold``, row-major order. -> (N, 4) long.

    ``logits``: (B, H, n, n), already masked (padding, special tokens, lower triangle). Channels
    are tested in chunks so the boolean temporaries stay small when H is large.
    """
    b, h, n, _ = logits.shape
    parts = []
    for c0 in range(0, h, channel_chunk):
        idx = (logits[:, c0 : c0 + channel_chunk] > threshold).nonzero()  # (N_c, 4)
        idx[:, 1] += c0
        parts.append(idx)
    if not parts:
        return torch.zeros(0, 4, dtype=torch.long, device=logits.device)
    out = torch.cat(parts)
    if len(parts) > 1:  # restore (b, h, i, j) order across chunks
        key = ((out[:, 0] * h + out[:, 1]) * n + out[:, 2]) * n + out[:, 3]
        out = out[key.argsort()]
    return out
