"""``gplinker calibrate``: how well the scores match accuracy on labelled data; a temperature
fitted there, saved with the model by ``--apply``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gplinker.cli.common import (
    BATCH_HELP,
    add_common,
    check_device,
    existing_file,
    messages,
    model_name,
    model_path,
    registry,
    setup_logging,
    writable_file,
)
from gplinker.cli.options import positive_int


def add_parser(sub, formatter, formats: str) -> argparse.ArgumentParser:
    c = sub.add_parser(
        "calibrate", help="measure how well scores match accuracy on labelled data; fit a temperature", formatter_class=formatter
    )
    c.add_argument("--model", required=True, help="a model directory")
    c.add_argument("--data", required=True, help="a labelled dev file (not the test set)")
    c.add_argument("--format", default="auto", help="dataset format, auto detects")
    c.add_argument("--floor", type=float, default=-3.0, help="cells down to this logit are measured (near-misses included)")
    c.add_argument("--plot", help="write a reliability diagram (PNG; needs matplotlib) here")
    c.add_argument("--output", help="write the measurements as JSON here")
    c.add_argument("--apply", action="store_true", help="save the fitted temperature with the model")
    c.add_argument("--batch-size", type=positive_int, default=32, help=BATCH_HELP)
    add_common(c)
    c.set_defaults(func=run)
    return c


def run(args: argparse.Namespace) -> int:
    """Reliability of the model's scores on labelled data; a temperature fitted there, saved with --apply."""
    data = existing_file(args.data, "--data")
    path = model_path(args.model)
    taken: dict[str, str] = {}
    for option in ("plot", "output"):
        if getattr(args, option):
            writable_file(getattr(args, option), f"--{option}", (data,), taken)
    check_device(args.device)
    setup_logging(None, args.verbose)
    say = messages(args.plot, args.output)
    from gplinker import calibration
    from gplinker.extractor import Extractor
    from gplinker.io import write_json

    ex = Extractor.from_pretrained(path, args.device, registry=registry())
    gold = registry()[ex.task.name].read(data, args.format)
    # T is fitted on one half of the documents and judged on the other; --apply saves T fitted on all
    fit_half = calibration.cell_outcomes(ex, gold[0::2], args.floor, args.batch_size)
    held_out = calibration.cell_outcomes(ex, gold[1::2], args.floor, args.batch_size)
    t = calibration.fit_temperature(fit_half)
    t_all = calibration.fit_temperature(fit_half + held_out)
    report = {"temperature_fitted_on_half": t, "temperature": t_all, "saved_temperature": ex.settings.temperature,
              "floor": args.floor, "heads": {}}  # fmt: skip
    print(
        f"cells with logit > {args.floor} per head, scored σ(2·logit / T). T fitted on half of the documents: {t:.3f}; "
        f"judged on the other half below. T fitted on all: {t_all:.3f} (saved with the model: {ex.settings.temperature:.3f})",
        file=say,
    )
    print(f"{'head':<12} {'cells':>7} {'right':>7} {'gold':>7} {'ECE T=1':>9} {'ECE T=fit':>10}   (held-out half)", file=say)
    curves = {}
    for o in held_out:
        p1, pt = calibration.probabilities(o.logits), calibration.probabilities(o.logits, t)
        e1, et = calibration.ece(p1, o.correct), calibration.ece(pt, o.correct)
        report["heads"][o.head] = {"cells": int(len(o.logits)), "right": int(o.correct.sum()), "gold": o.n_gold, "ece": e1,
                                   "ece_fitted": et, "reliability": calibration.reliability(p1, o.correct),
                                   "reliability_fitted": calibration.reliability(pt, o.correct)}  # fmt: skip
        print(f"{o.head:<12} {len(o.logits):>7} {int(o.correct.sum()):>7} {o.n_gold:>7} {e1:>9.4f} {et:>10.4f}", file=say)
        if len(o.logits):
            curves[f"{o.head}, T=1"] = (p1, o.correct)
            curves[f"{o.head}, T={t:.2f}"] = (pt, o.correct)
    if args.plot:
        calibration.plot(args.plot, curves, f"{model_name(str(path))}: {Path(args.data).name}, held-out half")
        print(f"reliability diagram: {args.plot}", file=say)
    if args.output:
        write_json(args.output, report)
    if args.apply:
        save_temperature(path, t_all, say)
    return 0


def save_temperature(path: Path, temperature: float, say) -> None:
    """Write the fitted temperature into the model's gplinker.json (atomically)."""
    from gplinker import model_dir
    from gplinker.atomic import write_text

    cfg_file = path / model_dir.CONFIG_NAME
    config = json.loads(cfg_file.read_text(encoding="utf-8"))
    config["temperature"] = temperature
    write_text(cfg_file, json.dumps(config, ensure_ascii=False, indent=2))
    print(f"temperature {temperature:.3f} saved in {cfg_file}: scores are now σ(2·logit / {temperature:.3f})", file=say)
