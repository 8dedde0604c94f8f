"""gplinker: joint information extraction with GlobalPointer and GPLinker.

The library is task-agnostic; the tasks (NER, relations, events) live in the ``tasks`` package.
"""
from gplinker.structures import Argument, Document, Event, Relation, Span

__all__ = ["Argument", "Document", "Event", "Relation", "Span"]
__version__ = "0.1.0"
