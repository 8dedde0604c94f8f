#!/usr/bin/env python
"""Do the checkpoint hard links pay? A checkpoint of a model trained with ``--freeze-embeddings``
shares the frozen tensors' file with the previous checkpoint (a hard link) instead of writing it
again. This writes the same sequence of checkpoints with the link and with a forced copy, in
alternation, and reports seconds and bytes written per checkpoint -> docs/checkpoint_links.md.

    python bench/checkpoint_links.py [--encoder minilm-l6] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    import torch

    from gplinker import checkpoint
    from gplinker.extractor import Extractor, ModelSettings
    from gplinker.settings import TrainConfig
    from gplinker.tasks import NERTask, default_registry
    from gplinker.training import build_optimizer, warmup_linear_decay

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", default="minilm-l6")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "docs" / "checkpoint_links.md"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    docs = default_registry()["ner"].read(ROOT / "data" / "ner" / "en_train.jsonl")
    ex = Extractor.build(args.encoder, NERTask.from_documents(docs), ModelSettings(max_length=64), "cpu", seed=0)
    config = TrainConfig(max_steps=10, freeze_embeddings=True)
    optimizer = build_optimizer(ex.model, config)
    scheduler = warmup_linear_decay(optimizer, 10, 1)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    frozen_mb = sum(p.numel() * p.element_size() for p in ex.model.parameters() if not p.requires_grad) / 2**20
    real_link = checkpoint._link
    times: dict[str, list[float]] = {"linked": [], "copied": []}
    sizes: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for kind in ("linked", "copied") if r % 2 == 0 else ("copied", "linked"):
                out = Path(tmp) / kind
                checkpoint._link = real_link if kind == "linked" else (lambda src, dst: False)
                snap = checkpoint.snapshot(ex.model, optimizer, scheduler, scaler, {"step": r}, (3, (0,) * 625, None), None)
                checkpoint.write(out, snap)  # the previous checkpoint of this run: the frozen file exists
                t0 = time.perf_counter()
                checkpoint.write(out, snap)
                times[kind].append(time.perf_counter() - t0)
                total = sum(f.stat().st_size for f in (out / "checkpoint").iterdir())
                frozen = (out / "checkpoint" / checkpoint.FROZEN_FILE).stat().st_size
                sizes[kind] = (total - (frozen if kind == "linked" else 0)) / 2**20  # the linked file is not written
    checkpoint._link = real_link
    rows = [(k, statistics.median(v), sizes[k]) for k, v in times.items()]
    ratio = rows[1][1] / rows[0][1]
    table = [
        f"`python bench/checkpoint_links.py --encoder {args.encoder} --repeats {args.repeats}` on {platform.machine()}, "
        f"{os.cpu_count()} cores; a {args.encoder} NER model with the word embeddings frozen ({frozen_mb:.1f} MiB of "
        "frozen tensors); each checkpoint written after a previous one of the same run; medians, the two cases alternated.",
        "",
        "| frozen tensors | seconds per checkpoint | MiB written per checkpoint |",
        "|---|---:|---:|",
        *[f"| {k} | {t:.3f} | {mb:.1f} |" for k, t, mb in rows],
        "",
        f"Linking writes {ratio:.2f}x faster and {rows[1][2] - rows[0][2]:.1f} MiB less per checkpoint.",
    ]
    text = "# Checkpoint hard links: do they pay?\n\n" + "\n".join(table) + "\n"
    print(text)
    Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
