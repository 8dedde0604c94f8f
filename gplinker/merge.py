"""Several models over the same texts: robust batched prediction and one merged record per text."""
from __future__ import annotations

import logging
from typing import Any, Sequence

from gplinker.pipeline import Extractor
from gplinker.structures import Document

logger = logging.getLogger(__name__)


def predict_robust(extractor: Extractor, docs: Sequence[Document], batch_size: int = 32,
                   progress: bool = False) -> list[Document | str]:
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
            out.append(f"{type(e).__name__}: {e}")
    return out


def _keep(score: float | None, threshold: float) -> bool:
    return score is None or score >= threshold


def merge_record(doc: Document, predictions: Sequence[tuple[str, str, Document | str]], threshold: float = 0.0) -> dict[str, Any]:
    """One output record: the input's id and extra fields, its text, and every model's entities,
    relations and events, each tagged with ``task`` and ``model`` and filtered by ``threshold``
    (items whose probability is below it are left out). Model failures go to ``errors``."""
    rec: dict[str, Any] = {}
    if doc.id is not None:
        rec["id"] = doc.id
    rec.update({k: v for k, v in doc.meta.items() if k not in ("entities", "relations", "events", "text")})
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
