"""Relation triples with GPLinker (kexue.fm 8888): an entity head plus head-head and tail-tail
link heads, one channel per predicate, decoded by a set-based join.

A triple (s, p, o) is predicted when s and o are predicted entities and both link cells
``heads[p, s_start, o_start]`` and ``tails[p, s_end, o_end]`` fire. The entity head is typed
(one channel per entity type, so one pass gives typed entities and triples) or has two channels,
subject and object, for data without entity types.

Readers: ``spert`` (CoNLL04, SciERC), ``casrel`` (WebNLG*), ``duie``/``cmeie`` (``spo_list``) and
canonical ``jsonl``. Formats without offsets are located by searching every occurrence of the
subject and object strings and pairing the nearest occurrences; ambiguous and unlocatable triples
are counted and logged.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from gplinker.io import (DataError, resolve_format, find_occurrences, load_json_records, read_documents_jsonl,
                         record_error, tokens_to_text)
from gplinker.metrics import score
from gplinker.offsets import Window, WindowIndex, align_span, token_span_to_chars, touches_cut
from gplinker.structures import Document, Relation, Span
from gplinker.task import Cells, HeadSpec, Task, cell_probabilities

logger = logging.getLogger(__name__)

UNTYPED = "entity"  # label of spans whose type the data does not give
SUBJECT, OBJECT = "subject", "object"
MAX_PAIRS = 2_000_000  # subject x object candidates examined per window before decoding is capped
MAX_TRIPLES = 1_000  # triples kept per window (only a barely trained model comes near)


def _keep_max(store: dict, item, score: float | None) -> None:
    """Keep one copy of an item seen in several windows, with its highest score."""
    old = store.get(item)
    store[item] = score if old is None else max(old, score if score is not None else old)


def _min_known(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return min(known) if known else None


def _p(labels: dict, i: int, j: int, channel: int, task: "RelationTask") -> float | None:
    """Probability of the subject (channel 0) or object (channel 1) span in subject-object mode."""
    name = task.entity_labels[channel]
    return next((p for lab, p in labels.get((i, j), []) if lab == name), None)


def link_pairs(subjects: np.ndarray, objects: np.ndarray, heads: np.ndarray, tails: np.ndarray,
               n: int, max_pairs: int = MAX_PAIRS, stats: dict[str, int] | None = None) -> np.ndarray:
    """All (p, s_i, s_j, o_i, o_j) with ``heads[p, s_i, o_i]`` and ``tails[p, s_j, o_j]`` positive.

    ``subjects``/``objects``: (S, 2)/(O, 2) token spans; ``heads``/``tails``: (N, 3) positive cells
    (p, i, j). Driven by the head-link cells, joined to spans by start token with sorted searches,
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
        logger.debug("relation decoding capped: %d subject-object candidates in one window; examined %d",
                     int(counts.sum()), int(counts[budget].sum()))
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


def triples_from_logits(entity_logits: np.ndarray, head_logits: np.ndarray, tail_logits: np.ndarray) -> list[set]:
    """Subject-object decoding straight from logits, per sample: (p, s_i, s_j, o_i, o_j) sets.

    ``entity_logits``: (B, 2, n, n) subject/object channels; link logits: (B, P, n, n). With few
    entities the link cells of every subject x object pair are gathered at once (cheaper than
    scanning the n x n link grids); with many, the positive link cells are joined by
    :func:`link_pairs`. Either way there is no Python loop over pairs.
    """
    out = []
    n = entity_logits.shape[-1]
    for e, hh, tt in zip(entity_logits, head_logits, tail_logits):
        ch, i, j = np.nonzero(e > 0)
        subj = np.column_stack([i[ch == 0], j[ch == 0]])  # (S, 2)
        obj = np.column_stack([i[ch == 1], j[ch == 1]])  # (O, 2)
        if len(subj) * len(obj) <= n * n // 4:
            si, oi = np.divmod(np.arange(len(subj) * len(obj)), len(obj)) if len(obj) else (np.zeros(0, int),) * 2
            ok = (hh[:, subj[si, 0], obj[oi, 0]] > 0) & (tt[:, subj[si, 1], obj[oi, 1]] > 0)  # (P, S*O)
            p, k = np.nonzero(ok)
            rows = np.column_stack([p, subj[si[k]], obj[oi[k]]])
        else:
            rows = link_pairs(subj, obj, np.argwhere(hh > 0), np.argwhere(tt > 0), n)
        out.append(set(map(tuple, rows.tolist())))
    return out


