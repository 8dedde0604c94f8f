"""Relation triples with GPLinker (kexue.fm 8888): an entity head plus head-head and tail-tail
link heads, one channel per predicate, decoded by a set-based join.

A triple (s, p, o) is predicted when s and o are predicted entities and both link cells
``heads[p, s.start, o.start]`` and ``tails[p, s.end, o.end]`` fire. The entity head is typed
(one channel per entity type, so one pass gives typed entities and triples) or has two channels,
subject and object, for data without entity types.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np

from gplinker.cells import DocumentCells
from gplinker.metrics import macro, score
from gplinker.options import option
from gplinker.structures import Document, Relation, Span
from gplinker.task import HeadSpec, Schema, Targets, Task, config_flag, label_list

from .readers.relation import UNTYPED

logger = logging.getLogger(__name__)

SUBJECT, OBJECT = "subject", "object"
MAX_PAIRS = 2_000_000  # subject x object candidates examined per window of text before decoding is capped
MAX_TRIPLES = 1_000  # triples kept per window of text (only a barely trained model comes near)


@dataclass
class RelationOptions:
    """``entity_mode``: ``typed`` (one entity channel per type), ``subject-object`` (two
    channels), or ``auto`` (typed when the data gives entity types). ``link_rope``: rotary
    position on the link heads, so a link's score also depends on how far apart the two spans are."""

    entity_mode: Literal["auto", "typed", "subject-object"] = option(
        "auto",
        "relation: typed entity channels (default when the data has types) or subject/object channels",
        flag="--entity-mode",
        choices=("auto", "typed", "subject-object"),
    )
    link_rope: bool = option(
        False, "relation: rotary (relative) position on the head-head and tail-tail link heads", flag="--link-rope"
    )


def _last_word(text: str) -> str:
    words = text.split()
    return words[-1] if words else text


