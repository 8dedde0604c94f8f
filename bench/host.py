"""The host's cost of prediction, measured with a near-free encoder (the CPU stand-in for GPU
throughput: when the device is fast, the Python around it sets the pace).

Models: untrained NER, relation and event models (CoNLL04's entity types and predicates, PHEE's
event schema) on a random 2-layer, 64-wide BERT with the MiniLM tokenizer, one thread. Texts:
CoNLL04 dev sentences x4 (924 texts) and the same sentences joined ten at a time into paragraphs.
Stages, ms per text, medians of 5 interleaved rounds:

- ``tokenizer``: the tokenizer's own batch call (offsets on);
- ``featurize``: ``Featurizer.windows`` (the tokenizer included);
- ``forward``: the tiny encoder and heads over the same windows and batches (positive cells out);
- ``predict``: ``Extractor.predict``, everything;
- ``overlapped``: ``Extractor.predict(overlap=True)``: featurisation of the next 256 texts and
  decoding of the last 256 on host threads while the forward runs (the default on a GPU);
- ``host``: predict - tokenizer - forward: what gplinker's Python costs per text (the issue's
  definition; a difference of noisy timings on a shared machine);
- ``host, direct``: predict with the model's outputs replayed (recorded once, returned in call
  order), minus the tokenizer: the same cost measured without the device in the timing.

    python bench/host.py [--data ../shared/datasets] [--repeat 3] [--profile relation]

writes the table to docs/performance.md (between ``<!-- host -->`` markers) and docs/host.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def tiny_encoder(out: Path) -> Path:
    """A random 2-layer, 64-wide BERT saved with the MiniLM tokenizer (the vocabulary of a real model)."""
    from bench.common import random_bert
    from gplinker.encoders import resolve_encoder

    return random_bert(resolve_encoder("minilm-l6"), out, hidden=64, layers=2, heads=2, intermediate=128)


def models(encoder: Path, data: Path) -> dict:
    from gplinker.extractor import Extractor
    from gplinker.settings import ModelSettings
    from gplinker.tasks import EventTask, NERTask, RelationTask, default_registry

    reg = default_registry()
    conll = reg["relation"].read(data / "conll04" / "train.json", "spert")
    phee = reg["event"].read(data / "phee" / "train.json", "phee") if (data / "phee" / "train.json").exists() else None
    if phee is None:
        phee = reg["event"].read(next((data / "phee").glob("train*")), "phee")
    settings = ModelSettings(max_length=128, stride=32)
    tasks = {
        "ner": NERTask.from_documents(conll),
        "relation": RelationTask.from_documents(conll),
        "event": EventTask.from_documents(phee),
    }
    return {name: Extractor.build(str(encoder), task, settings, "cpu", seed=1) for name, task in tasks.items()}


def texts_of(data: Path) -> dict[str, list[str]]:
    from gplinker.tasks import default_registry

    dev = [d.text for d in default_registry()["relation"].read(data / "conll04" / "dev.json", "spert")]
    sentences = dev * 4
    paragraphs = [" ".join(sentences[k : k + 10]) for k in range(0, len(sentences), 10)]
    return {"sentences": sentences, "paragraphs": paragraphs}


def forward_only(ex, windows, batch_size: int = 32) -> None:
    """The encoder and heads over the windows in predict's own plan (its batches, packed rows
    where predict packs), positive cells copied to numpy: the device's share, nothing else."""
    from gplinker.model import collate
    from gplinker.packing import collate_packed, position_offset

    thresholds = ex.link_thresholds()
    pack, rows, order, ranges = ex.forward_plan(windows, batch_size)
    with torch.no_grad():
        for b0, b1 in ranges:
            batch_rows = [rows[r] for r in order[b0:b1]]
            if pack:
                members = [k for r in batch_rows for k in r]
                local = {k: x for x, k in enumerate(members)}
                packed = collate_packed([windows[k] for k in members], [[local[k] for k in r] for r in batch_rows], ex.pad_id,
                                        position_offset(ex.model.encoder))  # fmt: skip
                t = packed.tensors
                cells = ex.model.positive_cells(t["input_ids"], t["attention_mask"], t["span_mask"], thresholds=thresholds,
                                                position_ids=t["position_ids"])  # fmt: skip
            else:
                batch = collate([windows[r[0]] for r in batch_rows], ex.pad_id)
                cells = ex.model.positive_cells(**batch.inputs(ex.device), thresholds=thresholds)
            for found, values in cells.values():
                found.cpu().numpy(), values.float().cpu().numpy()


