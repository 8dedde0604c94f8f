#!/usr/bin/env python
"""The flat-NER baseline a user would otherwise pick: Hugging Face ``AutoModelForTokenClassification``
with BIO tags, trained with gplinker's own recipe (same windows, optimizer groups, schedule,
clipping, batches, dev evaluation each epoch) so that only the head and decoding differ.

Entities are decoded from the tags by the conlleval rules seqeval uses by default (an ``I-X``
that does not continue an ``X`` chunk starts a new one) and scored by gplinker's exact-match
(label, start, end) micro F1 on character offsets, the same scorer the GlobalPointer rows use.

    python bench/token_baseline.py --train ../shared/datasets/cluener/train.json \\
        --dev ../shared/datasets/cluener/dev.json --encoder me5-small --trim-vocab train \\
        --max-steps 300 --batch-size 16 --lr 5e-5 --head-lr 1e-3 --max-length 128 --output runs/x
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gplinker.model import collate as gplinker_collate  # noqa: E402
from gplinker.offsets import (  # noqa: E402
    Featurizer,
    Window,
    WindowIndex,
    align_span,
    token_span_to_chars,
    touches_cut,
    windows_by_document,
)
from gplinker.structures import Document, Span  # noqa: E402
from gplinker.tasks import default_registry, ner  # noqa: E402
from gplinker.training import length_bucketed_batches, main_f1, set_seed, warmup_linear_decay  # noqa: E402

logger = logging.getLogger("token_baseline")
IGNORE = -100


def bio_labels(labels: Sequence[str]) -> list[str]:
    return ["O"] + [f"{p}-{lab}" for lab in labels for p in ("B", "I")]


def window_tags(doc: Document, window: Window, tag_index: dict[str, int]) -> tuple[list[int], int]:
    """BIO tag id per position (IGNORE off content); returns tags and the number of spans that
    could not be tagged because they overlap an earlier one (nested gold)."""
    tags = np.full(len(window), IGNORE, dtype=np.int64)  # (n,)
    tags[window.content] = 0
    taken = np.zeros(len(window), dtype=bool)
    clashes = 0
    for s in sorted(doc.entities, key=lambda s: (s.start, -s.end)):
        ij = align_span(window, s.start, s.end, "expand")
        if ij is None:
            continue
        i, j = ij
        pos = window.content[(window.content >= i) & (window.content <= j)]
        if taken[pos].any():
            clashes += 1
            continue
        taken[pos] = True
        tags[pos[0]] = tag_index[f"B-{s.label}"]
        tags[pos[1:]] = tag_index[f"I-{s.label}"]
    return tags.tolist(), clashes


def chunks(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(label, first, last) chunks of a BIO sequence, conlleval / seqeval default rules."""
    out, cur = [], None
    for k, t in enumerate(list(tags) + ["O"]):
        prefix, _, lab = t.partition("-")
        continues = cur is not None and prefix == "I" and lab == cur[0]
        if cur is not None and not continues:
            out.append((cur[0], cur[1], k - 1))
            cur = None
        if prefix in ("B", "I") and not continues:
            cur = (lab, k)
    return out


def decode(doc: Document, windows: Sequence[Window], tag_rows: Sequence[np.ndarray], names: list[str]) -> Document:
    """Entities of one document from the per-window argmax tags."""
    index = WindowIndex(windows)
    spans = set()
    for k, (w, row) in enumerate(zip(windows, tag_rows)):
        pos = w.content
        for lab, a, b in chunks([names[t] for t in row[pos]]):
            i, j = int(pos[a]), int(pos[b])
            start, end = token_span_to_chars(w, i, j)
            if touches_cut(w, i, j) and index.held_elsewhere(k, (start, end)):
                continue
            spans.add(Span(start, end, lab))
    return doc.with_annotations(entities=tuple(sorted(spans)))


def collate(windows: Sequence[Window], pad_id: int, tags: Sequence[list[int]] | None = None) -> dict[str, torch.Tensor]:
    """gplinker's padding (ids and attention mask), plus (B, n) tag labels, IGNORE on padding."""
    batch = gplinker_collate(windows, pad_id)
    out = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
    if tags is not None:
        n = out["input_ids"].shape[1]
        out["labels"] = torch.tensor([t + [IGNORE] * (n - len(t)) for t in tags], dtype=torch.long)  # (B, n)
    return out


def train_step(model, batch: dict[str, torch.Tensor], optimizer, scheduler, dtype: torch.dtype | None = None) -> torch.Tensor:
    """One step of the plain Hugging Face loop (forward, backward, clipping at 1, AdamW, scheduler),
    under autocast to ``dtype`` when given; returns the loss."""
    device_type = next(model.parameters()).device.type
    with torch.autocast(device_type, dtype=dtype, enabled=dtype is not None):
        loss = model(**batch).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


