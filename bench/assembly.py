#!/usr/bin/env python
"""Where do whole events (or triples) get lost? Decode a trained model's dev-set cells with one part
replaced by gold, and compare.

    python bench/assembly.py --model RUN/model --data DEV_FILE [--format auto]

For each document the model's character-level cells are mixed with the gold ones head by head
(`gplinker.alignment.gold_cells`): span heads (entities, event arguments) and link heads (GPLinker's
head-head and tail-tail links). Printed as a markdown table: the task's main level (events or
triples) P / R / F1 and the ratio of predicted to gold items, per mix.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gplinker.alignment import gold_cells  # noqa: E402
from gplinker.cells import DocumentCells  # noqa: E402
from gplinker.extractor import Extractor  # noqa: E402
from gplinker.structures import Document  # noqa: E402
from gplinker.tasks import default_registry  # noqa: E402
from gplinker.tasks import load as load_model  # noqa: E402

MIXES = [
    ("predicted spans, predicted links", False, False),
    ("gold spans, predicted links", True, False),
    ("predicted spans, gold links", False, True),
    ("gold spans, gold links (oracle)", True, True),
]


def diagnose(extractor: Extractor, gold: list[Document], batch_size: int = 32) -> list[dict]:
    task = extractor.task
    specs = task.head_specs()
    predicted = extractor.document_cells([d.text for d in gold], batch_size, progress=True)
    golds = [gold_cells(specs, task.targets(d)) for d in gold]
    level = "events" if task.name == "event" else "triples" if task.name == "relation" else "entities"
    count = (lambda d: len(d.events)) if task.name == "event" else (lambda d: len(d.relations))
    rows = []
    for name, gold_spans, gold_links in MIXES:
        docs = []
        for d, p, g in zip(gold, predicted, golds):
            heads = {s.name: (g if (gold_spans if s.axes == "span" else gold_links) else p)[s.name] for s in specs}
            docs.append(task.decode(Document(d.text, id=d.id), DocumentCells(heads, p.windows)))
        m = task.evaluate(gold, docs)
        n_pred, n_gold = sum(map(count, docs)), sum(map(count, gold))
        extra = {k: m[k]["f1"] for k in ("arguments", "triggers", "entities") if k in m and k != level}
        rows.append(
            {
                "mix": name,
                "precision": m[level]["precision"],
                "recall": m[level]["recall"],
                "f1": m[level]["f1"],
                "predicted_per_gold": n_pred / max(1, n_gold),
                **{f"{k}_f1": v for k, v in extra.items()},
            }
        )
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--format", default="auto")
    args = ap.parse_args()
    ex = load_model(args.model, device="cpu")
    gold = default_registry()[ex.task.name].read(args.data, args.format)
    rows = diagnose(ex, gold)
    keys = [k for k in rows[0] if k.endswith("_f1")]
    print(f"| mix | P | R | F1 | predicted / gold | {' | '.join(keys)} |")
    print("|---|---:|---:|---:|---:|" + "---:|" * len(keys))
    for r in rows:
        print(
            f"| {r['mix']} | {r['precision']:.4f} | {r['recall']:.4f} | **{r['f1']:.4f}** | {r['predicted_per_gold']:.2f} | "
            + " | ".join(f"{r[k]:.4f}" for k in keys)
            + " |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
