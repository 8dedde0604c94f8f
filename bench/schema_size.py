"""Texts per second against the size of the schema: GlobalPointer scores every label in the one
encoder pass, where prompt-based extractors (GLiNER's label prompts, one question per type in
MRC-style and LLM extractors) pay for every schema entry.

Untrained NER models with 5, 50 and 500 labels and relation models with 5, 50 and 200 predicates
(5 entity types), on MiniLM-L6 (CPU) or a given encoder, predict the same texts: CoNLL04 dev
sentences (x2). Medians of 3 interleaved rounds, one thread unless --threads.

    python bench/schema_size.py [--data ../shared/datasets] [--encoder minilm-l6] [--threads 1]

writes docs/performance.md (between ``<!-- schema -->`` markers) and docs/schema_size.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NER_SIZES = (5, 50, 500)
PREDICATE_SIZES = (5, 50, 200)


def build(encoder: str, kind: str, size: int):
    from gplinker.extractor import Extractor
    from gplinker.settings import ModelSettings
    from gplinker.tasks import NERTask, RelationTask

    task = (
        NERTask([f"T{k}" for k in range(size)])
        if kind == "ner"
        else RelationTask([f"E{k}" for k in range(5)], [f"P{k}" for k in range(size)])
    )
    return Extractor.build(encoder, task, ModelSettings(max_length=128, stride=32), "cpu", seed=1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets"))
    p.add_argument("--encoder", default="minilm-l6")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from gplinker.tasks import default_registry

    texts = [d.text for d in default_registry()["relation"].read(Path(args.data) / "conll04" / "dev.json", "spert")] * 2
    models = {
        (kind, n): build(args.encoder, kind, n)
        for kind, sizes in (("ner", NER_SIZES), ("relation", PREDICATE_SIZES))
        for n in sizes
    }
    for ex in models.values():
        ex.predict(texts[:64])  # warm-up
    times: dict = {k: [] for k in models}
    for _ in range(args.repeat):
        for key, ex in models.items():
            t0 = time.perf_counter()
            ex.predict(texts)
            times[key].append(time.perf_counter() - t0)
    rate = {k: len(texts) / statistics.median(v) for k, v in times.items()}
    rows = []
    for kind, sizes in (("ner", NER_SIZES), ("relation", PREDICATE_SIZES)):
        base = rate[(kind, sizes[0])]
        for n in sizes:
            rows.append((kind, n, rate[(kind, n)], rate[(kind, n)] / base))
    what = {"ner": "entity labels", "relation": "predicates (5 entity types)"}
    lines = ["| model | schema | texts/s | vs the smallest schema |", "|---|---:|---:|---:|"]
    lines += [f"| {kind} | {n} {what[kind]} | {r:.0f} | {x:.2f}x |" for kind, n, r, x in rows]
    md = "\n".join(lines)
    print(md)
    if not args.no_write:
        write(md, rows, args, len(texts))
    return 0


def write(md: str, rows, args, n_texts: int) -> None:
    from bench.common import replace_section
    from gplinker import atomic

    replace_section(
        ROOT / "docs" / "performance.md",
        "schema",
        "### Throughput against the size of the schema\n\n"
        f"`python bench/schema_size.py --encoder {args.encoder} --threads {args.threads}`: untrained models, "
        f"{n_texts} CoNLL04 dev sentences, texts/s (medians of {args.repeat} interleaved rounds, {args.threads} thread(s), "
        "2-core CPU). Every label is scored in the one encoder pass; a prompt-based extractor's cost grows "
        "with each schema entry it must encode or ask about.\n\n" + md,
    )
    out = [{"model": k, "schema": n, "texts_per_s": round(r, 1), "relative": round(x, 3)} for k, n, r, x in rows]
    atomic.write_text(ROOT / "docs" / "schema_size.json", json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
