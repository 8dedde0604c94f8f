"""``gplinker serve``: models over HTTP with a page to try them (the serve extra)."""

from __future__ import annotations

import argparse
import os

from gplinker.cli import common
from gplinker.cli.common import UsageError, add_common, add_model_options, check_device, model_path, setup_logging
from gplinker.cli.options import add_options, values
from gplinker.settings import API_KEY_ENV, ServeSettings


def add_parser(sub, formatter, formats: str) -> argparse.ArgumentParser:
    s = sub.add_parser(
        "serve", help="serve models over HTTP with an interactive page (needs the serve extra)", formatter_class=formatter
    )
    s.add_argument("--model", action="append", required=True, help="a model directory; repeat for several")
    add_options(s, ServeSettings)
    s.add_argument("--access-log", action="store_true", help="log one line per request (costs CPU under load)")
    add_model_options(s, batch=False)
    add_common(s)
    s.set_defaults(func=run)
    return s


def settings_from(args: argparse.Namespace) -> ServeSettings:
    """The server's settings from the flags (the API key from $GPLINKER_API_KEY when not given);
    an empty key (an unset variable) is a mistake, never a server without a key."""
    api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV)
    if api_key is not None and not api_key.strip():
        where = "--api-key" if args.api_key is not None else f"${API_KEY_ENV}"
        raise UsageError(
            f"{where} is empty (an unset variable?), so the server would run without a key — give the key, "
            f"or leave out {where} to serve without one"
        )
    try:
        return ServeSettings(**{**values(args, ServeSettings), "api_key": api_key, "threshold": args.threshold or 0.0})
    except ValueError as e:
        raise UsageError(str(e)) from None


def run(args: argparse.Namespace) -> int:
    for m in args.model:
        model_path(m)
    check_device(args.device)
    settings = settings_from(args)
    setup_logging(None, args.verbose)
    from gplinker import server
    from gplinker.combine import Pipeline
    from gplinker.model_thread import model_thread

    server.require_extra()

    def load() -> Pipeline:
        pipeline = Pipeline([(common.load_extractor(m, args), common.model_name(m)) for m in args.model])
        common.apply_prediction_options([ex for ex, _ in pipeline.models], args)
        return pipeline

    executor = model_thread()  # every torch call of this process runs in it, loading included
    try:
        pipeline = executor.submit(load).result()
    except BaseException:
        executor.shutdown(wait=False)
        raise
    return server.serve(pipeline, settings, executor, access_log=args.access_log)
