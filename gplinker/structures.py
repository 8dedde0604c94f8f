"""Values of the data model: spans, relations, events and documents.

Every public offset is a *character* offset into ``Document.text``, end exclusive.
"""

from __future__ import annotations

import numbers
import re
from dataclasses import dataclass, field, replace
from typing import Any


def _score(obj: dict[str, Any]) -> float | None:
    value = obj.get("score")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"score {value!r} is not a number")
    return float(value)


def _offset(value: Any, what: str) -> int:
    """An offset must be a whole number: a float or a boolean is refused, never truncated."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{what} {value!r} is not a whole number (offsets are integer character positions)")
    return int(value)


def _label(value: Any, what: str = "label") -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} {value!r} is not a non-empty string")
    return value


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{what} is {type(value).__name__}, not an object")
    return value


def _list(value: Any, what: str) -> list:
    if not isinstance(value, list):
        raise ValueError(f"{what} is {type(value).__name__}, not a list")
    return value


def _check_text(obj: dict[str, Any], text: str | None, start: int, end: int, what: str) -> None:
    """A span's optional ``text`` field must read what its offsets say."""
    if text is not None and "text" in obj and 0 <= start < end <= len(text) and obj["text"] != text[start:end]:
        raise ValueError(f"{what} text {obj['text']!r} does not match the text at [{start}, {end}) ({text[start:end]!r})")


def _located_json(out: dict[str, Any], item: Any, text: str | None) -> dict[str, Any]:
    """A span's or an argument's JSON: ``out`` plus its text (when ``text`` is given) and score."""
    if text is not None:
        out["text"] = text[item.start : item.end]
    if item.score is not None:
        out["score"] = round(item.score, 6)
    return out


def _checked(item: Any, obj: dict[str, Any], text: str | None, what: str) -> Any:
    """``item`` read from ``obj``, its ``"text"`` (when both are given) checked against its offsets."""
    _check_text(obj, text, item.start, item.end, what)
    return item


@dataclass(frozen=True, order=True)
class Span:
    """A labelled character span ``text[start:end]``."""

    start: int
    end: int
    label: str
    score: float | None = field(default=None, compare=False)  # probability, when predicted

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _offset(self.start, "start"))
        object.__setattr__(self, "end", _offset(self.end, "end"))
        _label(self.label)

    def text_in(self, text: str) -> str:
        return text[self.start : self.end]

    def to_json(self, text: str | None = None) -> dict[str, Any]:
        return _located_json({"start": self.start, "end": self.end, "label": self.label}, self, text)

    @classmethod
    def from_json(cls, obj: dict[str, Any], text: str | None = None) -> "Span":
        obj = _object(obj, "span")
        return _checked(cls(obj["start"], obj["end"], obj["label"], _score(obj)), obj, text, "span")


@dataclass(frozen=True, order=True)
class Relation:
    """A (subject, predicate, object) triple over two character spans."""

    head: Span
    label: str
    tail: Span
    score: float | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _label(self.label, "relation label")

    def to_json(self, text: str | None = None) -> dict[str, Any]:
        out = {"head": self.head.to_json(text), "label": self.label, "tail": self.tail.to_json(text)}
        if self.score is not None:
            out["score"] = round(self.score, 6)
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any], text: str | None = None) -> "Relation":
        obj = _object(obj, "relation")
        return cls(Span.from_json(obj["head"], text), obj["label"], Span.from_json(obj["tail"], text), _score(obj))


TRIGGER = "trigger"  # the role of an event's trigger among its arguments


@dataclass(frozen=True, order=True)
class Argument:
    """One argument of an event; the trigger is the argument whose role is :data:`TRIGGER`."""

    role: str
    start: int
    end: int
    score: float | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _label(self.role, "role")
        object.__setattr__(self, "start", _offset(self.start, "start"))
        object.__setattr__(self, "end", _offset(self.end, "end"))

    def to_json(self, text: str | None = None) -> dict[str, Any]:
        return _located_json({"role": self.role, "start": self.start, "end": self.end}, self, text)

    @classmethod
    def from_json(cls, obj: dict[str, Any], text: str | None = None) -> "Argument":
        obj = _object(obj, "argument")
        return _checked(cls(obj["role"], obj["start"], obj["end"], _score(obj)), obj, text, "argument")


