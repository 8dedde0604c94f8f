"""gplinker: joint information extraction with GlobalPointer and GPLinker.

The library is task-agnostic and works in character offsets at every public boundary; the tasks
(NER, relations, events) live in ``gplinker.tasks`` (the repository's ``tasks/`` folder) and are
found by name through :func:`gplinker.tasks.default_registry`.
"""

from gplinker.structures import Argument, Document, Event, Relation, Span

__all__ = ["Argument", "Document", "Event", "Relation", "Span"]
__version__ = "0.1.0"
