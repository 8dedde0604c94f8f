"""Readers of the published NER formats: ``cluener``, ``cmeee``, ``conll`` (character-per-line
BIO/BIOES/BMES, optionally with a segmentation column as in Weibo), ``spert`` and ``genia`` (token
JSON; text and character offsets are rebuilt from the tokens), and canonical ``jsonl``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from gplinker import doccano, label_studio
from gplinker.io import (
    DataError,
    as_offset,
    check_surface,
    read_documents_jsonl,
    read_records,
    read_text,
    record_error,
    split_lines,
    token_list,
    token_span,
    tokens_to_text,
)
from gplinker.registry import Format
from gplinker.structures import Document, Span


def _check_surface(path, no, text: str, start: int, end: int, surface: str | None) -> None:
    check_surface(path, no, text, start, end, surface, "entity", "check the offsets and whether the end index is inclusive")


def read_cluener(path: str | Path) -> list[Document]:
    """CLUENER2020: ``{"text", "label": {type: {surface: [[start, end_inclusive], ...]}}}`` per line."""

    def parse(obj: Any, no: int | None) -> Document:
        text = obj["text"]
        spans = []
        for label, surfaces in (obj.get("label") or {}).items():
            for surface, positions in surfaces.items():
                for start, end_incl in positions:
                    end = as_offset(end_incl, "end") + 1
                    _check_surface(path, no, text, start, end, surface)
                    spans.append(Span(start, end, label))
        return Document(text, tuple(spans), id=str(obj["id"]) if obj.get("id") is not None else None)

    return read_records(path, parse, "CLUENER", 'expected {"text": str, "label": {type: {surface: [[start, end_inclusive]]}}}')


def read_cmeee(path: str | Path) -> list[Document]:
    """CMeEE (CBLUE): JSON array of ``{"text", "entities": [{"start_idx", "end_idx" (inclusive), "type", "entity"}]}``."""

    def parse(obj: Any, no: int | None) -> Document:
        text = obj["text"]
        spans = []
        for ent in obj.get("entities", []):
            start, end = as_offset(ent["start_idx"], "start_idx"), as_offset(ent["end_idx"], "end_idx") + 1
            _check_surface(path, no, text, start, end, ent.get("entity"))
            spans.append(Span(start, end, ent["type"]))
        return Document(text, tuple(spans))

    return read_records(path, parse, "CMeEE", 'expected {"text": str, "entities": [{"start_idx", "end_idx", "type", "entity"}]}')


def read_spert(path: str | Path) -> list[Document]:
    """SpERT / GENIA token JSON: ``{"tokens", "entities": [{"type", "start", "end"}]}`` or
    ``{"tokens", "entity_mentions": [{"entity_type", "start", "end"}]}``; token ends exclusive.

    The text is the tokens joined by single spaces; entity offsets are recomputed from tokens.
    """

    def parse(obj: Any, no: int | None) -> Document:
        tokens = token_list(obj["tokens"])
        text, ts, te = tokens_to_text(tokens)
        ents = obj.get("entities", obj.get("entity_mentions", []))
        if not isinstance(ents, list):
            raise ValueError("entities is not a list")
        spans = []
        for ent in ents:
            a, b = token_span(path, no, ts, te, ent["start"], ent["end"])
            span = Span(a, b, ent.get("type", ent.get("entity_type")))
            if "text" in ent and ent["text"] != text[span.start : span.end]:
                raise record_error(
                    path,
                    no,
                    f"entity text {ent['text']!r} does not match its tokens {text[span.start : span.end]!r}",
                    "check the token indices (end exclusive)",
                )
            spans.append(span)
        doc_id = obj.get("orig_id", obj.get("sent_id"))
        return Document(text, tuple(spans), id=None if doc_id is None else str(doc_id))

    return read_records(path, parse, "SpERT/GENIA", 'expected {"tokens": [...], "entities": [{"type", "start", "end"}]}')


_TAG = re.compile(r"^(?:O|([BIMESL])[-_](.+))$")


def read_conll(path: str | Path) -> list[Document]:
    """Character-per-line tagged text, blank line between sentences: ``char TAG``.

    Tags are BIO, BIOES/BILOU or BMES (``B-X``, ``I-X``/``M-X``, ``E-X``/``L-X``, ``S-X``, ``O``).
    A middle column of segmentation digits (``char 0 TAG``), or a digit glued to the character
    as in Weibo NER (``中0 B-GPE``), is ignored. Lines of whole words are joined by spaces.
    """
    lines = split_lines(read_text(path))
    rows: list[tuple[int, str, str]] = []  # (line number, token, tag); ("", "") marks a break
    for no, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("-DOCSTART-"):
            rows.append((no, "", ""))
            continue
        cols = line.split()
        if len(cols) == 3 and cols[1].isdigit():
            cols = [cols[0], cols[2]]
        if len(cols) != 2 or not _TAG.match(cols[1]):
            raise DataError(
                path,
                no,
                f"expected 'CHAR TAG' with a BIO/BMES/BIOES tag, got {raw!r}",
                "one character and its tag per line, separated by whitespace; a blank line between sentences",
            )
        rows.append((no, cols[0], cols[1]))
    toks = [t for _, t, _ in rows if t]
    if toks and all(len(t) >= 2 and t[-1].isdigit() for t in toks):  # Weibo: character + segmentation digit
        rows = [(no, t[:-1] if t else t, g) for no, t, g in rows]
        toks = [t for _, t, _ in rows if t]
    char_level = all(len(t) == 1 for t in toks)
    docs: list[Document] = []
    sent: list[tuple[int, str, str]] = []
    for row in rows + [(len(lines) + 1, "", "")]:
        if row[1]:
            sent.append(row)
            continue
        if sent:
            docs.append(_tags_to_document(path, sent, "" if char_level else " "))
            sent = []
    return docs


def _tags_to_document(path, sent: list[tuple[int, str, str]], sep: str) -> Document:
    text, ts, te = tokens_to_text([t for _, t, _ in sent], sep)
    spans, cur = [], None  # cur = (label, first token index)
    for k, (no, _, tag) in enumerate(sent):
        m = _TAG.match(tag)
        prefix, label = (m.group(1), m.group(2)) if m and m.group(1) else ("O", None)
        if cur is not None and (prefix in ("B", "S", "O") or label != cur[0]):
            spans.append(Span(ts[cur[1]], te[k - 1], cur[0]))  # close a span left open (BIO)
            cur = None
        if prefix in ("B", "S") or (prefix in ("I", "M", "E", "L") and cur is None):
            cur = (label, k)  # an I-/M-/E- without a B- starts a span (IOB1 style)
        if prefix in ("S", "E", "L") and cur is not None:
            spans.append(Span(ts[cur[1]], te[k], cur[0]))
            cur = None
    if cur is not None:
        spans.append(Span(ts[cur[1]], te[len(sent) - 1], cur[0]))
    return Document(text, tuple(spans), meta={"source_line": sent[0][0]})


def _sniff_conll(head: str) -> bool:
    first = next((ln for ln in head.split("\n") if ln.strip() and not ln.startswith("-DOCSTART-")), "")
    cols = first.split()
    return len(cols) in (2, 3) and bool(_TAG.match(cols[-1])) and not head.lstrip().startswith(("{", "["))


FORMATS = {
    f.name: f
    for f in [
        Format("label-studio", label_studio.read_export, label_studio.sniff, "Label Studio JSON export"),
        Format("doccano", doccano.read, doccano.sniff, "doccano JSONL export (sequence labelling or relations)"),
        Format(
            "jsonl",
            read_documents_jsonl,
            lambda h: h.lstrip().startswith("{") and '"text"' in h and '"entities"' in h and '"start"' in h and '"label"' in h,
            "canonical gplinker JSONL",
        ),
        Format("cluener", read_cluener, lambda h: '"text"' in h and '"label"' in h and h.lstrip()[:1] in "{[", "CLUENER2020"),
        Format("cmeee", read_cmeee, lambda h: '"start_idx"' in h and '"end_idx"' in h, "CMeEE (CBLUE)"),
        Format("genia", read_spert, lambda h: '"tokens"' in h and '"entity_mentions"' in h, "GENIA token JSON"),
        Format("spert", read_spert, lambda h: '"tokens"' in h and '"entities"' in h, "SpERT token JSON"),
        Format("conll", read_conll, _sniff_conll, "character (or word) per line with BIO/BIOES/BMES tags"),
    ]
}
