"""Which cells of a head exist: padding and special tokens on both axes, and the lower triangle."""

from __future__ import annotations

import torch


def mask_value(dtype: torch.dtype) -> float:
    """A large negative fill that stays finite in ``dtype`` (1e12 overflows fp16's 65504)."""
    return -min(1e12, torch.finfo(dtype).max / 2)


def span_mask(mask: torch.Tensor, tril: bool) -> torch.Tensor:
    """Cells (i, j) allowed for a head: both positions real, in the same segment and, with
    ``tril``, j >= i.

    ``mask``: (B, n) bool or 0/1, or segment ids (0: not text; several windows packed in one
    row are segments 1, 2, ...: no cell joins two of them) -> (B, 1, n, n) bool.
    """
    seg = mask.long()  # (B, n)
    real = seg > 0
    cells = real[:, None, :, None] & (seg[:, None, :, None] == seg[:, None, None, :])  # (B, 1, n, n)
    if tril:
        n = seg.shape[1]
        cells = cells & torch.ones(n, n, dtype=torch.bool, device=seg.device).triu()  # j >= i
    return cells
