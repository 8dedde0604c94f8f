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
        return {
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "tp": self.tp,
            "n_pred": self.n_pred,
            "n_gold": self.n_gold,
        }


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


def macro(level: dict) -> dict:
    """Macro precision / recall / F1: the mean over the labels of ``level["per_label"]`` (labels
    seen in gold or predictions), as SpERT reports relations beside micro scores."""
    per = level.get("per_label") or {}
    if not per:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    return {k: sum(v[k] for v in per.values()) / len(per) for k in ("precision", "recall", "f1")}


def char_f1(pred: str, gold: str) -> float:
    """Character-level F1 of two strings (bag of characters), DuEE's argument matching score."""
    from collections import Counter

    same = sum((Counter(pred) & Counter(gold)).values())
    if not same:
        return 0.0
    p, r = same / len(pred), same / len(gold)
    return 2 * p * r / (p + r)


def soft_score(gold: Iterable[dict], pred: Iterable[dict]) -> dict:
    """DuEE's official argument score: per document and (event type, role), each predicted
    argument string is matched to the unmatched gold string of that key with the highest
    character-level F1 and scores that F1; precision = sum / predicted, recall = sum / gold.
    ``gold``/``pred``: one dict per document, {(event type, role): [argument strings]}."""
    total, n_pred, n_gold = 0.0, 0, 0
    for g, p in zip(list(gold), list(pred)):
        n_pred += sum(len(v) for v in p.values())
        n_gold += sum(len(v) for v in g.values())
        for key, strings in p.items():
            left = list(g.get(key, []))
            for s in strings:
                if not left:
                    break
                best = max(range(len(left)), key=lambda k: char_f1(s, left[k]))
                total += char_f1(s, left.pop(best))
    precision = total / n_pred if n_pred else 0.0
    recall = total / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "matched": total, "n_pred": n_pred, "n_gold": n_gold}


@dataclass(frozen=True)
class Metrics:
    """A task's evaluation: its levels by name (each with precision, recall, f1, counts,
    per_label) and the one that selects models -- named by the task, never guessed."""

    levels: dict
    main: str

    def __post_init__(self) -> None:
        if self.main not in self.levels or "f1" not in self.levels[self.main]:
            raise KeyError(f"the main level {self.main!r} is not among the metrics' levels ({', '.join(self.levels)})")

    @classmethod
    def of(cls, task, levels: dict) -> "Metrics":
        """The metrics ``task.evaluate`` returned, with the task's main level."""
        return cls(levels, task.main_level)

    @property
    def f1(self) -> float:
        """The main level's F1: the model-selection score."""
        return float(self.levels[self.main]["f1"])

    @property
    def count_ratio(self) -> float:
        """Predicted per gold item of the main level (events per gold event, triples per gold triple)."""
        level = self.levels[self.main]
        return float(level["n_pred"]) / max(1, int(level["n_gold"])) if "n_pred" in level else 1.0


def over_seeds(runs: list[dict]) -> dict:
    """Mean and sample standard deviation of every level's precision, recall and F1 over the
    metrics of several runs (seeds) of one command: ``{level: {"f1": {"mean", "std", "values"}, ...}}``.
    A level missing from a run is left out; ``std`` is 0 for one run."""
    import statistics

    levels = [k for k, v in (runs[0] if runs else {}).items() if isinstance(v, dict) and "f1" in v]
    out: dict = {}
    for level in levels:
        if not all(isinstance(r.get(level), dict) for r in runs):
            continue
        out[level] = {}
        for key in ("precision", "recall", "f1"):
            values = [float(r[level][key]) for r in runs]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            out[level][key] = {"mean": statistics.fmean(values), "std": std, "values": values}
    return out
