"""Several short windows in one row of a forward batch: no padding, one call.

A server's micro-batch holds texts of every length in arrival order; padding each forward batch
to its longest window wastes most of the tokens of short texts. Packed, the windows of a row sit
one after the other, each with its own special tokens; a block-diagonal attention mask keeps
them apart, their position ids restart at each window, and the heads' span masks take the
segment ids, so no cell joins two windows. GlobalPointer's RoPE is relative (q_i · k_j depends
on i - j), so a window's scores are the ones it gets alone, up to float rounding.

Whether an encoder computes the same states packed is checked once per extractor
(:func:`packing_works`): encoders that take no 4D mask or no position ids (or an ONNX session)
keep padded batches.
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from gplinker.batching import plan_cost
from gplinker.offsets import Window

logger = logging.getLogger(__name__)

# Tokens of a packed row. Attention and the heads' cells grow with the square of a row's length,
# so rows much longer than the windows cost more than the padding they save: on CoNLL04 sentences
# (37 tokens a window, MiniLM-L6, 2 CPU cores) rows of 64 / 96 / 128 / 192 / 256 tokens gave
# 314 / 299 / 291 / 254 / 229 texts/s offline against 283 padded, and 253 / 282 / 279 / 269 / 248
# for a server's random micro-batches of 32 against 210 padded (best of 2 runs of a one-off sweep,
# rows then filled first fit; bench/packing.py measures 128).
ROW_TOKENS = 128
# Length at which a row's quadratic cost equals its linear cost, per unit of hidden size: attention
# costs ~n·h a token against ~h² for the rest. 1.5 fits the measurements above (rows of 128
# instead of 37 tokens cost ~15% more per token) and decides when packing pays (should_pack).
QUADRATIC_PER_HIDDEN = 1.5

# Encoders whose learned positions start after the padding index (fairseq convention).
OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert", "longformer", "data2vec-text", "xmod")


def pack_rows(lengths: Sequence[int], row_tokens: int) -> list[list[int]]:
    """Indices of windows grouped into rows of at most ``row_tokens`` tokens: the windows, longest
    first, each go to the row with the least room that still holds them (best fit decreasing,
    O(n log n) through a sorted list of rooms); a row's windows are in that order. A window longer
    than ``row_tokens`` gets a row of its own."""
    rows: list[list[int]] = []
    rooms: list[tuple[int, int]] = []  # (room left, row), sorted
    for k in sorted(range(len(lengths)), key=lambda k: -lengths[k]):
        at = bisect.bisect_left(rooms, (lengths[k], -1))  # the tightest row with room for it
        if at < len(rooms):
            room, r = rooms.pop(at)
            rows[r].append(k)
        else:
            room, r = row_tokens, len(rows)
            rows.append([k])
        bisect.insort(rooms, (room - lengths[k], r))
    return rows


def block_attention(segments: torch.Tensor) -> torch.Tensor:
    """(B, n) segment ids (0: padding) -> (B, 1, n, n) bool: a position attends to its own
    window's positions; a padding position to itself only (a row of all False would give NaN)."""
    n = segments.shape[1]
    same = (segments[:, None, :, None] == segments[:, None, None, :]) & (segments > 0)[:, None, None, :]  # (B, 1, n, n)
    return same | torch.eye(n, dtype=torch.bool, device=segments.device)[None, None]


@dataclass(frozen=True)
class PackedBatch:
    """A forward batch of packed rows, and where each window sits in it."""

    tensors: dict[str, torch.Tensor]  # input_ids, attention_mask (B, 1, n, n), position_ids, span_mask (segment ids)
    row: np.ndarray  # (W,) the row of each window, in the order the windows were given
    offset: np.ndarray  # (W,) the window's first position in its row
    segment: np.ndarray  # (W,) its segment id in the row (1, 2, ...)


