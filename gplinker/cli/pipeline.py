"""``gplinker pipeline``: several models (NER, relations, events) over the same texts, one
combined record per input line, and an HTML report."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from gplinker.cli.common import (
    add_common,
    add_model_options,
    apply_prediction_options,
    check_io,
    chunks,
    load_extractor,
    messages,
    model_name,
    setup_logging,
    table,
)
from gplinker.cli.options import positive_int


def add_parser(sub, formatter, formats: str) -> argparse.ArgumentParser:
    pl = sub.add_parser(
        "pipeline",
        help="run several models (NER, relation, event) over texts; one combined record each",
        formatter_class=formatter,
    )
    pl.add_argument("--model", action="append", required=True, help="a model directory; repeat for several")
    pl.add_argument("--input", required=True, help='plain text (one text a line) or JSONL with a "text" field')
    pl.add_argument("--output", required=True, help="JSONL, one combined record per input line (-: standard output)")
    pl.add_argument("--html", help="also write a self-contained HTML report here")
    pl.add_argument("--chunk-size", type=positive_int, default=1000, help="input lines read and predicted at a time")
    add_model_options(pl, input_format=True)
    add_common(pl)
    pl.set_defaults(func=run)
    return pl


def run(args: argparse.Namespace) -> int:
    src = check_io(args)
    setup_logging(None, args.verbose)
    from gplinker.combine import Pipeline
    from gplinker.io import input_format, iter_inputs, write_jsonl

    pipeline = Pipeline([(load_extractor(m, args), model_name(m)) for m in args.model])
    apply_prediction_options([ex for ex, _ in pipeline.models], args)
    fmt = input_format(src, args.input_format)
    t0 = time.time()
    out: list[dict[str, Any]] = []
    n_texts = 0
    for chunk in chunks(iter_inputs(src, fmt), args.chunk_size):
        n_texts += sum(r.doc is not None for r in chunk)
        out += pipeline.records(chunk, args.threshold or 0.0, args.batch_size)
    seconds = time.time() - t0
    write_jsonl(args.output, out)
    if args.html:
        from gplinker.atomic import write_text
        from gplinker.html import render

        write_text(args.html, render(out, f"gplinker: {Path(args.input).name}"), errors="backslashreplace")
    summary(args, out, n_texts, len(pipeline.models), seconds)
    failed = [rec for rec in out if "error" in rec]
    return 1 if out and len(failed) == len(out) else 0


def summary(args: argparse.Namespace, out: list[dict[str, Any]], n_texts: int, n_models: int, seconds: float) -> None:
    """What was written: counts of items by task, kind and label; speed; the first errors."""
    say = messages(args.output, args.html)
    counts = Counter(
        (x.get("task"), kind, x["label"])
        for rec in out
        for kind in ("entities", "relations", "events")
        for x in rec.get(kind, [])
    )
    failed = [rec for rec in out if "error" in rec]
    print(f"{len(out)} records -> {args.output}" + (f" and {args.html}" if args.html else ""), file=say)
    if counts:
        rows = sorted(([t, k, lab, n] for (t, k, lab), n in counts.items()), key=lambda r: (r[1], -r[3], r[0], r[2]))
        table(rows, ["task", "kind", "label", "count"], say)
    print(
        f"{n_texts} texts through {n_models} model(s) in {seconds:.1f}s "
        f"({n_texts / max(seconds, 1e-9):.1f} texts/s); {len(failed)} records with errors",
        file=say,
    )
    for rec in failed[:20]:
        print(f"  line {rec['line']}: {rec['error']}", file=sys.stderr)