@dataclass(frozen=True, order=True)
class Event:
    """An event: its type and its (sorted, deduplicated) arguments."""

    label: str
    arguments: tuple[Argument, ...]
    score: float | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _label(self.label, "event type")
        object.__setattr__(self, "arguments", tuple(sorted(set(self.arguments))))

    def to_json(self, text: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, "arguments": [a.to_json(text) for a in self.arguments]}
        if self.score is not None:
            out["score"] = round(self.score, 6)
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any], text: str | None = None) -> "Event":
        obj = _object(obj, "event")
        return cls(obj["label"], tuple(Argument.from_json(a, text) for a in _list(obj["arguments"], "arguments")), _score(obj))


_SURROGATE = re.compile("[\ud800-\udfff]")


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be a document's text, or None: a lone UTF-16 surrogate (JSON's
    ``"\\ud800"``) is no character, and no tokenizer or UTF-8 file can hold it."""
    if text.isascii():
        return None
    m = _SURROGATE.search(text)
    if m:
        return (
            f"the text holds a lone surrogate U+{ord(m.group()):04X} at character {m.start()}, which is not a "
            "character (a broken \\u escape or a UTF-16 text cut in half?) — fix the text's encoding"
        )
    return None


@dataclass(frozen=True)
class Document:
    """A text with its annotations (gold or predicted). Offsets are characters, end exclusive."""

    text: str
    entities: tuple[Span, ...] = ()
    relations: tuple[Relation, ...] = ()
    events: tuple[Event, ...] = ()
    id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise ValueError(f"text is {type(self.text).__name__}, not a string")
        problem = text_problem(self.text)
        if problem:
            raise ValueError(problem)
        n = len(self.text)
        spans = list(self.entities)
        spans += [s for r in self.relations for s in (r.head, r.tail)]
        for sp in spans:
            if not (0 <= sp.start < sp.end <= n):
                raise ValueError(
                    f"span {sp} is outside the text of length {n} or empty "
                    f"(document {self.id!r}); offsets are characters, end exclusive"
                )
        for ev in self.events:
            for a in ev.arguments:
                if not (0 <= a.start < a.end <= n):
                    raise ValueError(f"argument {a} is outside the text of length {n} (document {self.id!r})")
        object.__setattr__(self, "entities", tuple(sorted(set(self.entities))))
        object.__setattr__(self, "relations", tuple(sorted(set(self.relations))))
        object.__setattr__(self, "events", tuple(sorted(set(self.events))))

    def with_annotations(self, **changes: Any) -> "Document":
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.id is not None:
            out["id"] = self.id
        out["text"] = self.text
        out["entities"] = [s.to_json(self.text) for s in self.entities]
        if self.relations:
            out["relations"] = [r.to_json(self.text) for r in self.relations]
        if self.events:
            out["events"] = [e.to_json(self.text) for e in self.events]
        out.update({k: v for k, v in self.meta.items() if k not in out})
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Document":
        if "text" not in obj or not isinstance(obj["text"], str):
            raise ValueError('record has no string field "text"')
        known = {"id", "text", "entities", "relations", "events"}
        text = obj["text"]
        return cls(
            text=text,
            entities=tuple(Span.from_json(s, text) for s in _list(obj.get("entities", []), "entities")),
            relations=tuple(Relation.from_json(r, text) for r in _list(obj.get("relations", []), "relations")),
            events=tuple(Event.from_json(e, text) for e in _list(obj.get("events", []), "events")),
            id=None if obj.get("id") is None else str(obj["id"]),
            meta={k: v for k, v in obj.items() if k not in known},
        )
