"""The seam between tasks (characters) and the model (token windows), crossed in both directions.

:func:`align_targets` places a document's character-level targets on the tokens of each of its
windows, once, counting what could not be placed. :func:`merge_windows` maps each window's
positive cells back to characters and merges the windows once: an item cut by a window edge is
dropped when another window holds it away from its edges, and an item seen by several windows
keeps its best logit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from gplinker.cells import DocumentCells, HeadCells
from gplinker.offsets import AlignPolicy, Window, WindowIndex, align_span, at_cut
from gplinker.structures import Document
from gplinker.task import HeadSpec, Targets

TokenCells = dict[str, np.ndarray]  # head name -> (N, 3) int64 rows (channel, i, j) of one window


@dataclass
class AlignmentStats:
    """What happened to gold spans when they were placed on tokens."""

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
        return (
            f"{self.total} gold spans: {self.misaligned} off token boundaries, "
            f"{self.unplaceable} not placeable on tokens, {self.outside_windows} in no window"
        )


def _spans_of(specs: Sequence[HeadSpec], targets: Targets) -> set[tuple[int, int]]:
    spans: set[tuple[int, int]] = set()
    for spec in specs:
        for t in targets.get(spec.name, ()):
            if spec.axes == "span":
                spans.add((t[1], t[2]))
            else:
                spans.update((t[1], t[2]))
    return spans


def align_targets(
    specs: Sequence[HeadSpec],
    doc: Document,
    targets: Targets,
    windows: Sequence[Window],
    policy: AlignPolicy = "expand",
    stats: AlignmentStats | None = None,
) -> list[TokenCells]:
    """Token-level target cells of each window of ``doc``; fills ``stats`` in the same pass.

    A span target lands in every window that holds the span (placed by ``policy``); a pair
    target in every window that holds both spans, as (start, start) cells for ``starts`` heads
    and (end, end) cells for ``ends`` heads, ordered (min, max) when the head is triangular.
    """
    placed: list[dict[tuple[int, int], tuple[int, int]]] = [{} for _ in windows]
    for start, end in sorted(_spans_of(specs, targets)):
        holders = [k for k, w in enumerate(windows) if w.char_start <= start and end <= w.char_end]
        for k in holders:
            ij = align_span(windows[k], start, end, policy)
            if ij is not None:
                placed[k][(start, end)] = ij
        if stats is None:
            continue
        stats.total += 1
        if any(align_span(windows[k], start, end, "strict") is not None for k in holders):
            continue
        what = f"{doc.text[start:end]!r} [{start}:{end}]" + (f" in document {doc.id}" if doc.id else f" in {doc.text[:30]!r}...")
        if any((start, end) in placed[k] for k in holders):
            stats.note("misaligned", what)
        elif holders:
            stats.note("unplaceable", what)
        else:
            stats.note("outside_windows", what)
    out: list[TokenCells] = []
    for here in placed:
        cells: TokenCells = {}
        for spec in specs:
            rows = set()
            for t in targets.get(spec.name, ()):
                if spec.axes == "span":
                    ij = here.get((t[1], t[2]))
                    if ij is not None:
                        rows.add((t[0], *ij))
                    continue
                a, b = here.get(t[1]), here.get(t[2])
                if a is None or b is None or a == b:  # both spans in this window, and two distinct token spans
                    continue
                x, y = (a[0], b[0]) if spec.axes == "starts" else (a[1], b[1])
                rows.add((t[0], min(x, y), max(x, y)) if spec.tril_mask else (t[0], x, y))
            cells[spec.name] = np.array(sorted(rows), dtype=np.int64).reshape(-1, 3)  # (N, 3)
        out.append(cells)
    return out


def _to_chars(spec: HeadSpec, w: Window, i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if spec.axes == "span":
        return w.token_starts[i], w.token_ends[j]
    if spec.axes == "starts":
        return w.token_starts[i], w.token_starts[j]
    return w.token_ends[i], w.token_ends[j]


def _at_cut(spec: HeadSpec, w: Window, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Rows whose tokens touch an edge where the text was cut into another window (:func:`at_cut`)."""
    return at_cut(w, i, j, link=spec.axes != "span")


def merge_windows(specs: Sequence[HeadSpec], windows: Sequence[Window], cells: Sequence[dict[str, HeadCells]]) -> DocumentCells:
    """One document's cells in characters from the token cells of each of its windows."""
    index = WindowIndex(windows) if len(windows) > 1 else None  # only cells at a cut consult it
    heads: dict[str, HeadCells] = {}
    for spec in specs:
        rows, logits = [], []
        for k, (w, c) in enumerate(zip(windows, cells)):
            hc = c.get(spec.name)
            if hc is None or not len(hc):
                continue
            ch, i, j = hc.rows[:, 0], hc.rows[:, 1], hc.rows[:, 2]
            a, b = _to_chars(spec, w, i, j)
            keep = np.ones(len(hc), dtype=bool)
            for r in np.flatnonzero(_at_cut(spec, w, i, j)) if index is not None else ():
                if spec.axes == "span":
                    held = index.held_elsewhere(k, (int(a[r]), int(b[r])))
                else:
                    held = index.held_elsewhere(
                        k,
                        (int(w.token_starts[i[r]]), int(w.token_ends[i[r]])),
                        (int(w.token_starts[j[r]]), int(w.token_ends[j[r]])),
                    )
                keep[r] = not held  # another window sees it away from its edges: trust that one
            rows.append(np.column_stack([ch, a, b])[keep])
            logits.append(hc.logits[keep])
        if not rows:
            heads[spec.name] = HeadCells()
            continue
        r, lg = np.concatenate(rows), np.concatenate(logits)  # (N, 3), (N,)
        order = np.lexsort((-lg, r[:, 2], r[:, 1], r[:, 0]))  # by cell, best logit first
        r, lg = r[order], lg[order]
        first = np.ones(len(r), dtype=bool)
        first[1:] = (r[1:] != r[:-1]).any(axis=1)  # one copy of a cell seen by several windows
        heads[spec.name] = HeadCells(r[first], lg[first])
    return DocumentCells(heads, windows=len(windows))


def gold_cells(specs: Sequence[HeadSpec], targets: Targets, logit: float = 10.0) -> DocumentCells:
    """The character-level cells a perfect model would produce for ``targets`` (every cell at
    ``logit``): decoding them gives back the gold, and mixing them with predicted cells head by
    head measures what each part of the model costs (the oracle assembly diagnosis)."""
    heads: dict[str, HeadCells] = {}
    for spec in specs:
        rows = set()
        for t in targets.get(spec.name, ()):
            if spec.axes == "span":
                rows.add((t[0], t[1], t[2]))
                continue
            (sa, ea), (sb, eb) = t[1], t[2]
            if (sa, ea) == (sb, eb):
                continue
            x, y = (sa, sb) if spec.axes == "starts" else (ea, eb)
            rows.add((t[0], min(x, y), max(x, y)) if spec.tril_mask else (t[0], x, y))
        r = np.array(sorted(rows), dtype=np.int64).reshape(-1, 3)  # (N, 3)
        heads[spec.name] = HeadCells(r, np.full(len(r), logit, dtype=np.float32))
    return DocumentCells(heads)