class RelationTask(Task):
    """Entities and (subject, predicate, object) triples in one pass."""

    name = "relation"

    def __init__(self, entity_labels: Sequence[str], predicates: Sequence[str], typed: bool = True) -> None:
        if not predicates:
            raise ValueError("relation extraction needs at least one predicate; the training data has no triples")
        self.typed = typed
        self.entity_labels = list(entity_labels) if typed else [SUBJECT, OBJECT]
        self.predicates = list(predicates)
        self.entity_index = {lab: k for k, lab in enumerate(self.entity_labels)}
        self.predicate_index = {p: k for k, p in enumerate(self.predicates)}

    def head_specs(self) -> list[HeadSpec]:
        # Link heads: no RoPE and no triangle mask (kexue.fm 8888): a subject may follow its object.
        return [HeadSpec("entities", len(self.entity_labels), use_rope=True, tril_mask=True),
                HeadSpec("heads", len(self.predicates), use_rope=False, tril_mask=False),
                HeadSpec("tails", len(self.predicates), use_rope=False, tril_mask=False)]

    def _entity_spans(self, doc: Document) -> list[tuple[int, int, int]]:
        """Gold (channel, start, end) of the entity head."""
        if self.typed:
            spans = set(doc.entities) | {s for r in doc.relations for s in (r.head, r.tail)}
            return [(self.entity_index[s.label], s.start, s.end) for s in spans if s.label in self.entity_index]
        return [(0, r.head.start, r.head.end) for r in doc.relations] + [(1, r.tail.start, r.tail.end) for r in doc.relations]

    def gold_spans(self, doc: Document) -> list[tuple[int, int]]:
        return [(s, e) for _, s, e in self._entity_spans(doc)]

    def targets(self, doc: Document, window: Window, policy: str = "expand") -> Cells:
        ents, heads, tails = set(), set(), set()
        for ch, s, e in self._entity_spans(doc):
            ij = align_span(window, s, e, policy)  # type: ignore[arg-type]
            if ij is not None:
                ents.add((ch, *ij))
        for r in doc.relations:
            p = self.predicate_index.get(r.label)
            if p is None:
                continue
            sub = align_span(window, r.head.start, r.head.end, policy)  # type: ignore[arg-type]
            obj = align_span(window, r.tail.start, r.tail.end, policy)  # type: ignore[arg-type]
            if sub is not None and obj is not None:
                heads.add((p, sub[0], obj[0]))
                tails.add((p, sub[1], obj[1]))
        arr = lambda rows: np.array(sorted(rows), dtype=np.int64).reshape(-1, 3)  # noqa: E731
        return {"entities": arr(ents), "heads": arr(heads), "tails": arr(tails)}

    def decode(self, doc: Document, windows: Sequence[Window], cells: Sequence[Cells]) -> Document:
        """Triples and entities; a triple's score is the smallest probability of its four parts
        (subject, object, head link, tail link): an upper bound on their joint probability."""
        entities: dict[Span, float | None] = {}
        relations: dict[Relation, float | None] = {}
        none = np.zeros((0, 3), np.int64)
        index = WindowIndex(windows)
        stats: dict[str, int] = {}
        for k, (w, c) in enumerate(zip(windows, cells)):
            ents = c.get("entities", none)
            p_ent, p_head, p_tail = (cell_probabilities(c, h) for h in ("entities", "heads", "tails"))
            labels: dict[tuple[int, int], list[tuple[str, float | None]]] = {}
            for ch, i, j in ents:
                ch, i, j = int(ch), int(i), int(j)
                labels.setdefault((i, j), []).append((self.entity_labels[ch], p_ent.get((ch, i, j))))
                start, end = token_span_to_chars(w, i, j)
                if touches_cut(w, i, j) and index.held_elsewhere(k, (start, end)):
                    continue
                _keep_max(entities, Span(start, end, self.entity_labels[ch]), p_ent.get((ch, i, j)))
            if self.typed:
                subj = obj = np.unique(ents[:, 1:], axis=0)
            else:
                subj = np.unique(ents[ents[:, 0] == 0, 1:], axis=0)
                obj = np.unique(ents[ents[:, 0] == 1, 1:], axis=0)
            found = link_pairs(subj.reshape(-1, 2), obj.reshape(-1, 2), c.get("heads", none), c.get("tails", none),
                               len(w), stats=stats)
            if len(found) > MAX_TRIPLES:
                stats["capped"] = stats.get("capped", 0) + 1
                found = found[:MAX_TRIPLES]
            for p, si, sj, oi, oj in found.tolist():
                s_chars, o_chars = token_span_to_chars(w, si, sj), token_span_to_chars(w, oi, oj)
                at_cut = touches_cut(w, si, sj) or touches_cut(w, oi, oj)
                if at_cut and index.held_elsewhere(k, s_chars, o_chars):
                    continue
                links = [p_head.get((p, si, oi)), p_tail.get((p, sj, oj))]
                s_labels = labels[(si, sj)] if self.typed else [(SUBJECT, _p(labels, si, sj, 0, self))]
                o_labels = labels[(oi, oj)] if self.typed else [(OBJECT, _p(labels, oi, oj, 1, self))]
                for sl, sp in s_labels:
                    for ol, op in o_labels:
                        rel = Relation(Span(*s_chars, sl, sp), self.predicates[p], Span(*o_chars, ol, op))
                        _keep_max(relations, rel, _min_known([sp, op, *links]))
        if stats.get("capped"):
            logger.warning("relation decoding capped in %d window(s) of a %d-character text: the model fires on too many "
                           "spans or links (is it trained?); at most %d candidates and %d triples per window were kept",
                           stats["capped"], len(doc.text), MAX_PAIRS, MAX_TRIPLES)
        return doc.with_annotations(entities=tuple(Span(e.start, e.end, e.label, sc) for e, sc in entities.items()),
                                    relations=tuple(Relation(r.head, r.label, r.tail, sc) for r, sc in relations.items()))

    def evaluate(self, gold: Sequence[Document], pred: Sequence[Document]) -> dict[str, Any]:
        typed = self.typed

        def ents(d: Document) -> set:
            if typed:
                return {(s.label, s.start, s.end) for s in d.entities}
            return {("span", s.start, s.end) for r in d.relations for s in (r.head, r.tail)}

        def strict(d: Document) -> set:
            return {(r.label, r.head.start, r.head.end, r.head.label if typed else None,
                     r.tail.start, r.tail.end, r.tail.label if typed else None) for r in d.relations}

        def boundary(d: Document) -> set:
            return {(r.label, r.head.start, r.head.end, r.tail.start, r.tail.end) for r in d.relations}

        def text(d: Document) -> set:
            return {(r.label, r.head.text_in(d.text), r.tail.text_in(d.text)) for r in d.relations}

        first = lambda t: t[0]  # noqa: E731
        return {
            "triples": score(map(strict, gold), map(strict, pred), label_of=first),
            "triples_boundary": score(map(boundary, gold), map(boundary, pred)),
            "triples_text": score(map(text, gold), map(text, pred)),
            "entities": score(map(ents, gold), map(ents, pred), label_of=first),
        }

    def config(self) -> dict[str, Any]:
        return {"entity_labels": self.entity_labels, "predicates": self.predicates, "typed": self.typed}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "RelationTask":
        return cls(config["entity_labels"], config["predicates"], config.get("typed", True))

    @classmethod
    def from_documents(cls, docs: Sequence[Document], entity_mode: str = "auto", **options: Any) -> "RelationTask":
        """Labels from training data; ``entity_mode``: ``typed``, ``subject-object`` or ``auto``
        (typed when the data gives entity types)."""
        labels = sorted({s.label for d in docs for s in d.entities} | {s.label for d in docs for r in d.relations for s in (r.head, r.tail)})
        if entity_mode == "auto":
            typed = bool(set(labels) - {UNTYPED})
        elif entity_mode in ("typed", "subject-object"):
            typed = entity_mode == "typed"
        else:
            raise ValueError(f"unknown entity mode {entity_mode!r}; choose auto, typed or subject-object")
        return cls(labels, sorted({r.label for d in docs for r in d.relations}), typed)


