"""Multilabel "softmax + cross-entropy" (ZLPR, kexue.fm 7359), dense and sparse.

Both compute, per head channel, ``log(1 + Σ_neg e^s) + log(1 + Σ_pos e^-s)``, sum over channels
and average over the batch. Logits are cast to float32 first.
"""

from __future__ import annotations

import torch


def multilabel_crossentropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Dense loss. ``logits``, ``targets``: (..., C) with 0/1 targets -> per-row loss (...)."""
    s = logits.float()
    y = targets.bool()
    neg_inf = torch.tensor(float("-inf"), device=s.device)
    zeros = torch.zeros_like(s[..., :1])
    neg = torch.logsumexp(torch.cat([torch.where(y, neg_inf, s), zeros], dim=-1), dim=-1)
    pos = torch.logsumexp(torch.cat([torch.where(y, -s, neg_inf), zeros], dim=-1), dim=-1)
    return neg + pos


def sparse_multilabel_crossentropy(logits: torch.Tensor, indices: torch.Tensor, mask_zero: bool = True) -> torch.Tensor:
    """Sparse loss. ``logits``: (..., C); ``indices``: (..., K) positive classes -> loss (...).

    With ``mask_zero`` class 0 is never scored: index 0 pads channels with fewer than K
    positives (the [CLS]-[CLS] cell of a span head). The negative term is computed exactly as
    ``logsumexp`` over the non-positive logits (positives scattered to -inf) instead of
    ``a + log(1 - exp(b - a))``, which loses precision when positives dominate (bert4keras #500).
    Indices must not repeat within a row, except the padding 0.
    """
    s = logits.float()
    inf = float("inf")
    zeros = torch.zeros_like(s[..., :1])
    pos_logits = torch.gather(s, -1, indices)  # (..., K)
    if mask_zero:  # padding slots read +inf, so e^{-s} = 0 for them
        pos_logits = pos_logits.masked_fill(indices == 0, inf)
        s = torch.cat([torch.full_like(s[..., :1], -inf), s[..., 1:]], dim=-1)
    pos = torch.logsumexp(torch.cat([-pos_logits, zeros], dim=-1), dim=-1)
    negatives = s.scatter(-1, indices, -inf)  # (..., C)
    neg = torch.logsumexp(torch.cat([negatives, zeros], dim=-1), dim=-1)
    return neg + pos


def span_loss(logits: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Sparse loss of a head. ``logits``: (B, H, n, n); ``indices``: (B, H, K) flat ``i*n + j``.

    Sum over channels, mean over the batch, as in the reference implementation.
    """
    b, h, n, _ = logits.shape
    per_channel = sparse_multilabel_crossentropy(logits.reshape(b, h, n * n), indices)  # (B, H)
    return per_channel.sum(dim=1).mean()


def dense_span_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Dense loss of a head. ``logits``, ``targets``: (B, H, n, n) -> scalar (sum over H, mean over B)."""
    b, h, n, _ = logits.shape
    return multilabel_crossentropy(logits.reshape(b, h, n * n), targets.reshape(b, h, n * n)).sum(dim=1).mean()
