"""gplinker as a spaCy pipeline component (the ``spacy`` extra): ``nlp.add_pipe("gplinker",
config={"model": PATH_OR_REPO})``, found through spaCy's entry points.

On each ``Doc``:

- ``doc.spans["gplinker"]``: every predicted entity, nested ones included, as a ``Span``;
- ``doc.ents``: the non-overlapping ones (highest score first, then the longer, then the earlier),
  so flat NER, displaCy and every spaCy component that reads ``doc.ents`` work unchanged;
  entities already on ``doc.ents`` (an earlier component's) are kept, ours added around them;
- ``doc._.relations``: ``Relation(head, label, tail, score)`` with ``Span`` heads and tails;
- ``doc._.events``: ``Event(label, score, trigger, arguments)`` with ``Span`` triggers and
  ``(role, Span, score)`` arguments;
- ``span._.gplinker_score``: each item's probability; ``doc._.gplinker_unaligned``: how many
  predicted spans could not be placed on spaCy's tokens.

Alignment policy: gplinker predicts character offsets; a span is placed on spaCy's tokens with
``Doc.char_span(alignment_mode=...)`` -- ``expand`` (default: the smallest run of tokens covering
it), ``contract`` (the tokens inside it) or ``strict`` (only spans on token boundaries). A span that
cannot be placed is left out of ``ents``/``spans``, and a relation or event argument on it too, and
counted. Several gplinker components in one pipeline (an NER, a relation and an event model) add
their items up. ``nlp.pipe`` runs gplinker's batched prediction over each batch of texts.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Iterator, NamedTuple

from gplinker.structures import TRIGGER, Document

logger = logging.getLogger(__name__)

SPANS_KEY = "gplinker"
ALIGNMENTS = ("expand", "contract", "strict")


class Relation(NamedTuple):
    head: Any  # spacy.tokens.Span
    label: str
    tail: Any
    score: float | None


class Event(NamedTuple):
    label: str
    score: float | None
    trigger: Any  # spacy.tokens.Span or None (an event predicted without a trigger)
    arguments: list  # (role, Span, score)


def flat(spans: Iterable[Any]) -> list[Any]:
    """Non-overlapping spans for ``doc.ents``: highest score first, then the longer, then the earlier."""
    taken: set[int] = set()
    out = []
    for sp in sorted(spans, key=lambda s: (-(s._.gplinker_score or 0.0), -(s.end - s.start), s.start)):
        if not taken.intersection(range(sp.start, sp.end)):
            taken.update(range(sp.start, sp.end))
            out.append(sp)
    return sorted(out, key=lambda s: (s.start, s.end))


def register_extensions() -> None:
    """The Doc and Span attributes the component sets (spaCy keeps them on its classes)."""
    from spacy.tokens import Doc, Span

    for name, default in (("relations", None), ("events", None), ("gplinker_unaligned", 0)):
        if not Doc.has_extension(name):
            Doc.set_extension(name, default=default)
    if not Span.has_extension("gplinker_score"):
        Span.set_extension("gplinker_score", default=None)


class GPLinkerComponent:
    """The component: a loaded gplinker model set on spaCy Docs (see the module's docstring)."""

    def __init__(
        self, extractor, name: str = "gplinker", threshold: float = 0.0, batch_size: int = 32, alignment: str = "expand"
    ) -> None:
        if alignment not in ALIGNMENTS:
            raise ValueError(f"alignment {alignment!r}: choose one of {', '.join(ALIGNMENTS)}")
        register_extensions()
        self.extractor, self.name = extractor, name
        self.threshold, self.batch_size, self.alignment = threshold, batch_size, alignment
        self.unaligned = 0  # spans that could not be placed on tokens, over every Doc so far

    def __call__(self, doc):
        return self._set(doc, self.extractor.predict([doc.text], self.batch_size)[0])

    def pipe(self, docs: Iterable[Any], batch_size: int = 128) -> Iterator[Any]:
        batch: list = []
        for doc in docs:
            batch.append(doc)
            if len(batch) >= batch_size:
                yield from self._batch(batch)
                batch = []
        if batch:
            yield from self._batch(batch)

    def _batch(self, docs: list) -> Iterator[Any]:
        preds = self.extractor.predict([d.text for d in docs], self.batch_size)
        for doc, pred in zip(docs, preds):
            yield self._set(doc, pred)

    def _set(self, doc, pred: Document):
        from gplinker.combine import above

        pred = above(pred, self.threshold)
        spans: dict[tuple[int, int, str], Any] = {}
        missed = 0

        def span(start: int, end: int, label: str, score: float | None):
            nonlocal missed
            key = (start, end, label)
            if key not in spans:
                sp = doc.char_span(start, end, label=label, alignment_mode=self.alignment)
                if sp is not None and len(sp):
                    sp._.gplinker_score = score
                else:
                    missed += 1
                    sp = None
                spans[key] = sp
            return spans[key]

        entities = [sp for s in pred.entities if (sp := span(s.start, s.end, s.label, s.score)) is not None]
        relations = []
        for r in pred.relations:
            head, tail = (
                span(r.head.start, r.head.end, r.head.label, r.head.score),
                span(r.tail.start, r.tail.end, r.tail.label, r.tail.score),
            )
            if head is not None and tail is not None:
                relations.append(Relation(head, r.label, tail, r.score))
        events = []
        for e in pred.events:
            trigger, arguments = None, []
            for a in e.arguments:
                sp = span(a.start, a.end, e.label if a.role == TRIGGER else a.role, a.score)
                if sp is None:
                    continue
                if a.role == TRIGGER:
                    trigger = sp
                else:
                    arguments.append((a.role, sp, a.score))
            events.append(Event(e.label, e.score, trigger, arguments))
        self._merge(doc, entities, relations, events, missed)
        self.unaligned += missed
        return doc

    @staticmethod
    def _merge(doc, entities: list, relations: list, events: list, missed: int) -> None:
        """Add this component's items to what earlier components set: several gplinker models
        (NER, relations, events) in one pipeline add up; entities already on ``doc.ents`` (any
        component's) are kept, and ours are added where they do not overlap them."""
        before = list(doc.spans[SPANS_KEY]) if SPANS_KEY in doc.spans else []
        seen = {(s.start, s.end, s.label_) for s in before}
        doc.spans[SPANS_KEY] = before + [s for s in entities if (s.start, s.end, s.label_) not in seen]
        kept = list(doc.ents)
        taken = {k for s in kept for k in range(s.start, s.end)}
        doc.ents = sorted(
            kept + [s for s in flat(entities) if not taken.intersection(range(s.start, s.end))], key=lambda s: s.start
        )
        doc._.relations = (doc._.relations or []) + relations
        doc._.events = (doc._.events or []) + events
        doc._.gplinker_unaligned += missed


def make_gplinker(
    nlp,
    name: str,
    model: str,
    device: str | None,
    threshold: float,
    batch_size: int,
    alignment: str,
    revision: str | None,
) -> GPLinkerComponent:
    """The ``gplinker`` factory: loads ``model`` (a folder or a hub repository id) once."""
    from gplinker.tasks import load

    if not model:
        raise ValueError('the gplinker component needs config={"model": "a model folder or a hub repository id"}')
    return GPLinkerComponent(load(model, device=device, revision=revision), name, threshold, batch_size, alignment)


def register() -> None:
    """Register the ``gplinker`` factory with spaCy (spaCy's entry point calls this on demand)."""
    from spacy.language import Language

    if "gplinker" not in Language.factories:
        Language.factory(
            "gplinker",
            default_config={
                "model": None,
                "device": None,
                "threshold": 0.0,
                "batch_size": 32,
                "alignment": "expand",
                "revision": None,
            },
        )(make_gplinker)
