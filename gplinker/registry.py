"""Tasks by name: the only way a task class is found (the CLI, model directories, the server).

A model directory names its task (``"ner"``), never an import path, so loading one never imports
code it names. :func:`gplinker.tasks.default_registry` returns a fresh registry of the built-in
tasks; a user adds a task of their own on purpose with :meth:`TaskRegistry.register` and passes
that registry where a model is loaded.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from gplinker.io import DataError, detect_format
from gplinker.structures import Document
from gplinker.task import Task

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Format:
    """A dataset format a task reads: its reader and, for ``--format auto``, its sniffer."""

    name: str
    read: Callable[[str | Path], list[Document]]
    sniff: Callable[[str], bool] | None = None  # the file's first 20,000 characters -> is it mine?
    description: str = ""


@dataclass(frozen=True)
class TaskEntry:
    """A task class, its typed options, its formats, and how to count its annotations."""

    task_class: type[Task]
    formats: dict[str, Format]
    annotations: Callable[[Document], int]  # annotations of this task in a document

    @property
    def name(self) -> str:
        return self.task_class.name

    def options(self, **given: Any) -> Any:
        """An instance of the task's options dataclass; an unknown option is a ValueError."""
        cls = self.task_class.options_class
        known = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
        unknown = sorted(set(given) - known)
        if unknown:
            raise ValueError(
                f"unknown option(s) {', '.join(unknown)} for task {self.name!r}; "
                f"its options are: {', '.join(sorted(known)) or 'none'}"
            )
        return cls(**given)

    def resolve_format(self, path: str | Path, fmt: str = "auto") -> str:
        """``fmt`` checked against this task's formats, or detected from the file when ``auto``."""
        p = Path(path)
        if not p.exists():
            raise DataError(path, None, "no such file", "check the path")
        if p.is_dir():
            raise DataError(path, None, "is a directory, not a file", "pass one data file")
        if fmt == "auto":
            sniffers = {k: f.sniff for k, f in self.formats.items() if f.sniff is not None}
            fmt = detect_format(path, sniffers)
            logger.info("%s: detected format %s", path, fmt)
        if fmt not in self.formats:
            raise DataError(path, None, f"unknown {self.name} format {fmt!r}", f"choose one of: auto, {', '.join(self.formats)}")
        return fmt

    def read(self, path: str | Path, fmt: str = "auto", labelled: bool = True) -> list[Document]:
        """Documents of ``path``. With ``labelled``, a file holding no annotation of this task is an
        error (a wrong ``--format`` that reads texts but no labels is caught here)."""
        fmt = self.resolve_format(path, fmt)
        docs = self.formats[fmt].read(path)
        n = sum(self.annotations(d) for d in docs)
        logger.info("%s: %d documents, %d %s annotations (format %s)", path, len(docs), n, self.name, fmt)
        if labelled and docs and n == 0:
            raise DataError(
                path,
                None,
                f"read {len(docs)} documents as format {fmt!r} but found no {self.name} annotation",
                f"check --format (this task's formats: {', '.join(self.formats)}) and that the file is "
                "labelled; pass an unlabelled file only where one is expected",
            )
        return docs


class TaskRegistry:
    """Task entries by name."""

    def __init__(self, entries: Iterable[TaskEntry] = ()) -> None:
        self._entries: dict[str, TaskEntry] = {}
        for e in entries:
            self.register(e)

    def register(self, entry: TaskEntry, replace: bool = False) -> None:
        if not entry.name:
            raise ValueError(f"{entry.task_class.__name__} has no name")
        if entry.name in self._entries and not replace:
            raise ValueError(f"a task named {entry.name!r} is already registered (pass replace=True)")
        self._entries[entry.name] = entry

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __getitem__(self, name: str) -> TaskEntry:
        if not isinstance(name, str) or name not in self._entries:
            raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(self.names())}")
        return self._entries[name]

    def task_from_config(self, name: str, config: dict[str, Any]) -> Task:
        """Rebuild a saved task by its registry name (nothing is imported)."""
        return self[name].task_class.from_config(config)
