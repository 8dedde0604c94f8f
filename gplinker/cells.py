"""Positive cells of GlobalPointer heads, with their logits and calibrated probabilities.

The same structure travels at two levels: per window in token positions (inside the library) and
per document in character offsets (what a task decodes, see :mod:`gplinker.alignment`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def probability(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """The score of a cell with logit ``s`` under the multilabel loss: σ(2s / T) (kexue.fm 9064;
    T = 1 unless a temperature was fitted, see :mod:`gplinker.calibration`). The decision threshold
    s = 0 is score 0.5 whatever T."""
    return 1.0 / (1.0 + np.exp(-2.0 * np.asarray(logits, dtype=np.float64) / temperature))


@dataclass(frozen=True)
class HeadCells:
    """Positive cells of one head: ``rows`` (N, 3) int64 ``(channel, a, b)`` and their (N,) logits.

    In a window ``a, b`` are token positions (inclusive); in a document they are characters: a
    span head's row is ``(channel, start, end)`` (end exclusive), a start-link head's row the
    starts of two spans, an end-link head's row their ends (see :class:`gplinker.task.HeadSpec`).
    """

    rows: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), dtype=np.int64))
    logits: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))

    def __post_init__(self) -> None:
        rows, logits = self.rows, self.logits
        if not (type(rows) is np.ndarray and rows.dtype == np.int64 and rows.ndim == 2 and rows.shape[1] == 3):
            rows = np.asarray(rows, dtype=np.int64).reshape(-1, 3)  # (N, 3)
        if not (type(logits) is np.ndarray and logits.dtype == np.float32 and logits.ndim == 1):
            logits = np.asarray(logits, dtype=np.float32).reshape(-1)  # (N,)
        if len(rows) != len(logits):
            raise ValueError(f"{len(rows)} cells but {len(logits)} logits")
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "logits", logits)

    def __len__(self) -> int:
        return len(self.rows)

    def probabilities(self) -> np.ndarray:
        """(N,) calibrated probabilities σ(2·logit)."""
        return probability(self.logits)

    def scores(self) -> dict[tuple[int, int, int], float]:
        """``{(channel, a, b): probability}``."""
        if not len(self.rows):
            return {}
        return {(int(c), int(a), int(b)): float(p) for (c, a, b), p in zip(self.rows.tolist(), self.probabilities())}

    def select(self, keep: np.ndarray) -> "HeadCells":
        """The cells picked by a boolean mask or an index array."""
        return HeadCells(self.rows[keep], self.logits[keep])

    def most_probable(self, limit: int) -> "HeadCells":
        """At most ``limit`` cells, the highest logits, in their original order."""
        if len(self) <= limit:
            return self
        return self.select(np.sort(np.argsort(-self.logits, kind="stable")[:limit]))


@dataclass(frozen=True)
class DocumentCells:
    """One document's positive cells in character offsets, its windows already merged.

    ``windows`` is how many windows the document was cut into: decoders scale their safety caps
    (the work a barely trained model can cause) by it, so long documents are not capped sooner.
    """

    heads: dict[str, HeadCells]
    windows: int = 1

    def __getitem__(self, name: str) -> HeadCells:
        """The cells of head ``name``; a name that is no head of the task is a KeyError (a typo
        must not read as "no cells")."""
        try:
            return self.heads[name]
        except KeyError:
            raise KeyError(f"no head {name!r}; this document's heads are {', '.join(sorted(self.heads)) or 'none'}") from None