def stages(ex, texts: list[str], repeat: int) -> dict[str, float]:
    """ms per text of each stage: the stages interleaved, one run of each per round, medians over
    ``repeat`` rounds (a noisy machine then slows every stage alike)."""
    ex.model.eval()
    windows = ex.featurizer.windows(texts)
    tok = ex.tokenizer
    fns = {
        "tokenizer": lambda: tok(texts, return_offsets_mapping=True, add_special_tokens=False),
        "featurize": lambda: ex.featurizer.windows(texts),
        "forward": lambda: forward_only(ex, windows),
        "predict": lambda: ex.predict(texts),
        "overlapped": lambda: ex.predict(texts, overlap=True),
        "replayed": replayed(ex, texts),
    }
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    row = {k: statistics.median(v) * 1000 / len(texts) for k, v in times.items()}
    row["host"] = row["predict"] - row["tokenizer"] - row["forward"]
    row["host_direct"] = row["replayed"] - row["tokenizer"]
    row["windows"] = len(windows)
    return row


def replayed(ex, texts: list[str]):
    """``predict`` with the device's work replayed: the model's positive cells recorded once, then
    returned in call order -- what is left is the host's work alone, measured directly instead of
    as a difference of two noisy timings."""
    real = ex.model.positive_cells
    recorded: list = []

    def record(*args, **kwargs):
        out = real(*args, **kwargs)
        recorded.append(out)
        return out

    ex.model.positive_cells = record
    ex.predict(texts)
    ex.model.positive_cells = real

    def run():
        it = iter(recorded)
        ex.model.positive_cells = lambda *a, **k: next(it)
        try:
            ex.predict(texts)
        finally:
            ex.model.positive_cells = real

    return run


def table(results: dict) -> str:
    lines = [
        "| model | texts | n | tokenizer | featurize | forward | predict | predict, overlapped | host (predict - tokenizer - forward) | **host, direct** (device replayed) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (model, kind), r in results.items():
        lines.append(
            f"| {model} | {kind} | {r['n']} | {r['tokenizer']:.3f} | {r['featurize']:.3f} | {r['forward']:.3f} | "
            f"{r['predict']:.3f} | {r['overlapped']:.3f} | {r['host']:.3f} | **{r['host_direct']:.3f}** |"
        )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets"))
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument(
        "--profile",
        choices=["ner", "relation", "event"],
        help="print a cProfile of this model's predict (device replayed) instead",
    )
    p.add_argument("--no-write", action="store_true", help="print only")
    args = p.parse_args()
    torch.set_num_threads(1)
    data = Path(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        ms = models(tiny_encoder(Path(tmp) / "enc"), data)
        texts = texts_of(data)
        if args.profile:
            import cProfile
            import pstats

            ex = ms[args.profile]
            run = replayed(ex, texts["sentences"])  # the host's work alone
            prof = cProfile.Profile()
            prof.enable()
            run()
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(40)
            return 0
        results = {}
        for name, ex in ms.items():
            for kind, ts in texts.items():
                ex.predict(ts[:50])  # warm-up
                results[(name, kind)] = {**stages(ex, ts, args.repeat), "n": len(ts)}
                print(name, kind, {k: round(v, 4) for k, v in results[(name, kind)].items()}, flush=True)
    md = table(results)
    print(md)
    if not args.no_write:
        write(md, results)
    return 0


def write(md: str, results: dict) -> None:
    from bench.common import replace_section
    from gplinker import atomic

    replace_section(
        ROOT / "docs" / "performance.md",
        "host",
        "### Host cost per text (near-free encoder, one thread)\n\n"
        "`python bench/host.py`: untrained models on a random 2-layer, 64-wide BERT with the MiniLM tokenizer; "
        "CoNLL04 dev sentences x4 and the same joined ten at a time; ms per text, medians of 5 interleaved rounds. "
        "**host, direct** is what gplinker's Python costs beyond the tokenizer's own call, measured with the "
        "device's outputs replayed. **predict, overlapped** runs featurisation and decoding on host threads beside "
        "the forward (`overlap=True`, the default on a GPU): on this 2-core machine the second core takes them.\n\n" + md,
    )
    atomic.write_text(ROOT / "docs" / "host.json", json.dumps({f"{m}/{k}": r for (m, k), r in results.items()}, indent=2) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
