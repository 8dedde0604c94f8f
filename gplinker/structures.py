"""Values of the data model: spans, relations, events and documents.

Every public offset is a *character* offset into ``Document.text``, end exclusive.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any


def _score(obj: dict[str, Any]) -> float | None:
    return None if obj.get("score") is None else float(obj["score"])


@dataclass(frozen=True, order=True)
class Span:
    """A labelled character span ``text[start:end]``."""

    start: int
    end: int
    label: str
    score: float | None = field(default=None, compare=False)  # probability, when predicted

    def text_in(self, text: str) -> str:
        return text[self.start : self.end]

    def to_json(self, text: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"start": self.start, "end": self.end, "label": self.label}
        if text is not None:
            out["text"] = text[self.start : self.end]
        if self.score is not None:
            out["score"] = round(self.score, 6)
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Span":
        return cls(int(obj["start"]), int(obj["end"]), str(obj["label"]), _score(obj))


@dataclass(frozen=True, order=True)
class Relation:
    """A (subject, predicate, object) triple over two character spans."""

    head: Span
    label: str
    tail: Span
    score: float | None = field(default=None, compare=False)

    def to_json(self, text: str | None = None) -> dict[str, Any]:
        out = {"head": self.head.to_json(text), "label": self.label, "tail": self.tail.to_json(text)}
        if self.score is not None:
            out["score"] = round(self.score, 6)
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Relation":
        return cls(Span.from_json(obj["head"]), str(obj["label"]), Span.from_json(obj["tail"]), _score(obj))


@dataclass(frozen=True, order=True)
class Argument:
    """One argument of an event; the trigger is the argument whose role is ``trigger``."""

    role: str
    start: int
    end: int
    score: float | None = field(default=None, compare=False)

    def to_json(self, text: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "start": self.start, "end": self.end}
        if text is not None:
            out["text"] = text[self.start : self.end]
        if self.score is not None:
            out["score"] = round(self.score, 6)
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Argument":
        return cls(str(obj["role"]), int(obj["start"]), int(obj["end"]), _score(obj))


@dataclass(frozen=True, order=True)
class Event:
    """An event: its type and its (sorted, deduplicated) arguments."""

    label: str
    arguments: tuple[Argument, ...]
    score: float | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "arguments", tuple(sorted(set(self.arguments))))

    def to_json(self, text: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, "arguments": [a.to_json(text) for a in self.arguments]}
        if self.score is not None:
            out["score"] = round(self.score, 6)
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Event":
        return cls(str(obj["label"]), tuple(Argument.from_json(a) for a in obj["arguments"]), _score(obj))


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
        return cls(
            text=obj["text"],
            entities=tuple(Span.from_json(s) for s in obj.get("entities", [])),
            relations=tuple(Relation.from_json(r) for r in obj.get("relations", [])),
            events=tuple(Event.from_json(e) for e in obj.get("events", [])),
            id=None if obj.get("id") is None else str(obj["id"]),
            meta={k: v for k, v in obj.items() if k not in known},
        )
