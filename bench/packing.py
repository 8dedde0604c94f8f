#!/usr/bin/env python
"""Packed prediction rows vs padded batches, in one process, on the same texts and model.

    python bench/packing.py [--model DIR] [--texts 960] [--repeats 3] [--batch 32]

Rows: offline prediction of every text at once (windows sorted over the whole input), and a
server's micro-batches (the texts in random order, ``--batch`` at a time, as `gplinker serve`
gathers them from concurrent clients), each with windows packed into rows
(:mod:`gplinker.packing`) and with one padded row per window. Repeats are interleaved; the
median is reported. Writes docs/packing.md and docs/packing.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.serve import ensure_model, texts_for_bench  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="a saved model directory (default: the serving bench's NER model)")
    ap.add_argument("--texts", type=int, default=960)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32, help="micro-batch size and forward batch limit")
    ap.add_argument("--out", default=str(ROOT / "docs" / "packing"))
    args = ap.parse_args()

    import torch

    from gplinker.atomic import write_text
    from gplinker.tasks import load as load_model

    torch.set_num_threads(max(1, torch.get_num_threads()))
    ex = load_model(ensure_model(args.model), device="cpu")
    texts = texts_for_bench(args.texts)
    shuffled = texts[:]
    random.Random(0).shuffle(shuffled)
    micro = [shuffled[b : b + args.batch] for b in range(0, len(shuffled), args.batch)]

    def offline(pack: bool | None) -> None:
        ex.window_cells(ex.featurizer.windows(texts), args.batch, pack=pack)

    def server(pack: bool | None) -> None:
        for batch in micro:
            ex.window_cells(ex.featurizer.windows(batch), args.batch, pack=pack)

    settings = {"offline, all texts": offline, f"micro-batches of {args.batch} in random order": server}
    modes = {"padded": False, "packed": True, "default (estimated cheaper)": None}
    cases = {(name, mode): (lambda fn=fn, pack=pack: fn(pack)) for name, fn in settings.items() for mode, pack in modes.items()}
    for fn in cases.values():  # warm-up: the first forward calls pay one-off costs
        fn()
    times: dict = {k: [] for k in cases}
    keys = list(cases)
    for r in range(args.repeats):
        for key in keys[r % len(keys) :] + keys[: r % len(keys)]:  # each repeat starts elsewhere: no case always follows another
            fn = cases[key]
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)

    windows = ex.featurizer.windows(texts)
    tokens = sum(len(w) for w in windows)
    rows = []
    for setting in settings:
        rate = {mode: len(texts) / statistics.median(times[(setting, mode)]) for mode in modes}
        rows.append(
            {
                "setting": setting,
                **{f"{mode} texts/s": round(v, 1) for mode, v in rate.items()},
                "packed / padded": round(rate["packed"] / rate["padded"], 3),
                "default / padded": round(rate["default (estimated cheaper)"] / rate["padded"], 3),
            }
        )
    result = {
        "model": str(args.model or "runs/bench_serve/model"),
        "texts": len(texts),
        "windows": len(windows),
        "tokens": tokens,
        "batch": args.batch,
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
        "command": "python bench/packing.py " + " ".join(sys.argv[1:]),
        "rows": rows,
    }
    lines = [
        "# Packed prediction rows",
        "",
        f"{len(texts)} CoNLL04 dev sentences ({len(windows)} windows, {tokens} tokens), "
        f"model `{result['model']}`, forward batches of at most {args.batch} rows; texts/s, median of "
        f"{args.repeats} interleaved runs ({result['machine']}). Reproduce: `{result['command'].strip()}`.",
        "",
        "| setting | padded | packed | default (packed where estimated cheaper) | packed / padded | default / padded |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['setting']} | {r['padded texts/s']} | {r['packed texts/s']} | {r['default (estimated cheaper) texts/s']} | "
        f"{r['packed / padded']:.2f}x | {r['default / padded']:.2f}x |"
        for r in rows
    ]
    table = "\n".join(lines) + "\n"
    print(table)
    write_text(Path(args.out + ".md"), table)
    write_text(Path(args.out + ".json"), json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
