"""GlobalPointer heads (kexue.fm 8373) and Efficient GlobalPointer (8877), with RoPE and masks."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from gplinker.decoding import positive_cells
from gplinker.factorized import factorized_positive_cells, factorized_span_loss
from gplinker.losses import span_loss
from gplinker.masks import mask_value, span_mask

__all__ = ["EfficientGlobalPointer", "GlobalPointer", "build_head", "mask_value", "rope", "span_mask"]


def rope(x: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotary position embedding along the sequence axis (-2), interleaved pair form.

    ``x``: (..., n, d) with even d. Pair (2k, 2k+1) at position m is rotated by m·base^(-2k/d):
    ``x*cos + rotate_pairs(x)*sin`` with ``rotate_pairs(x) = (-x1, x0, -x3, x2, ...)``.
    """
    n, d = x.shape[-2], x.shape[-1]
    if d % 2:
        raise ValueError(f"RoPE needs an even head size, got {d}")
    pos = torch.arange(n, device=x.device, dtype=torch.float32)  # (n,)
    inv = base ** (-torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)  # (d/2,)
    theta = pos[:, None] * inv[None, :]  # (n, d/2)
    cos = theta.cos().repeat_interleave(2, dim=-1)  # (n, d)
    sin = theta.sin().repeat_interleave(2, dim=-1)  # (n, d)
    xf = x.float()
    rotated = torch.stack([-xf[..., 1::2], xf[..., ::2]], dim=-1).reshape(xf.shape)  # (..., n, d)
    return (xf * cos + rotated * sin).to(x.dtype)


class SharedLabelBias(nn.Module):
    """Start and end biases shared by groups of labels, added to each member label's own.

    ``groups[h]`` names the groups label ``h`` belongs to (an event argument label (type, role)
    is in the group of its type and the group of its role): a rare label starts from what its
    role learned under every event type and what its type learned from every role, instead of
    from its own few examples. Its bias starts at zero (its weights as any linear layer's), so
    the prior of the initial logits stays where the head puts it.
    """

    def __init__(self, in_size: int, groups: Sequence[Sequence[str]]) -> None:
        super().__init__()
        self.names = sorted({g for gs in groups for g in gs})
        index = {g: k for k, g in enumerate(self.names)}
        self.dense = nn.Linear(in_size, 2 * len(self.names))
        with torch.no_grad():
            self.dense.bias.zero_()
        member = torch.zeros(len(groups), len(self.names))  # (H, G) 1 where label h is in group g
        for h, gs in enumerate(groups):
            for g in gs:
                member[h, index[g]] = 1.0
        self.register_buffer("membership", member, persistent=False)  # rebuilt from the labels, never saved

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (B, n, in) -> (B, n, H, 2) per label: (end bias, start bias), interleaved as q_dense's channels."""
        b, n, _ = x.shape
        g = self.dense(x).view(b, n, len(self.names), 2)  # (B, n, G, 2)
        return torch.einsum("bngt,hg->bnht", g, self.membership.to(g.dtype))  # (B, n, H, 2)

    @torch.no_grad()
    def copy_groups(self, src: "SharedLabelBias | None") -> None:
        """Take the rows of every group ``src`` also has (fine-tuning with new labels)."""
        if src is None:
            return
        old = {g: k for k, g in enumerate(src.names)}
        for k, g in enumerate(self.names):
            if g in old:
                self.dense.weight[2 * k : 2 * k + 2] = src.dense.weight[2 * old[g] : 2 * old[g] + 2]
                self.dense.bias[2 * k : 2 * k + 2] = src.dense.bias[2 * old[g] : 2 * old[g] + 2]