def _min_known(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return min(known) if known else None


def unique_spans(spans: np.ndarray, n: int) -> np.ndarray:
    """The distinct (start, end) rows of ``spans`` (every value below ``n``), sorted: one 1-D
    unique over ``start * n + end`` (``np.unique(axis=0)`` costs ten times more per call)."""
    if len(spans) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    keys = np.unique(spans[:, 0].astype(np.int64) * n + spans[:, 1])  # (S,)
    return np.stack([keys // n, keys % n], axis=1)  # (S, 2)


def link_pairs(
    subjects: np.ndarray,
    objects: np.ndarray,
    heads: np.ndarray,
    tails: np.ndarray,
    n: int,
    max_pairs: int = MAX_PAIRS,
    stats: dict[str, int] | None = None,
) -> np.ndarray:
    """All (p, s_i, s_j, o_i, o_j) with ``heads[p, s_i, o_i]`` and ``tails[p, s_j, o_j]`` positive.

    ``subjects``/``objects``: (S, 2)/(O, 2) spans (start, end); ``heads``/``tails``: (N, 3)
    positive link cells (p, subject start, object start) and (p, subject end, object end); every
    coordinate is below ``n``. Driven by the head-link cells, joined to spans by start token with sorted searches,
    and checked against the tail-link cells with one ``isin``: no Python loop over pairs. When a
    barely trained model fires so much that more than ``max_pairs`` candidates would be built, the
    head cells beyond that budget are skipped (counted in ``stats["capped"]``) instead of hanging.
    """
    empty = np.zeros((0, 5), dtype=np.int64)
    if min(len(subjects), len(objects), len(heads), len(tails)) == 0:
        return empty
    s_sorted = subjects[np.argsort(subjects[:, 0], kind="stable")]
    o_sorted = objects[np.argsort(objects[:, 0], kind="stable")]
    s_lo = np.searchsorted(s_sorted[:, 0], heads[:, 1], "left")
    s_hi = np.searchsorted(s_sorted[:, 0], heads[:, 1], "right")
    o_lo = np.searchsorted(o_sorted[:, 0], heads[:, 2], "left")
    o_hi = np.searchsorted(o_sorted[:, 0], heads[:, 2], "right")
    counts = (s_hi - s_lo) * (o_hi - o_lo)  # (N,) candidates per head cell
    keep = counts > 0
    if counts.sum() > max_pairs:
        budget = np.cumsum(counts) <= max_pairs
        logger.debug(
            "relation decoding capped: %d subject-object candidates in one document; examined %d",
            int(counts.sum()),
            int(counts[budget].sum()),
        )
        if stats is not None:
            stats["capped"] = stats.get("capped", 0) + 1
        keep &= budget
    heads, s_lo, s_hi, o_lo, o_hi = heads[keep], s_lo[keep], s_hi[keep], o_lo[keep], o_hi[keep]
    # expand each head cell to its subjects ...
    ns = s_hi - s_lo
    rows = np.repeat(np.arange(len(heads)), ns)
    s_idx = s_lo[rows] + (np.arange(len(rows)) - np.repeat(np.cumsum(ns) - ns, ns))
    # ... then each (head cell, subject) to its objects
    no = (o_hi - o_lo)[rows]
    rows2 = np.repeat(np.arange(len(rows)), no)
    o_idx = o_lo[rows[rows2]] + (np.arange(len(rows2)) - np.repeat(np.cumsum(no) - no, no))
    p = heads[rows[rows2], 0]
    subj = s_sorted[s_idx[rows2]]
    obj = o_sorted[o_idx]
    key = (p * n + subj[:, 1]) * n + obj[:, 1]
    tail_key = (tails[:, 0] * n + tails[:, 1]) * n + tails[:, 2]
    ok = np.isin(key, tail_key)
    return np.column_stack([p[ok], subj[ok], obj[ok]]).astype(np.int64)


class RelationTask(Task):
    """Entities and (subject, predicate, object) triples in one pass."""

    name = "relation"
    main_level = "triples"
    options_class = RelationOptions
    searched = ("link_rope",)

    def __init__(
        self, entity_labels: Sequence[str], predicates: Sequence[str], typed: bool = True, link_rope: bool = False
    ) -> None:
        if not predicates:
            raise ValueError("relation extraction needs at least one predicate; the training data has no triples")
        self.typed, self.link_rope = bool(typed), bool(link_rope)
        self.entity_labels = [str(x) for x in entity_labels] if typed else [SUBJECT, OBJECT]
        self.predicates = [str(x) for x in predicates]
        self.entity_index = {lab: k for k, lab in enumerate(self.entity_labels)}
        self.predicate_index = {p: k for k, p in enumerate(self.predicates)}

    def top_labels(self) -> set[str]:
        return set(self.predicates)

    def schema(self) -> Schema:
        return Schema(entities=tuple(self.entity_labels), relations=tuple(self.predicates))

    def labels_in(self, doc: Document) -> set[str]:
        return {r.label for r in doc.relations}

    def head_specs(self) -> list[HeadSpec]:
        # Link heads: no triangle mask (a subject may follow its object) and, as in kexue.fm 8888,
        # no RoPE unless ``link_rope`` asks for it.
        return [
            HeadSpec("entities", len(self.entity_labels), use_rope=True, tril_mask=True),
            HeadSpec("heads", len(self.predicates), use_rope=self.link_rope, tril_mask=False, axes="starts"),
            HeadSpec("tails", len(self.predicates), use_rope=self.link_rope, tril_mask=False, axes="ends"),
        ]

    def targets(self, doc: Document) -> Targets:
        if self.typed:
            spans = set(doc.entities) | {s for r in doc.relations for s in (r.head, r.tail)}
            ents = {(self.entity_index[s.label], s.start, s.end) for s in spans if s.label in self.entity_index}
        else:
            ents = {(0, r.head.start, r.head.end) for r in doc.relations} | {(1, r.tail.start, r.tail.end) for r in doc.relations}
        pairs = {
            (self.predicate_index[r.label], (r.head.start, r.head.end), (r.tail.start, r.tail.end))
            for r in doc.relations
            if r.label in self.predicate_index
        }
        return {"entities": ents, "heads": pairs, "tails": pairs}

    def decode(self, doc: Document, cells: DocumentCells) -> Document:
        """Triples and entities; a triple's score is the smallest probability of its four parts
        (subject, object, head link, tail link): an upper bound on their joint probability."""
        ent, head, tail = cells["entities"], cells["heads"], cells["tails"]
        if not len(ent) and not doc.entities and not doc.relations:  # no entity, no triple
            return doc
        p_head, p_tail = head.scores(), tail.scores()
        labels: dict[tuple[int, int], list[tuple[str, float]]] = {}
        for (ch, a, b), p in zip(ent.rows.tolist(), ent.probabilities()):
            labels.setdefault((a, b), []).append((self.entity_labels[ch], float(p)))
        entities = [Span(a, b, lab, p) for (a, b), labs in labels.items() for lab, p in labs]
        rows, n = ent.rows, len(doc.text) + 1
        if self.typed:
            subj = obj = unique_spans(rows[:, 1:], n)
        else:
            subj = unique_spans(rows[rows[:, 0] == 0, 1:], n)
            obj = unique_spans(rows[rows[:, 0] == 1, 1:], n)
        stats: dict[str, int] = {}
        max_pairs, max_triples = MAX_PAIRS * cells.windows, MAX_TRIPLES * cells.windows
        found = link_pairs(subj, obj, head.rows, tail.rows, n, max_pairs=max_pairs, stats=stats)
        if len(found) > max_triples:
            stats["capped"] = stats.get("capped", 0) + 1
            found = found[:max_triples]
        relations: dict[Relation, float | None] = {}
        for p, sa, sb, oa, ob in found.tolist():
            links = [p_head.get((p, sa, oa)), p_tail.get((p, sb, ob))]
            s_labels = labels[(sa, sb)] if self.typed else [(SUBJECT, dict(labels[(sa, sb)]).get(SUBJECT))]
            o_labels = labels[(oa, ob)] if self.typed else [(OBJECT, dict(labels[(oa, ob)]).get(OBJECT))]
            for sl, sp in s_labels:
                for ol, op in o_labels:
                    rel = Relation(Span(sa, sb, sl, sp), self.predicates[p], Span(oa, ob, ol, op))
                    relations[rel] = _min_known([sp, op, *links])
        if stats.get("capped"):
            logger.warning(
                "relation decoding capped in a %d-character text: the model fires on too many spans or links "
                "(is it trained?); at most %d candidates and %d triples were kept",
                len(doc.text),
                max_pairs,
                max_triples,
            )
        return doc.with_annotations(
            entities=tuple(entities), relations=tuple(Relation(r.head, r.label, r.tail, sc) for r, sc in relations.items())
        )

    def channel_labels(self) -> dict[str, list[str]]:
        return {"entities": list(self.entity_labels), "heads": list(self.predicates), "tails": list(self.predicates)}

    def extended_with(self, other: Task) -> "RelationTask":
        assert isinstance(other, RelationTask)
        if other.typed != self.typed:
            raise ValueError(
                f"the saved model has {'typed' if self.typed else 'subject/object'} entities but the new data "
                f"{'has' if other.typed else 'has no'} entity types; pass --entity-mode "
                f"{'typed' if self.typed else 'subject-object'}"
            )
        if other.link_rope and not self.link_rope:
            logger.warning(
                "--link-rope is ignored: the saved model's link heads were trained without it; train a new model to use it"
            )
        return RelationTask(
            self.entity_labels + [x for x in other.entity_labels if x not in self.entity_index]
            if self.typed
            else self.entity_labels,
            self.predicates + [x for x in other.predicates if x not in self.predicate_index],
            self.typed,
            self.link_rope,
        )

    def evaluate(self, gold: Sequence[Document], pred: Sequence[Document]) -> dict[str, Any]:
        typed = self.typed

        def ents(d: Document) -> set:
            if typed:
                return {(s.label, s.start, s.end) for s in d.entities}
            return {("span", s.start, s.end) for r in d.relations for s in (r.head, r.tail)}

        def strict(d: Document) -> set:
            return {
                (
                    r.label,
                    r.head.start,
                    r.head.end,
                    r.head.label if typed else None,
                    r.tail.start,
                    r.tail.end,
                    r.tail.label if typed else None,
                )
                for r in d.relations
            }

        def boundary(d: Document) -> set:
            return {(r.label, r.head.start, r.head.end, r.tail.start, r.tail.end) for r in d.relations}

        def text(d: Document) -> set:
            return {(r.label, r.head.text_in(d.text), r.tail.text_in(d.text)) for r in d.relations}

        def partial(d: Document) -> set:  # WebNLG / NYT partial match: the last word of each entity
            return {(r.label, _last_word(r.head.text_in(d.text)), _last_word(r.tail.text_in(d.text))) for r in d.relations}

        first = lambda t: t[0]  # noqa: E731
        out = {
            "triples": score(map(strict, gold), map(strict, pred), label_of=first),
            "triples_boundary": score(map(boundary, gold), map(boundary, pred), label_of=first),
            "triples_text": score(map(text, gold), map(text, pred)),
            "triples_partial": score(map(partial, gold), map(partial, pred)),
            "entities": score(map(ents, gold), map(ents, pred), label_of=first),
        }
        for level in ("triples", "triples_boundary"):  # SpERT reports micro and macro (mean over relation types)
            out[level]["macro"] = macro(out[level])
        return out

    def config(self) -> dict[str, Any]:
        return {
            "entity_labels": self.entity_labels,
            "predicates": self.predicates,
            "typed": self.typed,
            "link_rope": self.link_rope,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "RelationTask":
        return cls(
            label_list(config["entity_labels"], "entity_labels"),
            label_list(config["predicates"], "predicates"),
            config_flag(config, "typed", True),
            config_flag(config, "link_rope", False),
        )

    @classmethod
    def from_documents(cls, docs: Sequence[Document], options: RelationOptions | None = None) -> "RelationTask":
        """Labels from training data."""
        options = options or RelationOptions()
        mode = options.entity_mode
        labels = sorted(
            {s.label for d in docs for s in d.entities} | {s.label for d in docs for r in d.relations for s in (r.head, r.tail)}
        )
        if mode == "auto":
            typed = bool(set(labels) - {UNTYPED})
        elif mode in ("typed", "subject-object"):
            typed = mode == "typed"
        else:
            raise ValueError(f"unknown entity mode {mode!r}; choose auto, typed or subject-object")
        return cls(labels, sorted({r.label for d in docs for r in d.relations}), typed, options.link_rope)
