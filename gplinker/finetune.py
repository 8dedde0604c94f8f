"""Fine-tuning a saved model on new data: the same encoder and settings, the heads grown to the
union of the saved labels and the new data's labels (a new label's channel starts fresh)."""

from __future__ import annotations

import logging

from gplinker.extractor import Extractor
from gplinker.model import GPLinkerModel
from gplinker.task import Task

logger = logging.getLogger(__name__)


def extend_extractor(base: Extractor, new: Task) -> Extractor:
    """An extractor for ``base.task`` extended with ``new``'s labels, starting from ``base``'s
    encoder and heads; channels of labels ``base`` knows keep their trained weights."""
    if new.name != base.task.name:
        raise ValueError(f"the saved model is a {base.task.name} model; it cannot be fine-tuned for {new.name}")
    task = base.task.extended_with(new)
    old_labels, new_labels = base.task.channel_labels(), task.channel_labels()
    model = GPLinkerModel(
        base.model.encoder, task.head_specs(), base.settings.head_type, base.settings.head_size, base.settings.label_sharing
    )
    for name, head in model.heads.items():
        index = {lab: c for c, lab in enumerate(old_labels[name])}
        mapping = {c: index[lab] for c, lab in enumerate(new_labels[name]) if lab in index}
        head.copy_channels(base.model.heads[name], mapping)
    added = {name: [x for x in labs if x not in old_labels[name]] for name, labs in new_labels.items()}
    if any(added.values()):
        logger.info("fine-tuning adds labels: %s", "; ".join(f"{k}: {', '.join(v)}" for k, v in added.items() if v))
    ex = Extractor(model, base.tokenizer, task, base.settings, base.device, info=dict(base.info))
    return ex