@torch.no_grad()
def predict(
    model, featurizer: Featurizer, pad_id: int, docs: Sequence[Document], names: list[str], batch_size: int = 32
) -> list[Document]:
    model.eval()
    windows = featurizer.windows([d.text for d in docs])
    order = sorted(range(len(windows)), key=lambda k: len(windows[k]))
    rows: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * len(windows)
    for b0 in range(0, len(order), batch_size):
        idx = order[b0 : b0 + batch_size]
        batch = collate([windows[k] for k in idx], pad_id)
        pred = model(**batch).logits.argmax(-1).numpy()  # (B, n)
        for r, k in enumerate(idx):
            rows[k] = pred[r]
    by_doc = windows_by_document(windows, len(docs))
    model.train()
    return [
        decode(Document(text=d.text, id=d.id), [windows[k] for k in ks], [rows[k] for k in ks], names)
        for d, ks in zip(docs, by_doc)
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", required=True)
    p.add_argument("--dev", required=True)
    p.add_argument("--format", default="auto")
    p.add_argument("--encoder", required=True)
    p.add_argument("--trim-vocab", choices=["none", "train", "train+dev"], default="none")
    p.add_argument("--output", required=True)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--head-lr", type=float, default=1e-3)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--stride", type=int, default=64)
    p.add_argument("--max-train-docs", type=int, default=None)
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args(argv)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[logging.StreamHandler(), logging.FileHandler(out / "train.log")],
        force=True,
    )
    for noisy in ("transformers", "httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from gplinker.encoders import resolve_encoder, trim_vocabulary

    train_docs = default_registry()["ner"].read(args.train, args.format)[: args.max_train_docs]
    dev_docs = default_registry()["ner"].read(args.dev, args.format)
    labels = sorted({s.label for d in train_docs for s in d.entities})
    names = bio_labels(labels)
    tag_index = {t: k for k, t in enumerate(names)}
    path = resolve_encoder(args.encoder)
    if args.trim_vocab != "none":
        texts = [d.text for d in train_docs] + ([d.text for d in dev_docs] if args.trim_vocab == "train+dev" else [])
        path = str(trim_vocabulary(path, texts, out / "trimmed_encoder"))
    tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True)
    set_seed(args.seed)  # the classifier layer is initialised here
    model = AutoModelForTokenClassification.from_pretrained(
        path, num_labels=len(names), id2label=dict(enumerate(names)), label2id=tag_index
    ).float()
    featurizer = Featurizer(tokenizer, args.max_length, args.stride)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    windows = featurizer.windows([d.text for d in train_docs])
    tagged = [window_tags(train_docs[w.doc_index], w, tag_index) for w in windows]
    tags = [t for t, _ in tagged]
    clashes = sum(c for _, c in tagged)
    logger.info(
        "%d documents, %d windows, %d BIO tags; %d gold spans left untagged (overlap an earlier one)",
        len(train_docs),
        len(windows),
        len(names),
        clashes,
    )
    head = [p_ for n, p_ in model.named_parameters() if n.startswith("classifier")]
    enc = [(n, p_) for n, p_ in model.named_parameters() if not n.startswith("classifier")]
    no_decay = ("bias", "LayerNorm.weight")
    optimizer = torch.optim.AdamW(
        [
            {"params": [p_ for n, p_ in enc if not n.endswith(no_decay)], "lr": args.lr, "weight_decay": 0.01},
            {"params": [p_ for n, p_ in enc if n.endswith(no_decay)], "lr": args.lr, "weight_decay": 0.0},
            {"params": head, "lr": args.head_lr, "weight_decay": 0.0},
        ]
    )
    steps_per_epoch = math.ceil(len(windows) / args.batch_size)
    total = steps_per_epoch * args.epochs if args.max_steps is None else args.max_steps
    scheduler = warmup_linear_decay(optimizer, total, int(total * 0.1))
    rng = random.Random(args.seed)
    lengths = [len(w) for w in windows]
    best = {"f1": -1.0, "metrics": None, "epoch": None, "step": None}
    history = []
    step, t0 = 0, time.time()
    model.train()
    for epoch in range(1, math.ceil(total / steps_per_epoch) + 1):
        bar = tqdm(length_bucketed_batches(lengths, args.batch_size, rng), desc=f"epoch {epoch}", unit="batch")
        for idx in bar:
            loss = train_step(model, collate([windows[k] for k in idx], pad_id, [tags[k] for k in idx]), optimizer, scheduler)
            step += 1
            bar.set_postfix(loss=f"{float(loss):.4f}")
            if step >= total:
                break
        bar.close()
        pred = predict(model, featurizer, pad_id, dev_docs, names)
        metrics = ner.NERTask(labels, "nested").evaluate(dev_docs, pred)
        f1 = main_f1(metrics, ner.NERTask.main_level)
        history.append(
            {
                "epoch": epoch,
                "step": step,
                "seconds": round(time.time() - t0, 1),
                "dev": {k: {m: v[m] for m in ("precision", "recall", "f1")} for k, v in metrics.items()},
            }
        )
        logger.info("epoch %d step %d dev entities f1=%.4f", epoch, step, f1)
        if f1 > best["f1"]:
            best.update(f1=f1, metrics=metrics, epoch=epoch, step=step)
        if step >= total:
            break
    summary = {
        "best": best,
        "history": history,
        "steps": step,
        "seconds": round(time.time() - t0, 1),
        "train_windows": len(windows),
        "untagged_gold_spans": clashes,
        "config": vars(args),
    }
    (out / "train_summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
    print(f"trained {step} steps in {summary['seconds']:.0f}s; best dev entity F1 {best['f1']:.4f} (epoch {best['epoch']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