def collate_packed(
    windows: Sequence[Window], rows: Sequence[Sequence[int]], pad_id: int, position_offset: int = 0
) -> PackedBatch:
    """Tensors for ``rows`` (lists of indices into ``windows``), padded to the longest row."""
    n = max(sum(len(windows[k]) for k in r) for r in rows)
    b = len(rows)
    ids = np.full((b, n), pad_id, dtype=np.int64)
    seg = np.zeros((b, n), dtype=np.int64)  # segment of each position (0: padding)
    pos = np.zeros((b, n), dtype=np.int64)
    spans = np.zeros((b, n), dtype=np.int64)  # segment id where a position is text, else 0
    row, offset, segment = (np.zeros(len(windows), dtype=np.int64) for _ in range(3))
    for r, members in enumerate(rows):
        at = 0
        for s, k in enumerate(members, start=1):
            w, m = windows[k], len(windows[k])
            ids[r, at : at + m] = w.input_ids
            seg[r, at : at + m] = s
            pos[r, at : at + m] = np.arange(m) + position_offset
            spans[r, at : at + m] = np.where(w.token_starts >= 0, s, 0)
            row[k], offset[k], segment[k] = r, at, s
            at += m
    tensors = {
        "input_ids": torch.from_numpy(ids),
        "attention_mask": block_attention(torch.from_numpy(seg)),
        "position_ids": torch.from_numpy(pos),
        "span_mask": torch.from_numpy(spans),
    }
    return PackedBatch(tensors, row, offset, segment)


def should_pack(window_lengths: Sequence[int], rows: Sequence[Sequence[int]], max_batch: int, hidden_size: int) -> bool:
    """Whether packed ``rows`` are estimated to cost less than one padded row per window
    (:func:`gplinker.batching.plan_cost`): yes for a server's mixed micro-batches, usually no for
    a large input sorted by length, where padding is already small."""
    quad = QUADRATIC_PER_HIDDEN * hidden_size
    packed = plan_cost([sum(window_lengths[k] for k in r) for r in rows], max_batch, quad)
    return packed < plan_cost(window_lengths, max_batch, quad)


def position_offset(encoder: torch.nn.Module) -> int:
    """Where an encoder's position ids start (0, or after the padding index for RoBERTa-like ones)."""
    config = getattr(encoder, "config", None)
    if getattr(config, "model_type", None) in OFFSET_POSITIONS:
        return int(getattr(config, "pad_token_id", 1) or 1) + 1
    return 0


@torch.no_grad()
def packing_works(encoder: torch.nn.Module, pad_id: int, vocab_size: int, device: torch.device, tolerance: float = 1e-4) -> bool:
    """Whether ``encoder`` gives two packed windows the hidden states each gets alone (within
    ``tolerance`` of the states' largest magnitude), tried in eval mode."""
    from transformers import PreTrainedModel

    if not isinstance(encoder, PreTrainedModel):
        return False
    g = torch.Generator().manual_seed(0)
    a = torch.randint(5, max(6, vocab_size - 1), (7,), generator=g)
    b = torch.randint(5, max(6, vocab_size - 1), (5,), generator=g)
    start = position_offset(encoder)
    attention = block_attention(torch.tensor([[1] * 7 + [2] * 5 + [0] * 2]))  # (1, 1, 14, 14)
    ids = torch.cat([a, b, torch.full((2,), pad_id)])[None]
    pos = torch.cat([torch.arange(7), torch.arange(5), torch.zeros(2, dtype=torch.long)])[None] + start
    was_training = encoder.training
    encoder.eval()  # dropout would make any two calls differ
    try:
        packed = encoder(
            input_ids=ids.to(device), attention_mask=attention.to(device), position_ids=pos.to(device)
        ).last_hidden_state[0]  # (14, D)
        alone = [
            encoder(
                input_ids=x[None].to(device), attention_mask=torch.ones(1, len(x), dtype=torch.long, device=device)
            ).last_hidden_state[0]
            for x in (a, b)
        ]
    except (TypeError, ValueError, RuntimeError, IndexError) as e:
        logger.info("packing off: the encoder does not take packed rows (%s: %s)", type(e).__name__, e)
        return False
    finally:
        encoder.train(was_training)
    diff = max(float((packed[:7] - alone[0]).abs().max()), float((packed[7:12] - alone[1]).abs().max()))
    scale = max(1.0, max(float(x.abs().max()) for x in alone))  # relative to the states' size
    if diff > tolerance * scale:
        logger.info("packing off: packed windows differ from single ones by %.2g", diff)
        return False
    return True
