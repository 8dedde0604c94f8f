"""Several models over the same texts: robust batched prediction and one combined record per text."""

from __future__ import annotations

import logging
from typing import Any, Sequence, TypedDict

from gplinker.extractor import Extractor
from gplinker.structures import Document, text_problem

logger = logging.getLogger(__name__)


class CombinedRecord(TypedDict, total=False):
    """One record of ``pipeline`` and the server: the input's line and id, its own extra fields
    (one named like a field below kept as ``input.NAME``), the text, every model's items tagged
    with ``task`` and ``model``, and ``error`` for an input or a model that failed on it."""

    line: int
    id: str
    text: str
    entities: list[dict[str, Any]]
    relations: list[dict[str, Any]]
    events: list[dict[str, Any]]
    error: str


OWN_FIELDS = ("line", "id", "text", "entities", "relations", "events", "error")  # what gplinker writes itself


def predict_robust(
    extractor: Extractor, docs: Sequence[Document], batch_size: int = 32, progress: bool = False
) -> list[Document | str]:
    """Predictions for every document, or an error message in its place; one failing document
    never loses the others (the batch is retried one document at a time)."""
    try:
        return list(extractor.predict(docs, batch_size, progress))
    except Exception as e:  # noqa: BLE001 - isolate the failing record, report it, keep the rest
        logger.warning("batch prediction failed (%s: %s); retrying one document at a time", type(e).__name__, e)
    out: list[Document | str] = []
    for d in docs:
        try:
            out.append(extractor.predict([d], 1)[0])
        except Exception as e:  # noqa: BLE001
            logger.warning("prediction failed on one document (%s: %s)", type(e).__name__, e)
            out.append(f"{type(e).__name__}: {e}")
    return out


def _keep(score: float | None, threshold: float) -> bool:
    return score is None or score >= threshold


def above(doc: Document, threshold: float) -> Document:
    """``doc`` with only the items whose probability is at least ``threshold``."""
    if not threshold:
        return doc
    return doc.with_annotations(
        entities=tuple(s for s in doc.entities if _keep(s.score, threshold)),
        relations=tuple(r for r in doc.relations if _keep(r.score, threshold)),
        events=tuple(e for e in doc.events if _keep(e.score, threshold)),
    )


def input_fields(doc: Document) -> dict[str, Any]:
    """The input's own extra fields; one whose name gplinker writes itself is kept as ``input.NAME``."""
    return {(f"input.{k}" if k in OWN_FIELDS else k): v for k, v in doc.meta.items()}


def predict_records(
    extractor: Extractor, inputs: Sequence, source: str, threshold: float = 0.0, batch_size: int = 32
) -> list[dict[str, Any]]:
    """The ``predict`` command's output records for :class:`gplinker.io.InputRecord` inputs, one per
    input in order: the line, the canonical prediction and the input's own fields, or the line and
    an ``error`` naming ``source`` and the line. Shared by ``predict`` and the Ray engine."""
    ok = [r for r in inputs if r.doc is not None]
    preds = iter(predict_robust(extractor, [r.doc for r in ok], batch_size))
    out = []
    for r in inputs:
        if r.doc is None:
            out.append({"line": r.line, "error": r.error})
            continue
        pred = next(preds)
        if isinstance(pred, str):
            out.append({"line": r.line, **({"id": r.doc.id} if r.doc.id else {}), "error": f"{source}, line {r.line}: {pred}"})
            continue
        pred = above(pred, threshold)
        out.append({"line": r.line, **pred.with_annotations(meta={}).to_json(), **input_fields(r.doc)})  # gplinker's fields first
    return out


def combine_record(
    doc: Document, predictions: Sequence[tuple[str, str, Document | str]], threshold: float = 0.0, line: int | None = None
) -> CombinedRecord:
    """One output record: the input line, id and extra fields, its text, and every model's entities,
    relations and events, each tagged with ``task`` and ``model`` and filtered by ``threshold``
    (items whose probability is below it are left out). Model failures go to ``error``."""
    rec: CombinedRecord = {} if line is None else {"line": line}
    if doc.id is not None:
        rec["id"] = doc.id
    rec.update(input_fields(doc))
    rec["text"] = doc.text
    rec["entities"], rec["relations"], rec["events"] = [], [], []
    errors = []
    for task, model, pred in predictions:
        if isinstance(pred, str):
            errors.append(f"{model}: {pred}")
            continue
        tag = {"task": task, "model": model}
        rec["entities"] += [{**s.to_json(doc.text), **tag} for s in sorted(pred.entities) if _keep(s.score, threshold)]
        rec["relations"] += [{**r.to_json(doc.text), **tag} for r in sorted(pred.relations) if _keep(r.score, threshold)]
        rec["events"] += [{**e.to_json(doc.text), **tag} for e in sorted(pred.events) if _keep(e.score, threshold)]
    if errors:
        rec["error"] = "; ".join(errors)
    return rec


def _item(r: Any) -> tuple[int | None, Document | None, str | None]:
    """(line, document, error) of one input of :meth:`Pipeline.records`."""
    if isinstance(r, str):
        problem = text_problem(r)
        return None, None if problem else Document(text=r), problem
    if isinstance(r, Document):
        return None, r, None
    return r.line, r.doc, r.error


class Pipeline:
    """Several models over the same texts, one combined record per input; the ``pipeline``
    command and the server both go through :meth:`records`, so they cannot disagree."""

    def __init__(self, models: Sequence[tuple[Extractor, str]]) -> None:
        names = [name for _, name in models]
        if len(set(names)) != len(names):
            raise ValueError(f"two models share a name ({', '.join(names)}); give each model its own folder name")
        self.models = list(models)

    def names(self) -> list[str]:
        return [name for _, name in self.models]

    def predict(
        self, docs: Sequence[Document], batch_size: int = 32, models: Sequence[str] | None = None
    ) -> list[tuple[str, str, list[Document | str]]]:
        """(task, model name, one prediction or error message per document) for each chosen model."""
        unknown = sorted(set(models or ()) - set(self.names()))
        if unknown:
            raise KeyError(f"unknown model(s) {', '.join(unknown)}; this pipeline has {', '.join(self.names())}")
        return [
            (ex.task.name, name, predict_robust(ex, docs, batch_size))
            for ex, name in self.models
            if models is None or name in models
        ]

    @staticmethod
    def combine(
        doc: Document,
        predictions: Sequence[tuple[str, str, list[Document | str]]],
        k: int,
        threshold: float = 0.0,
        models: Sequence[str] | None = None,
        line: int | None = None,
    ) -> CombinedRecord:
        """The combined record of document ``k`` of a :meth:`predict` call."""
        return combine_record(
            doc,
            [(task, name, preds[k]) for task, name, preds in predictions if models is None or name in models],
            threshold,
            line,
        )

    def records(
        self, inputs: Sequence, threshold: float = 0.0, batch_size: int = 32, models: Sequence[str] | None = None
    ) -> list[CombinedRecord]:
        """One record per input -- a text, a :class:`Document` or a :class:`gplinker.io.InputRecord` --, in order: an
        input error gives an error record, a model failing on one text an ``error`` on that text."""
        items = [_item(r) for r in inputs]
        docs = [doc for _, doc, _ in items if doc is not None]
        predictions = self.predict(docs, batch_size, models)
        out, k = [], 0
        for line, doc, error in items:
            if doc is None:
                out.append({**({} if line is None else {"line": line}), "error": error})
                continue
            out.append(self.combine(doc, predictions, k, threshold, line=line))
            k += 1
        return out
