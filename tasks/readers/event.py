"""Readers of the published event formats: ``duee`` (LIC/DuEE), ``fewfc``, ``phee`` (nested
sub-arguments flattened into roles ``Parent.Child``), canonical ``jsonl``, and schema files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gplinker import label_studio
from gplinker.io import (
    READ_ERRORS,
    DataError,
    as_offset,
    check_surface,
    read_documents_jsonl,
    read_records,
    read_text,
    split_lines,
)
from gplinker.registry import Format
from gplinker.structures import TRIGGER, Argument, Document, Event


def read_schema(path: str | Path) -> list[tuple[str, str]]:
    """An event schema: JSONL of ``{"event_type", "role_list": [{"role"}]}`` (DuEE) or a JSON
    object ``{event_type: [role, ...]}``; the trigger role is added to every type."""
    text = read_text(path)
    labels = set()
    items: list[tuple[str, list]] = []
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None
    if isinstance(whole, dict) and "event_type" not in whole:  # {event_type: [role, ...]}
        if not all(isinstance(v, list) for v in whole.values()):
            raise DataError(path, None, "not a schema: every event type must map to a list of roles", '{"type": ["role", ...]}')
        items = [(k, list(v)) for k, v in whole.items()]
    else:
        records = whole if isinstance(whole, list) else None
        lines = [(None, r) for r in records] if records is not None else []
        if records is None:
            for no, line in enumerate(split_lines(text), start=1):
                if line.strip():
                    try:
                        lines.append((no, json.loads(line)))
                    except json.JSONDecodeError as e:
                        raise DataError(path, no, f"not valid JSON ({e.msg})", "one schema object per line") from e
        for no, o in lines:
            try:
                items.append((o["event_type"], [r["role"] if isinstance(r, dict) else r for r in o["role_list"]]))
            except READ_ERRORS as e:
                raise DataError(
                    path, no, f"not a schema record ({e})", 'expected {"event_type": ..., "role_list": [{"role": ...}]}'
                ) from e
    for etype, roles in items:
        if not isinstance(etype, str) or not etype or not all(isinstance(r, str) and r for r in roles):
            raise DataError(
                path,
                None,
                f"event type {etype!r} or one of its roles is not a non-empty string",
                "event types and roles are strings",
            )
        labels.add((etype, TRIGGER))
        labels.update((etype, r) for r in roles)
    if not labels:
        raise DataError(path, None, "the schema lists no event type", 'one {"event_type", "role_list"} per line')
    return sorted(labels)


def _check(path, no, text: str, start: int, end: int, surface: str | None) -> None:
    check_surface(path, no, text, start, end, surface, "argument", "check the start index")


def read_duee(path: str | Path) -> list[Document]:
    """LIC / DuEE JSONL: ``{"text", "event_list": [{"event_type", "trigger", "trigger_start_index",
    "arguments": [{"argument_start_index", "role", "argument"}]}]}``."""

    def parse(obj: Any, no: int | None) -> Document:
        text = obj["text"]
        events = []
        for ev in obj.get("event_list", []):
            t0 = as_offset(ev["trigger_start_index"], "trigger_start_index")
            _check(path, no, text, t0, t0 + len(ev["trigger"]), ev["trigger"])
            args = [Argument(TRIGGER, t0, t0 + len(ev["trigger"]))]
            for a in ev.get("arguments", []):
                s = as_offset(a["argument_start_index"], "argument_start_index")
                _check(path, no, text, s, s + len(a["argument"]), a["argument"])
                args.append(Argument(a["role"], s, s + len(a["argument"])))
            events.append(Event(ev["event_type"], tuple(args)))
        return Document(text, events=tuple(events), id=None if obj.get("id") is None else str(obj["id"]))

    return read_records(
        path,
        parse,
        "DuEE",
        'expected {"text", "event_list": [{"event_type", "trigger", "trigger_start_index", "arguments": [...]}]}',
    )


def read_fewfc(path: str | Path) -> list[Document]:
    """FewFC JSONL: ``{"id", "content", "events": [{"type", "mentions": [{"word", "span": [start, end], "role"}]}]}``;
    span ends exclusive; the mention whose role is ``trigger`` is the trigger."""

    def parse(obj: Any, no: int | None) -> Document:
        text = obj["content"]
        events = []
        for ev in obj.get("events", []):
            args = []
            for m in ev.get("mentions", []):
                s, e = as_offset(m["span"][0], "span start"), as_offset(m["span"][1], "span end")
                _check(path, no, text, s, e, m.get("word"))
                args.append(Argument(m["role"], s, e))
            events.append(Event(ev["type"], tuple(args)))
        return Document(text, events=tuple(events), id=None if obj.get("id") is None else str(obj["id"]))

    return read_records(
        path, parse, "FewFC", 'expected {"content", "events": [{"type", "mentions": [{"word", "span", "role"}]}]}'
    )


_PHEE_META = {"text", "start", "entity_id", "value", "Combination", "event_id", "event_type"}


def _phee_arguments(path, no, text: str, field: dict, role: str) -> list[Argument]:
    """Mentions of one PHEE role field, then its nested sub-arguments as ``role.Child``.

    A mention made of several pieces (a discontinuous span) gives one argument per piece."""
    out = []
    for pieces, starts in zip(field.get("text", []), field.get("start", [])):
        for piece, s in zip(pieces, starts):
            s = as_offset(s, "start")
            _check(path, no, text, s, s + len(piece), piece)
            out.append(Argument(role, s, s + len(piece)))
    for key, sub in field.items():
        if key not in _PHEE_META and isinstance(sub, dict):
            out += _phee_arguments(path, no, text, sub, f"{role}.{key}")
    return out


def read_phee(path: str | Path) -> list[Document]:
    """PHEE JSONL: ``{"id", "context", "annotations": [{"events": [{"event_type", "Trigger": {"text",
    "start"}, <Role>: {"text", "start", <SubRole>: {...}}}]}]}``; the first annotation is used.
    Nested sub-arguments become roles ``Role.SubRole``; ``Trigger`` becomes ``trigger``; nested
    ``Combination`` events and boolean ``value`` attributes are not extracted."""

    def parse(obj: Any, no: int | None) -> Document:
        text = obj["context"]
        events = []
        annotations = obj.get("annotations") or [{"events": []}]
        for ev in annotations[0].get("events", []):
            args = []
            for key, field in ev.items():
                if key in _PHEE_META or not isinstance(field, dict):
                    continue
                args += _phee_arguments(path, no, text, field, TRIGGER if key == "Trigger" else key)
            events.append(Event(ev["event_type"], tuple(args)))
        return Document(text, events=tuple(events), id=None if obj.get("id") is None else str(obj["id"]))

    return read_records(
        path,
        parse,
        "PHEE",
        'expected {"context", "annotations": [{"events": [{"event_type", "Trigger": {"text", "start"}, ...}]}]}',
    )


FORMATS = {
    f.name: f
    for f in [
        Format("label-studio", label_studio.read_export, label_studio.sniff, "Label Studio JSON export"),
        Format(
            "jsonl",
            read_documents_jsonl,
            lambda h: h.lstrip().startswith("{") and '"text"' in h and '"events"' in h and '"arguments"' in h,
            "canonical gplinker JSONL",
        ),
        Format("duee", read_duee, lambda h: '"event_list"' in h, "LIC / DuEE JSONL"),
        Format("fewfc", read_fewfc, lambda h: '"content"' in h and '"mentions"' in h, "FewFC JSONL"),
        Format("phee", read_phee, lambda h: '"context"' in h and '"annotations"' in h, "PHEE JSONL"),
    ]
}
