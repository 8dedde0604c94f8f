"""The gplinker command line: train, tune, evaluate, predict, pipeline, serve, calibrate, convert, info, card, push,
quickstart.

Installed as the ``gplinker`` command and ``python -m gplinker``; ``run.py`` in a checkout calls
the same :func:`main`. One module per command; options are generated from the typed settings
(:mod:`gplinker.settings`) and from each registered task's options, so no default is written twice
and the command line names no task. Every argument is checked before any data or model is
loaded, and every mistake a user can make is answered with one line naming the problem and the
fix (exit status 2); ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from typing import Callable

from gplinker import __version__
from gplinker.cli import calibrate, card, convert, evaluate, info, pipeline, predict, push, quickstart, serve, train, tune
from gplinker.cli.common import EXIT_USAGE, UsageError, print_metrics, registry

__all__ = ["main", "build_parser", "UsageError", "print_metrics"]

COMMANDS = (train, tune, evaluate, predict, pipeline, serve, calibrate, convert, info, card, push, quickstart)


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gplinker",
        formatter_class=_Formatter,
        description="GlobalPointer / GPLinker information extraction: NER, relation triples, events.",
    )
    p.add_argument("--version", action="version", version=f"gplinker {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    reg = registry()
    formats = "; ".join(f"{n}: {', '.join(reg[n].formats)}" for n in reg.names())
    for command in COMMANDS:
        command.add_parser(sub, _Formatter, formats)
    return p


def _is_user_error(e: BaseException) -> bool:
    from gplinker.io import DataError

    return isinstance(e, (UsageError, DataError, ValueError, FileNotFoundError, IsADirectoryError, PermissionError))


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (2: a mistake in the command or its input)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse has printed its message (or --help / --version)
        return int(e.code or 0)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as typed: a model records its training command
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the one place errors become messages
        if args.debug:
            traceback.print_exc()
        return _report(e)


def _report(e: Exception) -> int:
    """One line for an error: a user's mistake (exit 2), a full disk or another OS error (exit 1),
    or a bug (exit 1, with the request to report it)."""
    from gplinker.atomic import SaveError

    if _is_user_error(e):
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(e, SaveError):
        print(f"error: {e}", file=sys.stderr)
        return 1
    if isinstance(e, OSError):
        print(f"error: {e.strerror or e} ({getattr(e, 'filename', '') or ''}) — check the disk and the paths", file=sys.stderr)
        return 1
    print(
        f"error: internal error ({type(e).__name__}: {e}); rerun with --debug for the traceback and please report it",
        file=sys.stderr,
    )
    return 1
