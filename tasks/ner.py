"""Named-entity recognition, flat and nested: one GlobalPointer channel per entity type."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

from gplinker.cells import DocumentCells
from gplinker.metrics import score
from gplinker.options import option
from gplinker.structures import Document, Span
from gplinker.task import HeadSpec, Schema, Targets, Task, label_list

DECODINGS = ("flat", "nested")


@dataclass
class NEROptions:
    """``decode``: ``nested`` keeps every span above the threshold; ``flat`` keeps the
    highest-scoring spans that do not overlap; ``auto`` is flat when no two gold spans of the
    training data overlap, nested otherwise."""

    decode: Literal["auto", "flat", "nested"] = option(
        "auto",
        "ner: flat (best non-overlapping spans) or nested; auto (default) is flat unless gold spans overlap",
        flag="--decode",
        choices=("auto", "flat", "nested"),
        at_prediction=("flat", "nested"),
    )


def has_overlaps(docs: Sequence[Document]) -> bool:
    """Whether any two entities of one document overlap (nested or crossing)."""
    for d in docs:
        spans = sorted((s.start, s.end) for s in d.entities)
        if any(b[0] < a[1] for a, b in zip(spans, spans[1:])):
            return True
    return False


def flat_spans(spans: Sequence[Span]) -> list[Span]:
    """The highest-scoring spans that do not overlap, greedily (ties: longer, then earlier)."""
    taken: list[tuple[int, int]] = []
    out = []
    for s in sorted(spans, key=lambda s: (-(s.score if s.score is not None else 1.0), -(s.end - s.start), s.start, s.label)):
        if all(s.end <= a or b <= s.start for a, b in taken):
            taken.append((s.start, s.end))
            out.append(s)
    return sorted(out)


class NERTask(Task):
    """Entities as (label, start, end); nested spans allowed unless decoding is flat."""

    name = "ner"
    main_level = "entities"
    options_class = NEROptions
    head_name = "entities"

    def __init__(self, labels: Sequence[str], decode: str = "nested") -> None:
        if not labels:
            raise ValueError("NER needs at least one entity label; the training data has none")
        if decode not in DECODINGS:
            raise ValueError(f"unknown NER decoding {decode!r}; choose one of {', '.join(DECODINGS)}")
        self.labels = [str(x) for x in labels]
        self.label_index = {lab: k for k, lab in enumerate(self.labels)}
        self.decoding = decode

    def head_specs(self) -> list[HeadSpec]:
        return [HeadSpec(self.head_name, len(self.labels), use_rope=True, tril_mask=True)]

    def targets(self, doc: Document) -> Targets:
        return {
            self.head_name: {(self.label_index[s.label], s.start, s.end) for s in doc.entities if s.label in self.label_index}
        }

    def decode(self, doc: Document, cells: DocumentCells) -> Document:
        c = cells[self.head_name]
        if not len(c) and not doc.entities:  # nothing found: the document as it came (most sentences)
            return doc
        spans = [Span(a, b, self.labels[ch], float(p)) for (ch, a, b), p in zip(c.rows.tolist(), c.probabilities())]
        if self.decoding == "flat":
            spans = flat_spans(spans)
        return doc.with_annotations(entities=tuple(spans))

    def override(self, name: str, value: Any) -> None:
        if name != "decode" or value not in ("flat", "nested"):
            super().override(name, value)
        self.decoding = value

    def top_labels(self) -> set[str]:
        return set(self.labels)

    def schema(self) -> Schema:
        return Schema(entities=tuple(self.labels))

    def labels_in(self, doc: Document) -> set[str]:
        return {s.label for s in doc.entities}

    def channel_labels(self) -> dict[str, list[str]]:
        return {self.head_name: list(self.labels)}

    def extended_with(self, other: Task) -> "NERTask":
        assert isinstance(other, NERTask)
        return NERTask(self.labels + [x for x in other.labels if x not in self.label_index], other.decoding)

    def evaluate(self, gold: Sequence[Document], pred: Sequence[Document]) -> dict[str, Any]:
        as_set = lambda d: {(s.label, s.start, s.end) for s in d.entities}  # noqa: E731
        return {"entities": score(map(as_set, gold), map(as_set, pred), label_of=lambda t: t[0])}

    def config(self) -> dict[str, Any]:
        return {"labels": self.labels, "decode": self.decoding}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "NERTask":
        return cls(label_list(config["labels"]), config.get("decode", "nested"))

    @classmethod
    def from_documents(cls, docs: Sequence[Document], options: NEROptions | None = None) -> "NERTask":
        options = options or NEROptions()
        decode = options.decode
        if decode == "auto":
            decode = "nested" if has_overlaps(docs) else "flat"
        return cls(sorted({s.label for d in docs for s in d.entities}), decode)
