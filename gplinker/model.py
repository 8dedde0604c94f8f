"""A shared transformer encoder feeding named GlobalPointer heads, and batch collation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from gplinker.alignment import TokenCells
from gplinker.heads import build_head
from gplinker.offsets import Window
from gplinker.task import HeadSpec


class GPLinkerModel(nn.Module):
    """``encoder`` (any Hugging Face ``AutoModel``) + one GlobalPointer head per :class:`HeadSpec`;
    with ``label_sharing`` the heads add the biases the specs' label groups share.

    Every entry point runs the encoder once (:meth:`encode`) and then each head's own path: an
    Efficient GlobalPointer head trains and decodes without materialising its (B, H, n, n) logits.
    """

    def __init__(
        self,
        encoder: nn.Module,
        specs: Sequence[HeadSpec],
        head_type: str = "efficient",
        head_size: int = 64,
        label_sharing: bool = False,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.specs = list(specs)
        self.heads = nn.ModuleDict(
            {
                s.name: build_head(
                    head_type, hidden, s.channels, head_size, s.use_rope, s.tril_mask, s.groups if label_sharing else ()
                )
                for s in self.specs
            }
        )

    def encode(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, n) ids and attention mask ((B, 1, n, n) for packed rows, with their (B, n)
        ``position_ids``) -> (B, n, D) hidden states."""
        if position_ids is None:
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).last_hidden_state

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, span_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Materialised logits {head: (B, H, n, n)}; ``span_mask`` (B, n) marks text positions."""
        hidden = self.encode(input_ids, attention_mask)  # (B, n, D)
        return {name: head(hidden, span_mask) for name, head in self.heads.items()}

    def training_loss(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        span_mask: torch.Tensor,
        labels: dict[str, torch.Tensor],
        factorized: bool = True,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Sum of the heads' sparse multilabel losses, and each part (detached, left on the device:
        reading them would make the host wait every step). ``labels``: {head: (B, H, K)}."""
        hidden = self.encode(input_ids, attention_mask)  # (B, n, D)
        parts = {name: head.loss(hidden, span_mask, labels[name], factorized) for name, head in self.heads.items()}
        total = torch.stack(list(parts.values())).sum()
        return total, {k: v.detach() for k, v in parts.items()}

    @torch.no_grad()
    def positive_cells(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        span_mask: torch.Tensor,
        channel_chunk: int = 16,
        thresholds: dict[str, float] | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """{head: ((N, 4) cells (b, h, i, j) with logit > the head's threshold (default 0), (N,) their logits)}.

        ``span_mask`` may hold segment ids (packed rows, :mod:`gplinker.packing`): no cell joins two segments."""
        hidden = self.encode(input_ids, attention_mask, position_ids)  # (B, n, D)
        thresholds = thresholds or {}
        return {
            name: head.positive_cells(hidden, span_mask, channel_chunk, thresholds.get(name, 0.0))
            for name, head in self.heads.items()
        }


@dataclass
class Batch:
    """Windows padded into tensors: what one forward pass (and, with labels, one loss) takes."""

    input_ids: torch.Tensor  # (B, n)
    attention_mask: torch.Tensor  # (B, n) 1 on tokens, 0 on padding
    span_mask: torch.Tensor  # (B, n) True where a span may start or end (text tokens)
    labels: dict[str, torch.Tensor] | None = None  # head -> (B, H, K) positive flat cells i*n + j, 0 = padding

    def inputs(self, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """The model's keyword inputs (ids and masks), on ``device``."""
        tensors = {"input_ids": self.input_ids, "attention_mask": self.attention_mask, "span_mask": self.span_mask}
        return {k: to_device(v, device) for k, v in tensors.items()} if device is not None else tensors

    def labels_on(self, device: torch.device | str) -> dict[str, torch.Tensor]:
        if self.labels is None:
            raise ValueError("this batch was built without targets: it has no labels")
        return {name: to_device(v, device) for name, v in self.labels.items()}


def to_device(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """A host tensor on ``device``; to a GPU through pinned memory, without making the host wait."""
    device = torch.device(device)
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def collate(
    windows: Sequence[Window], pad_id: int, specs: Sequence[HeadSpec] = (), targets: Sequence[TokenCells] | None = None
) -> Batch:
    """Pad windows to the longest one and, with ``targets``, build sparse labels per head.

    Labels are (B, H, K) flat cell indices ``i*n + j``; channels with fewer than K positives are
    padded with 0, the masked [CLS]-[CLS] cell.
    """
    b = len(windows)
    n = max(len(w) for w in windows)
    ids = np.full((b, n), pad_id, dtype=np.int64)
    att = np.zeros((b, n), dtype=np.int64)
    spans = np.zeros((b, n), dtype=bool)
    for r, w in enumerate(windows):
        ids[r, : len(w)] = w.input_ids
        att[r, : len(w)] = 1
        spans[r, : len(w)] = w.token_starts >= 0
    batch = Batch(torch.from_numpy(ids), torch.from_numpy(att), torch.from_numpy(spans))
    if targets is not None:
        labels = {}
        for spec in specs:
            per = [[[] for _ in range(spec.channels)] for _ in range(b)]
            for r, cells in enumerate(targets):
                for c, i, j in cells.get(spec.name, np.zeros((0, 3), dtype=np.int64)):
                    per[r][c].append(int(i) * n + int(j))
            k = max(1, max((len(set(x)) for row in per for x in row), default=1))
            lab = np.zeros((b, spec.channels, k), dtype=np.int64)
            for r in range(b):
                for c in range(spec.channels):
                    idx = sorted(set(per[r][c]))
                    lab[r, c, : len(idx)] = idx
            labels[spec.name] = torch.from_numpy(lab)
        batch.labels = labels
    return batch
