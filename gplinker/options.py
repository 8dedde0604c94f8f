"""Options as data: a dataclass field carries its own help text, command-line flag and bounds.

The library's settings (:class:`gplinker.training.TrainConfig`,
:class:`gplinker.extractor.ModelSettings`, :class:`gplinker.server.ServeSettings`) and each task's
options class declare their fields with :func:`option`; the command line is generated from them,
so every default and help text is written once, next to the value it describes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class OptionSpec:
    """How a field appears on the command line (``flag`` None: not there)."""

    help: str
    flag: str | None = None
    choices: tuple[str, ...] | None = None
    minimum: float | None = None  # numbers: the smallest value allowed
    above: bool = False  # numbers: strictly above ``minimum``
    negate: str | None = None  # booleans true by default: the flag that turns them off
    metavar: str | None = None
    at_prediction: tuple[str, ...] | None = None  # task options: also a prediction-time override, with these choices
    file: bool = False  # a path that must name an existing file


def option(default: Any = dataclasses.MISSING, help: str = "", *, default_factory: Any = dataclasses.MISSING, **spec: Any) -> Any:
    """A dataclass field with its :class:`OptionSpec` in the field's metadata."""
    kw = {"default": default} if default_factory is dataclasses.MISSING else {"default_factory": default_factory}
    return dataclasses.field(**kw, metadata={"option": OptionSpec(help=help, **spec)})


def spec_of(f: dataclasses.Field) -> OptionSpec | None:
    """The field's :class:`OptionSpec`, or None for a field without one."""
    return f.metadata.get("option")


def cli_fields(cls: type) -> list[tuple[dataclasses.Field, OptionSpec]]:
    """The fields of ``cls`` that have a command-line flag, in declaration order."""
    out = []
    for f in dataclasses.fields(cls):
        s = spec_of(f)
        if s is not None and (s.flag or s.negate):
            out.append((f, s))
    return out
