"""How well do scores σ(2·logit) match how often items are right? Reliability of each head's cells
on labelled data, expected calibration error, and a temperature fitted on dev.

A head's cells are taken down to a logit of ``floor`` (below the decision threshold), so the
measurement sees near-misses as well as decoded items; a cell is right when the gold has it
(:func:`gplinker.alignment.gold_cells`, for link heads too).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from gplinker.alignment import gold_cells
from gplinker.cells import probability
from gplinker.structures import Document

BINS = 10


@dataclass
class Outcomes:
    """Logits of one head's cells and whether each is right."""

    head: str
    logits: np.ndarray  # (N,)
    correct: np.ndarray  # (N,) bool
    n_gold: int


def cell_outcomes(extractor, docs: Sequence[Document], floor: float = -3.0, batch_size: int = 32) -> list[Outcomes]:
    """Every cell with logit > ``floor`` of every head, right or wrong, over ``docs`` (raw logits:
    the model's temperature is not applied)."""
    specs = extractor.task.head_specs()
    saved, extractor.settings.temperature = extractor.settings.temperature, 1.0
    try:
        cells = extractor.document_cells([d.text for d in docs], batch_size, thresholds={s.name: floor for s in specs})
    finally:
        extractor.settings.temperature = saved
    out = []
    for spec in specs:
        logits, correct, n_gold = [], [], 0
        for d, c in zip(docs, cells):
            gold = {tuple(r) for r in gold_cells(specs, extractor.task.targets(d))[spec.name].rows.tolist()}
            n_gold += len(gold)
            hc = c[spec.name]
            logits.append(hc.logits)
            correct.append(np.array([tuple(r) in gold for r in hc.rows.tolist()], dtype=bool))
        out.append(
            Outcomes(
                spec.name,
                np.concatenate(logits) if logits else np.zeros(0),
                np.concatenate(correct) if correct else np.zeros(0, bool),
                n_gold,
            )
        )
    return out


probabilities = probability  # σ(2·logit / T), defined once in gplinker.cells


def reliability(probs: np.ndarray, correct: np.ndarray, bins: int = BINS) -> list[tuple[float, float, int]]:
    """(mean score, fraction right, count) per equal-width score bin with items."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probs, edges[1:-1]), 0, bins - 1)
    return [
        (float(probs[which == b].mean()), float(correct[which == b].mean()), int((which == b).sum()))
        for b in range(bins)
        if (which == b).any()
    ]


def ece(probs: np.ndarray, correct: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error: the count-weighted mean |score - fraction right| over bins."""
    n = len(probs)
    return sum(c * abs(p - a) for p, a, c in reliability(probs, correct, bins)) / n if n else 0.0


def fit_temperature(outcomes: Sequence[Outcomes]) -> float:
    """The temperature T minimising the log loss of σ(2·logit / T) against rightness, over every
    head's cells together (one T per model), searched on a log grid from 1/8 to 8."""
    logits = np.concatenate([o.logits for o in outcomes])
    correct = np.concatenate([o.correct for o in outcomes]).astype(np.float64)
    if not len(logits):
        return 1.0
    best, best_loss = 1.0, float("inf")
    for t in np.geomspace(0.125, 8.0, 97):
        p = np.clip(probabilities(logits, t), 1e-7, 1 - 1e-7)
        loss = float(-(correct * np.log(p) + (1 - correct) * np.log(1 - p)).mean())
        if loss < best_loss:
            best, best_loss = float(t), loss
    return best


def plot(path, curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str) -> None:
    """A reliability diagram (PNG): fraction right against mean score per bin, one line per curve."""
    try:
        import matplotlib
    except ImportError as e:
        raise ValueError('a reliability diagram needs matplotlib: pip install -e ".[plot]" (or drop --plot)') from e

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gplinker.atomic import atomic_open

    fig, ax = plt.subplots(figsize=(5.2, 5.0), dpi=110)
    ax.plot([0, 1], [0, 1], color="#999", linestyle="--", linewidth=1, label="perfectly calibrated")
    for name, (probs, correct) in curves.items():
        pts = reliability(probs, correct)
        ax.plot([p for p, _, _ in pts], [a for _, a, _ in pts], marker="o", label=f"{name} (ECE {ece(probs, correct):.3f})")
    ax.set_xlabel("score σ(2·logit / T)")
    ax.set_ylabel("fraction of cells that are right")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)
