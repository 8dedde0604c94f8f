"""What a task tells the library: its heads, how gold becomes targets, how cells become structures."""
from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from gplinker.offsets import Window, align_span
from gplinker.structures import Document


@dataclass(frozen=True)
class HeadSpec:
    """One GlobalPointer head of a task: its name, channel count, RoPE and triangle mask."""

    name: str
    channels: int
    use_rope: bool = True
    tril_mask: bool = True


@dataclass
class AlignmentReport:
    """What happened to gold annotations when they were placed on tokens."""

    total: int = 0
    misaligned: int = 0  # char boundaries not on token boundaries (policy applied)
    unplaceable: int = 0  # the policy could not place it on tokens at all
    outside_windows: int = 0  # no window holds it whole (longer than a window or cut)
    examples: list[str] = field(default_factory=list)

    def note(self, kind: str, text: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.examples) < 5:
            self.examples.append(f"{kind}: {text}")

    def summary(self) -> str:
        return (f"{self.total} gold spans: {self.misaligned} off token boundaries, "
                f"{self.unplaceable} not placeable on tokens, {self.outside_windows} in no window")


Cells = dict[str, np.ndarray]  # head name -> (N, 3) rows (channel, i, j) for one window
LOGIT_SUFFIX = ".logit"  # cells[name + LOGIT_SUFFIX]: (N,) logits of those rows, when known


def cell_probabilities(cells: Cells, name: str) -> dict[tuple[int, int, int], float]:
    """{(channel, i, j): probability} of a head's positive cells; the multilabel loss calibrates a
    cell's probability as σ(2·logit) (kexue.fm 9064). Empty when the logits are not known."""
    rows = cells.get(name)
    logits = cells.get(name + LOGIT_SUFFIX)
    if rows is None or logits is None:
        return {}
    probs = 1.0 / (1.0 + np.exp(-2.0 * logits.astype(np.float64)))
    return {(int(c), int(i), int(j)): float(p) for (c, i, j), p in zip(rows, probs)}


class Task(ABC):
    """A task: heads, target encoding, decoding, merging of windows, scoring, readers."""

    name: str = ""

    @abstractmethod
    def head_specs(self) -> list[HeadSpec]:
        """The heads this task needs, in a fixed order."""

    @abstractmethod
    def targets(self, doc: Document, window: Window, policy: str = "expand") -> Cells:
        """Gold cells of ``doc`` that lie wholly in ``window``, placed on tokens by ``policy``."""

    @abstractmethod
    def gold_spans(self, doc: Document) -> list[tuple[int, int]]:
        """Every character span the task's targets place on tokens (for the alignment report)."""

    def check_alignment(self, doc: Document, windows: Sequence[Window], policy: str, report: AlignmentReport) -> None:
        """Count gold spans of ``doc`` that are off token boundaries or that no window can hold."""
        for start, end in sorted(set(self.gold_spans(doc))):
            report.total += 1
            if any(align_span(w, start, end, "strict") is not None for w in windows):
                continue
            what = f"{doc.text[start:end]!r} [{start}:{end}]" + (f" in document {doc.id}" if doc.id else f" in {doc.text[:30]!r}...")
            if any(align_span(w, start, end, policy) is not None for w in windows):  # type: ignore[arg-type]
                report.note("misaligned", what)
            elif any(w.char_start <= start and end <= w.char_end for w in windows):
                report.note("unplaceable", what)
            else:
                report.note("outside_windows", what)

    @abstractmethod
    def decode(self, doc: Document, windows: Sequence[Window], cells: Sequence[Cells]) -> Document:
        """Predicted annotations of ``doc`` from the positive cells of each of its windows."""

    @abstractmethod
    def evaluate(self, gold: Sequence[Document], pred: Sequence[Document]) -> dict[str, Any]:
        """Metrics, a dict of levels each with precision / recall / f1 (and per_label)."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON-serialisable settings from which :meth:`from_config` rebuilds the task."""

    @classmethod
    @abstractmethod
    def from_config(cls, config: dict[str, Any]) -> "Task":
        ...

    @classmethod
    @abstractmethod
    def from_documents(cls, docs: Sequence[Document], **options: Any) -> "Task":
        """A task whose label set is read off training documents."""

    def import_path(self) -> str:
        return f"{type(self).__module__}:{type(self).__qualname__}"


def load_task(import_path: str, config: dict[str, Any]) -> Task:
    """Rebuild a task saved as ``module:Class`` plus its config."""
    module, _, cls_name = import_path.partition(":")
    try:
        cls = getattr(importlib.import_module(module), cls_name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot import task {import_path!r} ({e}); is the gplinker 'tasks' package installed?") from e
    return cls.from_config(config)
