"""Readers of the published relation formats: ``spert`` (CoNLL04, SciERC), ``casrel`` (WebNLG*),
``duie``/``cmeie`` (``spo_list``) and canonical ``jsonl``. Formats without offsets are located by
searching every occurrence of the subject and object strings and pairing the nearest
occurrences; ambiguous and unlocatable triples are counted and logged."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gplinker import doccano, label_studio
from gplinker.io import (
    as_offset,
    find_occurrences,
    read_documents_jsonl,
    read_records,
    record_error,
    token_list,
    token_span,
    tokens_to_text,
)
from gplinker.registry import Format
from gplinker.structures import Document, Relation, Span

logger = logging.getLogger(__name__)

UNTYPED = "entity"  # label of spans whose type the data does not give


@dataclass
class LocateStats:
    """How offset-free triples were placed in their texts."""

    triples: int = 0
    ambiguous: int = 0  # a string occurs more than once: nearest pair of occurrences chosen
    not_located: int = 0  # subject or object string not in the text: triple dropped
    examples: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.triples} triples: {self.ambiguous} ambiguous (several occurrences; nearest pair chosen), "
            f"{self.not_located} not located in the text (dropped)"
        )


def place_triple(text: str, subject: str, obj: str, stats: LocateStats) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """Character spans for a triple given by strings: every occurrence is considered and the
    closest (subject, object) pair chosen: non-overlapping pairs first (an object nested in its
    subject, as 北京 in 北京大学, is rarely meant), then the smallest gap, then the earliest."""
    if not all(isinstance(x, str) for x in (text, subject, obj)):
        raise ValueError("text, subject and object must be strings")
    stats.triples += 1
    subs, objs = find_occurrences(text, subject), find_occurrences(text, obj)
    if not subs or not objs:
        stats.not_located += 1
        if len(stats.examples) < 5:
            stats.examples.append(f"not located: {subject!r} / {obj!r} in {text[:60]!r}")
        return None
    if len(subs) > 1 or len(objs) > 1:
        stats.ambiguous += 1

    def key(so: tuple[tuple[int, int], tuple[int, int]]) -> tuple[int, int, int, int]:
        (a, b), (c, d) = so
        gap = max(a, c) - min(b, d)  # negative when the spans overlap
        return (gap < 0, abs(gap), a, c)

    return min(((s, o) for s in subs for o in objs), key=key)


def _value(x: Any) -> str:
    return x["@value"] if isinstance(x, dict) else x


def _log_located(path: str | Path, docs: list[Document], stats: LocateStats) -> None:
    if stats.triples:
        merged = stats.triples - stats.not_located - sum(len(d.relations) for d in docs)
        logger.info("%s: %s%s", path, stats.summary(), f"; {merged} duplicate triples merged" if merged > 0 else "")
        for ex in stats.examples:
            logger.info("  e.g. %s", ex)


def read_spert(path: str | Path) -> list[Document]:
    """SpERT JSON (CoNLL04, SciERC): ``{"tokens", "entities": [{"type", "start", "end"}],
    "relations": [{"type", "head", "tail"}]}``; token ends exclusive, head/tail index entities."""

    def parse(obj: Any, no: int | None) -> Document:
        text, ts, te = tokens_to_text(token_list(obj["tokens"]))
        spans = []
        for ent in obj.get("entities", []):
            a, b = token_span(path, no, ts, te, ent["start"], ent["end"])
            spans.append(Span(a, b, ent["type"]))
        rels = []
        for rel in obj.get("relations", []):
            h, t = as_offset(rel["head"], "head"), as_offset(rel["tail"], "tail")
            if not (0 <= h < len(spans) and 0 <= t < len(spans)):
                raise record_error(
                    path,
                    no,
                    f"relation {rel} points at entity {max(h, t)} of {len(spans)}",
                    "head and tail are indices into the record's entities list",
                )
            rels.append(Relation(spans[h], rel["type"], spans[t]))
        doc_id = obj.get("orig_id")
        return Document(text, tuple(spans), tuple(rels), id=None if doc_id is None else str(doc_id))

    return read_records(
        path,
        parse,
        "SpERT",
        'expected {"tokens": [...], "entities": [{"type", "start", "end"}], "relations": [{"type", "head", "tail"}]}',
    )


def read_casrel(path: str | Path, stats: LocateStats | None = None) -> list[Document]:
    """CasRel / WebNLG* JSON: ``{"text", "triple_list": [[subject, predicate, object], ...]}`` (no offsets)."""
    stats = stats if stats is not None else LocateStats()

    def parse(obj: Any, no: int | None) -> Document:
        text = obj["text"]
        rels = []
        for s, p, o in obj.get("triple_list", []):
            placed = place_triple(text, s, o, stats)
            if placed:
                rels.append(Relation(Span(*placed[0], UNTYPED), p, Span(*placed[1], UNTYPED)))
        return Document(text, tuple({s for r in rels for s in (r.head, r.tail)}), tuple(rels))

    return read_records(path, parse, "CasRel", 'expected {"text": str, "triple_list": [[subject, predicate, object]]}')


def read_duie(path: str | Path, stats: LocateStats | None = None) -> list[Document]:
    """DuIE / CMeIE JSONL: ``{"text", "spo_list": [{"subject", "predicate", "object", "subject_type",
    "object_type"}]}``; object and object_type are strings or ``{"@value": ...}`` (DuIE 2.0 complex
    objects: each extra slot K becomes the predicate ``predicate_K``)."""
    stats = stats if stats is not None else LocateStats()

    def parse(obj: Any, no: int | None) -> Document:
        text = obj["text"]
        rels = []
        for spo in obj.get("spo_list", []):
            objects = spo["object"] if isinstance(spo["object"], dict) else {"@value": spo["object"]}
            otypes = spo.get("object_type") if isinstance(spo.get("object_type"), dict) else {"@value": spo.get("object_type")}
            for key, value in objects.items():
                pred = spo["predicate"] if key == "@value" else f"{spo['predicate']}_{key}"
                placed = place_triple(text, spo["subject"], value, stats)
                if placed:
                    rels.append(
                        Relation(
                            Span(*placed[0], spo.get("subject_type") or UNTYPED),
                            pred,
                            Span(*placed[1], otypes.get(key) or UNTYPED),
                        )
                    )
        return Document(text, tuple({s for r in rels for s in (r.head, r.tail)}), tuple(rels))

    return read_records(
        path, parse, "DuIE/CMeIE", 'expected {"text": str, "spo_list": [{"subject", "predicate", "object", ...}]}'
    )


FORMATS = {
    f.name: f
    for f in [
        Format("label-studio", label_studio.read_export, label_studio.sniff, "Label Studio JSON export"),
        Format("doccano", doccano.read, doccano.sniff, "doccano JSONL export (sequence labelling or relations)"),
        Format(
            "jsonl",
            read_documents_jsonl,
            lambda h: h.lstrip().startswith("{") and '"text"' in h and '"relations"' in h,
            "canonical gplinker JSONL",
        ),
        Format("spert", read_spert, lambda h: '"tokens"' in h and '"relations"' in h, "SpERT JSON (CoNLL04, SciERC)"),
        Format("casrel", read_casrel, lambda h: '"triple_list"' in h, "CasRel / WebNLG* JSON (no offsets)"),
        Format("webnlg", read_casrel, None, "alias of casrel"),
        Format("duie", read_duie, lambda h: '"spo_list"' in h, "DuIE / CMeIE JSONL (no offsets)"),
        Format("cmeie", read_duie, None, "alias of duie"),
    ]
}