# ---- readers ---------------------------------------------------------------------------------

@dataclass
class LocateReport:
    """How offset-free triples were placed in their texts."""

    triples: int = 0
    ambiguous: int = 0  # a string occurs more than once: nearest pair of occurrences chosen
    not_located: int = 0  # subject or object string not in the text: triple dropped
    examples: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.triples} triples: {self.ambiguous} ambiguous (several occurrences; nearest pair chosen), "
                f"{self.not_located} not located in the text (dropped)")


def place_triple(text: str, subject: str, obj: str, report: LocateReport) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """Character spans for a triple given by strings: every occurrence is considered and the
    closest (subject, object) pair chosen: non-overlapping pairs first (an object nested in its
    subject, as 北京 in 北京大学, is rarely meant), then the smallest gap, then the earliest."""
    report.triples += 1
    subs, objs = find_occurrences(text, subject), find_occurrences(text, obj)
    if not subs or not objs:
        report.not_located += 1
        if len(report.examples) < 5:
            report.examples.append(f"not located: {subject!r} / {obj!r} in {text[:60]!r}")
        return None
    if len(subs) > 1 or len(objs) > 1:
        report.ambiguous += 1
    def key(so: tuple[tuple[int, int], tuple[int, int]]) -> tuple[int, int, int, int]:
        (a, b), (c, d) = so
        gap = max(a, c) - min(b, d)  # negative when the spans overlap
        return (gap < 0, abs(gap), a, c)

    return min(((s, o) for s in subs for o in objs), key=key)