class GlobalPointer(nn.Module):
    """Per label h: ``s_h(i, j) = q_{h,i} · k_{h,j} / sqrt(d)`` with separate projections."""

    def __init__(
        self,
        hidden_size: int,
        heads: int,
        head_size: int = 64,
        use_rope: bool = True,
        tril_mask: bool = True,
        groups: Sequence[Sequence[str]] = (),
    ) -> None:
        super().__init__()
        self.heads, self.head_size = heads, head_size
        self.use_rope, self.tril_mask = use_rope, tril_mask
        self.dense = nn.Linear(hidden_size, heads * head_size * 2)
        self.shared = SharedLabelBias(hidden_size, groups) if any(groups) else None

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``hidden``: (B, n, D), ``mask``: (B, n) -> logits (B, H, n, n), masked cells very negative."""
        b, n, _ = hidden.shape
        x = self.dense(hidden).view(b, n, self.heads, 2, self.head_size)  # (B, n, H, 2, d)
        q = x[..., 0, :].transpose(1, 2)  # (B, H, n, d)
        k = x[..., 1, :].transpose(1, 2)  # (B, H, n, d)
        if self.use_rope:
            q, k = rope(q), rope(k)  # rotate along n, never along H
        logits = q @ k.transpose(-1, -2) / math.sqrt(self.head_size)  # (B, H, n, n)
        if self.shared is not None:
            g = self.shared(hidden).permute(0, 2, 3, 1)  # (B, H, 2, n)
            logits = logits + g[:, :, 1, :, None] + g[:, :, 0, None, :]  # start bias on i, end bias on j
        return logits.masked_fill(~span_mask(mask, self.tril_mask), mask_value(logits.dtype))

    def loss(self, hidden: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, factorized: bool = True) -> torch.Tensor:
        """Sparse multilabel loss against ``labels`` (B, H, K) flat positive cells."""
        return span_loss(self(hidden, mask), labels)

    @torch.no_grad()
    def copy_channels(self, src: "GlobalPointer", mapping: dict[int, int]) -> None:
        """Take channel ``old`` of ``src`` as channel ``new`` for each ``new: old`` of ``mapping``."""
        w = 2 * self.head_size  # rows of one channel: (q, k) x head size
        for new, old in mapping.items():
            self.dense.weight[new * w : (new + 1) * w] = src.dense.weight[old * w : (old + 1) * w]
            self.dense.bias[new * w : (new + 1) * w] = src.dense.bias[old * w : (old + 1) * w]
        if self.shared is not None:
            self.shared.copy_groups(src.shared)

    def positive_cells(
        self, hidden: torch.Tensor, mask: torch.Tensor, channel_chunk: int = 16, threshold: float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """((N, 4) cells (b, h, i, j) with logit > ``threshold``, (N,) their logits)."""
        logits = self(hidden, mask)  # (B, H, n, n)
        cells = positive_cells(logits, threshold)
        return cells, logits[cells[:, 0], cells[:, 1], cells[:, 2], cells[:, 3]]


INITIAL_LOGIT = -8.0  # where Efficient GlobalPointer's cells start: "no" for all, a prior (see below)


class EfficientGlobalPointer(nn.Module):
    """Shared ``q·k`` for all labels plus a per-label start bias and end bias (kexue.fm 8877).

    ``initial_logit`` initialises the label biases so that every cell starts near that logit, a
    prior that almost every cell is negative (as RetinaNet's prior initialisation). With zero
    biases all n² cells start near 0 and the multilabel loss spends its first hundreds of steps
    pushing them down before any positive rises above the threshold; starting low, the loss
    works on the positives from the first step.
    """

    def __init__(
        self,
        hidden_size: int,
        heads: int,
        head_size: int = 64,
        use_rope: bool = True,
        tril_mask: bool = True,
        groups: Sequence[Sequence[str]] = (),
        initial_logit: float = INITIAL_LOGIT,
    ) -> None:
        super().__init__()
        self.heads, self.head_size = heads, head_size
        self.use_rope, self.tril_mask = use_rope, tril_mask
        self.p_dense = nn.Linear(hidden_size, head_size * 2)
        self.q_dense = nn.Linear(head_size * 2, heads * 2)
        self.shared = SharedLabelBias(head_size * 2, groups) if any(groups) else None
        with torch.no_grad():  # start bias + end bias = initial_logit (each is halved in factors())
            self.q_dense.bias.fill_(initial_logit)

    def factors(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Unmasked parts: shared scores (B, n, n), start bias (B, H, n), end bias (B, H, n)."""
        p = self.p_dense(hidden)  # (B, n, 2d)
        q, k = p[..., ::2], p[..., 1::2]  # (B, n, d) each
        if self.use_rope:
            q, k = rope(q), rope(k)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_size)  # (B, n, n)
        bias = self.q_dense(p)  # (B, n, 2H), from the pre-RoPE projection
        if self.shared is not None:
            bias = bias + self.shared(p).flatten(2)  # (B, n, 2H)
        bias = bias.transpose(1, 2) / 2  # (B, 2H, n)
        return scores, bias[:, 1::2], bias[:, ::2]  # odd channels: start axis i; even: end axis j

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``hidden``: (B, n, D), ``mask``: (B, n) -> logits (B, H, n, n), masked cells very negative."""
        scores, start_bias, end_bias = self.factors(hidden)
        logits = scores[:, None] + start_bias[..., :, None] + end_bias[..., None, :]  # (B, H, n, n)
        return logits.masked_fill(~span_mask(mask, self.tril_mask), mask_value(logits.dtype))

    def loss(self, hidden: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, factorized: bool = True) -> torch.Tensor:
        """Sparse multilabel loss; ``factorized`` computes it without the [B, H, n, n] logits."""
        if factorized:
            return factorized_span_loss(*self.factors(hidden), mask, labels, self.tril_mask)
        return span_loss(self(hidden, mask), labels)

    @torch.no_grad()
    def copy_channels(self, src: "EfficientGlobalPointer", mapping: dict[int, int]) -> None:
        """The shared projection of ``src``, and its label biases of channel ``old`` as channel ``new``."""
        self.p_dense.load_state_dict(src.p_dense.state_dict())
        for new, old in mapping.items():
            self.q_dense.weight[2 * new : 2 * new + 2] = src.q_dense.weight[2 * old : 2 * old + 2]
            self.q_dense.bias[2 * new : 2 * new + 2] = src.q_dense.bias[2 * old : 2 * old + 2]
        if self.shared is not None:
            self.shared.copy_groups(src.shared)

    def positive_cells(
        self, hidden: torch.Tensor, mask: torch.Tensor, channel_chunk: int = 16, threshold: float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """((N, 4) cells (b, h, i, j) with logit > ``threshold``, (N,) their logits), a few channels at a time."""
        return factorized_positive_cells(*self.factors(hidden), mask, self.tril_mask, channel_chunk, threshold)


HEADS = {"standard": GlobalPointer, "efficient": EfficientGlobalPointer}


def build_head(
    kind: str,
    hidden_size: int,
    heads: int,
    head_size: int = 64,
    use_rope: bool = True,
    tril_mask: bool = True,
    groups: Sequence[Sequence[str]] = (),
) -> nn.Module:
    """A head by name: ``standard`` (GlobalPointer) or ``efficient`` (Efficient GlobalPointer);
    ``groups``: per label, the groups whose bias it shares (:class:`SharedLabelBias`; none: no sharing)."""
    if kind not in HEADS:
        raise ValueError(f"unknown head type {kind!r}; choose one of {sorted(HEADS)}")
    if groups and len(groups) != heads:
        raise ValueError(f"{len(groups)} label groups given for a head of {heads} labels")
    return HEADS[kind](hidden_size, heads, head_size, use_rope, tril_mask, groups)
