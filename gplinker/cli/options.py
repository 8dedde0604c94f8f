"""Command-line options generated from the typed settings: one definition of every default and help.

:func:`add_options` turns the fields of a settings dataclass (those declared with
:func:`gplinker.options.option` and a flag) into argparse arguments; :func:`values` reads them back
as keyword arguments for the dataclass. Task options come from each registered task's options class
(:func:`add_task_options`), so the command line never names a task.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from typing import Any, Callable

from gplinker.options import OptionSpec, cli_fields


def number(kind: type, minimum: float | None, above: bool, what: str) -> Callable[[str], Any]:
    """An argparse type: a finite ``kind`` number, above (``above``) or at least ``minimum``."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if minimum is not None and (value < minimum or (above and value == minimum)):
            raise argparse.ArgumentTypeError(f"{text} must be {'above' if above else 'at least'} {minimum:g}")
        return value

    return parse


positive_int = number(int, 1, False, "a whole number")
non_negative_int = number(int, 0, False, "a whole number")
positive_float = number(float, 0.0, True, "a number")
non_negative_float = number(float, 0.0, False, "a number")


def probability(text: str) -> float:
    """An argparse type: a probability threshold in (0, 1]."""
    value = number(float, None, False, "a number")(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(
            f"{text} is not a probability in (0, 1]; items are kept when their probability "
            "is at least this (every decoded item has p > 0.5)"
        )
    return value


def _kind(f: dataclasses.Field, owner: type) -> tuple[type, bool]:
    """(int, float, bool or str; whether the option repeats) from the field's annotation."""
    hint = typing.get_type_hints(owner).get(f.name, str)
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]  # X | None -> X
    if typing.get_origin(args[0]) is tuple:
        return str, True  # a tuple of strings: a repeated option
    return (args[0] if args[0] in (int, float, bool, str) else str), False


def _argument(f: dataclasses.Field, spec: OptionSpec, owner: type) -> tuple[list[str], dict[str, Any]]:
    """The argparse flags and keyword arguments of one field."""
    kind, repeated = _kind(f, owner)
    kw: dict[str, Any] = {"dest": f.name, "help": spec.help}
    if kind is bool:
        if spec.negate:
            return [spec.negate], {**kw, "action": "store_false", "default": True}
        return [spec.flag], {**kw, "action": "store_true", "default": False}
    if repeated:
        kw.update(action="append", default=None)
    else:
        kw["default"] = None if f.default is dataclasses.MISSING else f.default
    if spec.choices:
        kw["choices"] = list(spec.choices)
    elif kind is int:
        kw["type"] = number(int, spec.minimum, spec.above, "a whole number") if spec.minimum is not None else int
    elif kind is float:
        kw["type"] = number(float, spec.minimum, spec.above, "a number")
    if spec.metavar:
        kw["metavar"] = spec.metavar
    return [spec.flag], kw


def add_options(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """Add an argument for every field of ``cls`` that has a flag (except the fields in ``skip``)."""
    for f, spec in cli_fields(cls):
        if f.name not in skip:
            flags, kw = _argument(f, spec, cls)
            parser.add_argument(*flags, **kw)


def values(args: argparse.Namespace, cls: type, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Keyword arguments for ``cls`` from the parsed flags its fields declare."""
    out = {}
    for f, _ in cli_fields(cls):
        if f.name not in skip and hasattr(args, f.name):
            value = getattr(args, f.name)
            out[f.name] = tuple(value) if isinstance(value, list) else value
    return out


def task_option_fields(registry) -> dict[str, list[tuple[str, dataclasses.Field, OptionSpec]]]:
    """Each flag of the registered tasks' options: [(task name, field, spec)]; one flag may serve several tasks."""
    out: dict[str, list] = {}
    for name in registry.names():
        cls = registry[name].task_class.options_class
        if not dataclasses.is_dataclass(cls):
            continue
        for f, spec in cli_fields(cls):
            out.setdefault(spec.flag or spec.negate, []).append((name, f, spec))
    return out


def add_task_options(parser: argparse.ArgumentParser, registry, at_prediction: bool = False) -> None:
    """The task options as flags (each task's own help text); ``at_prediction``: only those a task
    lets a saved model override when predicting. Every flag defaults to None: not given."""
    for flag, users in task_option_fields(registry).items():
        _, f, spec = users[0]
        if at_prediction and spec.at_prediction is None:
            continue
        dest = f"task_{f.name}"
        if isinstance(f.default, bool):  # a flag that turns the task's default around
            parser.add_argument(flag, dest=dest, action="store_const", const=not f.default, default=None, help=spec.help)
            continue
        choices = spec.at_prediction if at_prediction else spec.choices
        parser.add_argument(
            flag,
            dest=dest,
            default=None,
            choices=list(choices) if choices else None,
            help=spec.help,
            metavar=None if choices else spec.metavar or ("FILE" if spec.file else f.name.upper()),
        )


def given_task_options(args: argparse.Namespace, registry) -> dict[str, tuple[str, Any]]:
    """The task options given on the command line: field name -> (flag, value)."""
    out = {}
    for flag, users in task_option_fields(registry).items():
        name = users[0][1].name
        value = getattr(args, f"task_{name}", None)
        if value is not None:
            out[name] = (flag, value)
    return out