def _value(x: Any) -> str:
    return x["@value"] if isinstance(x, dict) else x


def read_spert(path: str | Path, report: LocateReport | None = None) -> list[Document]:
    """SpERT JSON (CoNLL04, SciERC): ``{"tokens", "entities": [{"type", "start", "end"}],
    "relations": [{"type", "head", "tail"}]}``; token ends exclusive, head/tail index entities."""
    docs = []
    for no, obj in load_json_records(path):
        try:
            text, ts, te = tokens_to_text([str(t) for t in obj["tokens"]])
            spans = []
            for ent in obj.get("entities", []):
                a, b = int(ent["start"]), int(ent["end"])
                if not 0 <= a < b <= len(ts):
                    raise record_error(path, no, f"entity token range [{a}, {b}) is outside the {len(ts)} tokens",
                                       "token end indices are exclusive")
                spans.append(Span(ts[a], te[b - 1], ent["type"]))
            rels = []
            for rel in obj.get("relations", []):
                h, t = int(rel["head"]), int(rel["tail"])
                if not (0 <= h < len(spans) and 0 <= t < len(spans)):
                    raise record_error(path, no, f"relation {rel} points at entity {max(h, t)} of {len(spans)}",
                                       "head and tail are indices into the record's entities list")
                rels.append(Relation(spans[h], rel["type"], spans[t]))
        except DataError:
            raise
        except (KeyError, TypeError, ValueError) as e:
            raise record_error(path, no, f"not a SpERT record ({type(e).__name__}: {e})",
                               'expected {"tokens": [...], "entities": [{"type", "start", "end"}], "relations": [{"type", "head", "tail"}]}') from e
        doc_id = obj.get("orig_id")
        docs.append(Document(text, tuple(spans), tuple(rels), id=None if doc_id is None else str(doc_id)))
    return docs


