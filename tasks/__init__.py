"""The built-in tasks (installed as ``gplinker.tasks``) and the registry that names them.

``default_registry()`` returns a fresh :class:`gplinker.registry.TaskRegistry` holding ``ner``,
``relation`` and ``event``; the CLI, model directories and the server look tasks up there. To
add a task of your own, register it on a registry you pass along (nothing global changes)::

    registry = default_registry()
    registry.register(TaskEntry(MyTask, formats={"jsonl": ...}, annotations=lambda d: len(d.entities)))
    Extractor.from_pretrained("my-model", registry=registry)

:func:`load` loads a saved model with the built-in tasks.
"""

from __future__ import annotations

from gplinker.registry import TaskEntry, TaskRegistry

from .event import EventOptions, EventTask
from .ner import NEROptions, NERTask
from .readers import event as event_readers
from .readers import ner as ner_readers
from .readers import relation as relation_readers
from .relation import RelationOptions, RelationTask

__all__ = ["EventOptions", "EventTask", "NEROptions", "NERTask", "RelationOptions", "RelationTask", "default_registry", "load"]


def default_registry() -> TaskRegistry:
    """A new registry of the built-in tasks."""
    return TaskRegistry(
        [
            TaskEntry(NERTask, ner_readers.FORMATS, annotations=lambda d: len(d.entities)),
            TaskEntry(RelationTask, relation_readers.FORMATS, annotations=lambda d: len(d.relations)),
            TaskEntry(EventTask, event_readers.FORMATS, annotations=lambda d: len(d.events)),
        ]
    )


def load(path, device=None, registry: TaskRegistry | None = None, revision: str | None = None):
    """A saved model (:class:`gplinker.extractor.Extractor`) whose task is a built-in one (or one of
    ``registry``): a folder, or a Hugging Face Hub repository id (``"org/name"``, optionally at
    ``revision``); checked as :meth:`Extractor.from_pretrained` checks it."""
    from gplinker.extractor import Extractor

    return Extractor.from_pretrained(path, device, registry=registry or default_registry(), revision=revision)
