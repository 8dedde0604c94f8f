"""doccano in and out: the JSONL of its sequence-labelling projects and of its relation projects.

- sequence labelling: ``{"id", "text", "label": [[start, end, tag], ...]}`` (older exports:
  ``"labels"``; some versions: ``"data"`` for the text);
- relation projects: ``{"id", "text", "entities": [{"id", "label", "start_offset", "end_offset"}],
  "relations": [{"id", "from_id", "to_id", "type"}]}``.

Offsets are characters, end exclusive. doccano has no events: writing a document with events is a
ValueError that says to use Label Studio.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from gplinker.io import as_offset, read_records
from gplinker.structures import Document, Relation, Span

_KNOWN = ("id", "text", "data", "label", "labels", "entities", "relations")


def _text(obj: dict[str, Any]) -> str:
    for key in ("text", "data"):
        if isinstance(obj.get(key), str):
            return obj[key]
    raise ValueError('no string field "text"')


def _tagged(value: Any) -> list[Span]:
    """Spans of ``[[start, end, tag], ...]``."""
    if not isinstance(value, list):
        raise ValueError('"label" is not a list')
    spans = []
    for item in value:
        if not isinstance(item, list) or len(item) != 3:
            kind = "a text-classification export (labels are strings)" if isinstance(item, str) else f"{item!r}"
            raise ValueError(f'"label" holds {kind}, not [start, end, tag]')
        spans.append(Span(as_offset(item[0], "start"), as_offset(item[1], "end"), item[2]))
    return spans


def _entities(obj: dict[str, Any]) -> tuple[list[Span], list[Relation]]:
    by_id: dict[Any, Span] = {}
    for ent in obj["entities"]:
        by_id[ent["id"]] = Span(
            as_offset(ent["start_offset"], "start_offset"), as_offset(ent["end_offset"], "end_offset"), ent["label"]
        )
    relations = []
    for rel in obj.get("relations") or []:
        missing = [x for x in (rel["from_id"], rel["to_id"]) if x not in by_id]
        if missing:
            raise ValueError(f"relation {rel.get('id')} links entity {missing[0]}, which the record does not have")
        relations.append(Relation(by_id[rel["from_id"]], rel["type"], by_id[rel["to_id"]]))
    return list(by_id.values()), relations


def document_of(obj: Any) -> Document:
    """The document of one doccano record."""
    if not isinstance(obj, dict):
        raise ValueError("the record is not an object")
    text = _text(obj)
    if "entities" in obj:
        spans, relations = _entities(obj)
    else:
        spans, relations = _tagged(obj.get("label", obj.get("labels", []))), []
    ident = obj.get("id")
    meta = {k: v for k, v in obj.items() if k not in _KNOWN}
    return Document(text, tuple(spans), tuple(relations), id=None if ident is None else str(ident), meta=meta)


def read(path: str | Path) -> list[Document]:
    """Documents of a doccano JSONL export (either project kind, see the module's docstring)."""
    return read_records(
        path,
        lambda obj, no: document_of(obj),
        "doccano",
        'expected {"text", "label": [[start, end, tag]]} or {"text", "entities": [{"id", "label", "start_offset", '
        '"end_offset"}], "relations": [{"from_id", "to_id", "type"}]}',
    )


_LABEL_LISTS = re.compile(r'"labels?"\s*:\s*\[\s*\[')


def sniff(head: str) -> bool:
    """Does a file's head look like a doccano export?"""
    h = head.lstrip()
    return h.startswith("{") and ('"start_offset"' in h or bool(_LABEL_LISTS.search(h)))


def record_of(doc: Document, relations: bool | None = None) -> dict[str, Any]:
    """The doccano record of ``doc``: the relation project's form when it has relations (or
    ``relations`` is true), else the sequence-labelling form."""
    if doc.events:
        raise ValueError(
            f"document {doc.id or doc.text[:30]!r} has events, which doccano cannot hold; convert to label-studio instead"
        )
    out: dict[str, Any] = {} if doc.id is None else {"id": _id(doc.id)}
    out["text"] = doc.text
    if relations if relations is not None else bool(doc.relations):
        spans = sorted(set(doc.entities) | {s for r in doc.relations for s in (r.head, r.tail)})
        ids = {s: k for k, s in enumerate(spans)}
        out["entities"] = [{"id": ids[s], "label": s.label, "start_offset": s.start, "end_offset": s.end} for s in spans]
        out["relations"] = [
            {"id": k, "from_id": ids[r.head], "to_id": ids[r.tail], "type": r.label} for k, r in enumerate(doc.relations)
        ]
    else:
        out["label"] = [[s.start, s.end, s.label] for s in doc.entities]
    out.update({k: v for k, v in doc.meta.items() if k not in out and k not in _KNOWN})
    return out


def _id(ident: str) -> int | str:
    return int(ident) if ident.isdigit() and not (len(ident) > 1 and ident.startswith("0")) else ident
