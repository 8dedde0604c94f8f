"""Micro precision / recall / F1 over sets of tuples, with a per-label breakdown."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Hashable, Iterable


@dataclass
class PRF:
    """Counts of one comparison; scores are floats in 0..1 (0 when undefined)."""

    tp: int = 0
    n_pred: int = 0
    n_gold: int = 0

    @property
    def precision(self) -> float:
        return self.tp / self.n_pred if self.n_pred else 0.0

    @property
    def recall(self) -> float:
        return self.tp / self.n_gold if self.n_gold else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def add(self, gold: set, pred: set) -> None:
        self.tp += len(gold & pred)
        self.n_pred += len(pred)
        self.n_gold += len(gold)

    def to_json(self) -> dict[str, float | int]:
        return {"precision": self.precision, "recall": self.recall, "f1": self.f1,
                "tp": self.tp, "n_pred": self.n_pred, "n_gold": self.n_gold}


def score(gold: Iterable[set], pred: Iterable[set], label_of: Callable[[tuple], Hashable] | None = None) -> dict:
    """Micro P/R/F1 of per-document tuple sets; ``label_of(item)`` adds ``per_label`` scores.

    Items are compared exactly; documents are paired in order (``zip`` must not drop any).
    """
    gold, pred = list(gold), list(pred)
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold documents but {len(pred)} predicted ones")
    total = PRF()
    per: dict[Hashable, PRF] = defaultdict(PRF)
    for g, p in zip(gold, pred):
        g, p = set(g), set(p)
        total.add(g, p)
        if label_of is not None:
            for lab in {label_of(x) for x in g | p}:
                per[lab].add({x for x in g if label_of(x) == lab}, {x for x in p if label_of(x) == lab})
    out = total.to_json()
    if label_of is not None:
        out["per_label"] = {str(k): per[k].to_json() for k in sorted(per, key=str)}
    return out