def read_casrel(path: str | Path, report: LocateReport | None = None) -> list[Document]:
    """CasRel / WebNLG* JSON: ``{"text", "triple_list": [[subject, predicate, object], ...]}`` (no offsets)."""
    report = report if report is not None else LocateReport()
    docs = []
    for no, obj in load_json_records(path):
        try:
            text = obj["text"]
            rels = []
            for s, p, o in obj.get("triple_list", []):
                placed = place_triple(text, s, o, report)
                if placed:
                    rels.append(Relation(Span(*placed[0], UNTYPED), p, Span(*placed[1], UNTYPED)))
        except (KeyError, TypeError, ValueError) as e:
            raise record_error(path, no, f"not a CasRel record ({type(e).__name__}: {e})",
                               'expected {"text": str, "triple_list": [[subject, predicate, object]]}') from e
        docs.append(Document(text, tuple({s for r in rels for s in (r.head, r.tail)}), tuple(rels)))
    return docs


def read_duie(path: str | Path, report: LocateReport | None = None) -> list[Document]:
    """DuIE / CMeIE JSONL: ``{"text", "spo_list": [{"subject", "predicate", "object", "subject_type",
    "object_type"}]}``; object and object_type are strings or ``{"@value": ...}`` (DuIE 2.0 complex
    objects: each extra slot K becomes the predicate ``predicate_K``)."""
    report = report if report is not None else LocateReport()
    docs = []
    for no, obj in load_json_records(path):
        try:
            text = obj["text"]
            rels = []
            for spo in obj.get("spo_list", []):
                objects = spo["object"] if isinstance(spo["object"], dict) else {"@value": spo["object"]}
                otypes = spo.get("object_type") if isinstance(spo.get("object_type"), dict) else {"@value": spo.get("object_type")}
                for key, value in objects.items():
                    pred = spo["predicate"] if key == "@value" else f"{spo['predicate']}_{key}"
                    placed = place_triple(text, spo["subject"], value, report)
                    if placed:
                        rels.append(Relation(Span(*placed[0], spo.get("subject_type") or UNTYPED), pred,
                                             Span(*placed[1], otypes.get(key) or UNTYPED)))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise record_error(path, no, f"not a DuIE/CMeIE record ({type(e).__name__}: {e})",
                               'expected {"text": str, "spo_list": [{"subject", "predicate", "object", ...}]}') from e
        docs.append(Document(text, tuple({s for r in rels for s in (r.head, r.tail)}), tuple(rels)))
    return docs


def read_jsonl(path: str | Path, report: LocateReport | None = None) -> list[Document]:
    return read_documents_jsonl(path)


READERS = {"jsonl": read_jsonl, "spert": read_spert, "casrel": read_casrel, "webnlg": read_casrel,
           "duie": read_duie, "cmeie": read_duie}
SNIFFERS = {
    "jsonl": lambda p, h: h.lstrip().startswith("{") and '"text"' in h and '"relations"' in h,
    "spert": lambda p, h: '"tokens"' in h and '"relations"' in h,
    "casrel": lambda p, h: '"triple_list"' in h,
    "duie": lambda p, h: '"spo_list"' in h,
}


def read(path: str | Path, fmt: str = "auto") -> list[Document]:
    """Documents of a relation file in format ``fmt`` (``auto`` detects it); logs how offset-free
    triples were located."""
    fmt = resolve_format(path, fmt, READERS, SNIFFERS, "relation")
    report = LocateReport()
    docs = READERS[fmt](path, report)
    logger.info("%s: %d documents, %d entities, %d triples", path, len(docs),
                sum(len(d.entities) for d in docs), sum(len(d.relations) for d in docs))
    if report.triples:
        merged = report.triples - report.not_located - sum(len(d.relations) for d in docs)
        logger.info("%s: %s%s", path, report.summary(), f"; {merged} duplicate triples merged" if merged > 0 else "")
        for ex in report.examples:
            logger.info("  e.g. %s", ex)
    return docs
