"""``gplinker evaluate``: score a saved model on a labelled file."""

from __future__ import annotations

import argparse
import time

from gplinker.cli.common import (
    add_common,
    add_model_options,
    apply_prediction_options,
    check_device,
    existing_file,
    load_extractor,
    messages,
    model_path,
    print_metrics,
    registry,
    setup_logging,
    writable_file,
)
from gplinker.cli.train import warn_label_overlap


def add_parser(sub, formatter, formats: str) -> argparse.ArgumentParser:
    e = sub.add_parser("evaluate", help="score a saved model on a labelled file", formatter_class=formatter)
    e.add_argument("--model", required=True, help="a model directory (DIR/model from train)")
    e.add_argument("--data", required=True, help="a labelled file")
    e.add_argument("--format", default="auto", help=f"dataset format, auto detects ({formats})")
    e.add_argument("--output", help="write the metrics as JSON here (-: standard output)")
    add_model_options(e, threshold=False)
    add_common(e)
    e.set_defaults(func=run)
    return e


def run(args: argparse.Namespace) -> int:
    data = existing_file(args.data, "--data")
    model_path(args.model)
    if args.output:
        writable_file(args.output, "--output", (data,))
    check_device(args.device)
    setup_logging(None, args.verbose)
    from gplinker.io import write_json

    say = messages(args.output)
    extractor = load_extractor(args.model, args)
    apply_prediction_options([extractor], args)
    gold = registry()[extractor.task.name].read(data, args.format)
    warn_label_overlap(extractor.task, gold)
    t0 = time.time()
    pred = extractor.predict(gold, args.batch_size, progress=True)
    metrics = extractor.task.evaluate(gold, pred)
    print_metrics(metrics, say)
    print(f"\n{len(gold)} documents in {time.time() - t0:.1f}s", file=say)
    if args.output:
        write_json(args.output, metrics)
    return 0
