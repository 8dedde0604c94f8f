#!/usr/bin/env python
"""GPU benchmark (#12) -> docs/scaling_gpu.md/json: a BERT-base-sized training step in fp32, bf16
and fp16, side by side with a plain Hugging Face token-classification loop on the same encoder,
windows and batches, and one-GPU prediction throughput. Run it alone on the GPU.

    python bench/gpu.py --tokenizer DIR [--data ../shared/datasets] [--steps 40] [--batch 32] [--length 128]

The encoder is BERT-base-sized (12 layers, hidden 768, 12 heads, FFN 3072) and randomly
initialised in-process, so nothing is downloaded; speed does not depend on the weights' values.
``--tokenizer`` is any local encoder directory whose tokenizer fits the corpus (CLUENER, Chinese).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _base_encoder(tokenizer_dir: str, out: Path) -> Path:
    """A randomly initialised BERT-base-sized encoder saved with the given tokenizer."""
    from bench.common import random_bert

    return random_bert(tokenizer_dir, out, hidden=768, layers=12, heads=12, intermediate=3072)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(step, batches: list, device: str) -> tuple[float, float]:
    """(steps/s, peak GPU MiB) of ``step(batch)`` over ``batches``, timed on a second pass.

    The first, untimed pass over the very same batches is the warm-up: length-bucketed batches
    come in many shapes, and cuDNN attention builds an execution plan the first time it meets a
    shape (and dtype). Timing the first pass measured plan building, not steps (bf16 at 3.8 steps/s
    on a first pass, 18.6 on the second, in the same process)."""
    import torch

    cuda = device.startswith("cuda")
    for b in batches:
        step(b)
    _sync(device)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for b in batches:
        step(b)
    _sync(device)
    return len(batches) / (time.perf_counter() - t0), (torch.cuda.max_memory_allocated() / 2**20 if cuda else 0.0)


def _ner_extractor(encoder: Path, docs, args):
    """An untrained nested-NER model on ``encoder``, windows of ``args.length`` tokens."""
    from gplinker.extractor import Extractor, ModelSettings
    from gplinker.tasks import NEROptions, NERTask

    return Extractor.build(
        str(encoder),
        NERTask.from_documents(docs, NEROptions("nested")),
        ModelSettings(max_length=args.length, stride=args.length // 4),
        args.device,
        seed=42,
    )


def gplinker_rows(encoder: Path, docs, args) -> list[dict]:
    import torch

    from gplinker.training import (
        TrainConfig,
        _LossModule,
        build_optimizer,
        length_bucketed_batches,
        train_step,
        training_windows,
        warmup_linear_decay,
    )

    rows = []
    for precision in ("fp32", "bf16", "fp16"):
        ex = _ner_extractor(encoder, docs, args)
        cfg = TrainConfig(max_steps=2 * args.steps, batch_size=args.batch, lr=2e-5, head_lr=1e-3, precision=precision)
        windows, targets, _ = training_windows(ex, docs)
        optimizer = build_optimizer(ex.model, cfg)
        scheduler = warmup_linear_decay(optimizer, cfg.max_steps, 1)
        scaler = torch.amp.GradScaler(ex.device.type, enabled=precision == "fp16")
        loss_module = _LossModule(ex.model, cfg.factorized_loss)
        batches = length_bucketed_batches([len(w) for w in windows], args.batch, random.Random(42))[: args.steps]
        ex.model.train()

        def step(idx):
            train_step(
                ex, loss_module, [([windows[k] for k in idx], [targets[k] for k in idx])], cfg, optimizer, scheduler, scaler
            )

        sps, mem = _timed(step, batches, args.device)
        rows.append(
            {
                "run": f"gplinker train step, {precision}",
                "steps_per_s": sps,
                "windows_per_s": sps * args.batch,
                "peak_gpu_mib": mem,
            }
        )
        print(f"  {rows[-1]['run']}: {sps:.2f} steps/s, {mem:.0f} MiB", flush=True)
        del ex, optimizer, loss_module
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    return rows


def predict_rows(encoder: Path, docs, args) -> list[dict]:
    """One-GPU prediction, texts/s: fp32 and bf16, with the host stages overlapped (the default on a
    GPU) and without, batch 64 and 256; decoding included."""

    ex = _ner_extractor(encoder, docs, args)
    texts = [d.text for d in docs[: args.predict_texts]]
    rows = []
    for precision in ("fp32", "bf16"):
        ex.set_precision(precision)
        for batch in (64, 256):
            for overlap in (False, True):
                for _ in range(2):  # warm-up pass, then the timed one
                    _sync(args.device)
                    t0 = time.perf_counter()
                    ex.predict(texts, batch_size=batch, overlap=overlap)
                    _sync(args.device)
                tps = len(texts) / (time.perf_counter() - t0)
                run = f"gplinker predict, {precision}, batch {batch}, {'overlapped' if overlap else 'serial'} (texts/s)"
                rows.append({"run": run, "texts_per_s": tps, "texts": len(texts)})
                print(f"  {run}: {tps:.1f}", flush=True)
    return rows


def hf_rows(encoder: Path, docs, args) -> list[dict]:
    """The plain Hugging Face loop: AutoModelForTokenClassification, BIO tags, same windows and batches."""
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from bench.token_baseline import bio_labels, collate, train_step, window_tags
    from gplinker.offsets import Featurizer
    from gplinker.training import PRECISIONS, length_bucketed_batches, warmup_linear_decay

    tokenizer = AutoTokenizer.from_pretrained(encoder)
    names = bio_labels(sorted({s.label for d in docs for s in d.entities}))
    windows = Featurizer(tokenizer, args.length, args.length // 4).windows([d.text for d in docs])
    tags = [window_tags(docs[w.doc_index], w, {t: k for k, t in enumerate(names)})[0] for w in windows]
    rows = []
    for precision in ("fp32", "bf16"):
        torch.manual_seed(42)
        model = AutoModelForTokenClassification.from_pretrained(encoder, num_labels=len(names)).to(args.device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5)
        scheduler = warmup_linear_decay(optimizer, 2 * args.steps, 1)
        batches = length_bucketed_batches([len(w) for w in windows], args.batch, random.Random(42))[: args.steps]
        dtype = PRECISIONS[precision]
        model.train()

        def step(idx):
            batch = {
                k: v.to(args.device)
                for k, v in collate([windows[k] for k in idx], tokenizer.pad_token_id, [tags[k] for k in idx]).items()
            }
            train_step(model, batch, optimizer, scheduler, dtype)  # the loss stays on the device, as gplinker's does between logs

        sps, mem = _timed(step, batches, args.device)
        rows.append(
            {
                "run": f"HF AutoModelForTokenClassification loop, {precision}",
                "steps_per_s": sps,
                "windows_per_s": sps * args.batch,
                "peak_gpu_mib": mem,
            }
        )
        print(f"  {rows[-1]['run']}: {sps:.2f} steps/s, {mem:.0f} MiB", flush=True)
        del model, optimizer
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    return rows


def write(rows: list[dict], args, device: str, out: Path) -> None:
    import torch
    import transformers

    hf32 = {r["length"]: r["steps_per_s"] for r in rows if r["run"].startswith("HF") and r["run"].endswith("fp32")}
    lines = [
        "# Scaling on one GPU",
        "",
        f"Device: {device}; torch {torch.__version__}, transformers {transformers.__version__}, {platform.machine()}. "
        f"Command: `python bench/gpu.py --tokenizer DIR --steps {args.steps} --batch {args.batch} --lengths "
        f"{' '.join(map(str, args.lengths))}`.",
        "",
        f"Encoder: BERT-base-sized (12 layers, hidden 768, 12 heads, FFN 3072, {args.vocab} word pieces), randomly "
        f"initialised; CLUENER train windows of {args.length} tokens, batch {args.batch}, nested NER with Efficient "
        f"GlobalPointer; each row trains {args.steps} length-bucketed batches untimed (warm-up: cuDNN builds a plan per new "
        f"batch shape), then the same {args.steps} batches timed, one row after the other on an otherwise idle GPU. "
        "Each step is the real one (`gplinker.training.train_step`: collate, forward, factorised loss, backward, "
        "clipping, AdamW, scheduler). The Hugging Face loop trains a linear BIO head on the same encoder, windows and batches.",
        "",
        "| run | tokens | steps/s | windows/s | peak GPU MiB | vs HF loop fp32 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "steps_per_s" in r:
            lines.append(
                f"| {r['run']} | {r['length']} | {r['steps_per_s']:.2f} | {r['windows_per_s']:.0f} | {r['peak_gpu_mib']:.0f} | "
                f"{r['steps_per_s'] / hf32[r['length']]:.2f}x |"
            )
    lines += [
        "",
        "One-GPU prediction (`Extractor.predict`, an untrained nested-NER model on the encoder above, windows of "
        f"{args.predict_length} tokens, decoding included), texts/s on CLUENER texts:",
        "",
        "| run | texts/s |",
        "|---|---:|",
        *(f"| {r['run']} | **{r['texts_per_s']:.0f}** |" for r in rows if "texts_per_s" in r),
        "",
    ]
    out.mkdir(parents=True, exist_ok=True)
    (out / "scaling_gpu.md").write_text("\n".join(lines), encoding="utf-8")
    (out / "scaling_gpu.json").write_text(json.dumps({"device": device, "args": vars(args), "rows": rows}, indent=2))
    print("\n".join(lines))


def main() -> int:
    import torch

    from gplinker.tasks import default_registry

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer", required=True, help="local encoder directory whose tokenizer is used")
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets"))
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--length", type=int, default=128, help="window length of the prediction rows")
    p.add_argument("--lengths", type=int, nargs="+", default=[128, 256], help="window lengths of the training rows")
    p.add_argument("--docs", type=int, default=4000, help="CLUENER training documents to draw windows from")
    p.add_argument("--predict-texts", type=int, default=2000)
    p.add_argument("--out", default=str(ROOT / "docs"))
    p.add_argument("--device", default="cuda", help="cuda (the benchmark); cpu only to smoke-test this script")
    args = p.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: this benchmark needs a GPU (--device cpu only smoke-tests the script)", file=sys.stderr)
        return 2
    device = (
        torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU ({platform.processor() or platform.machine()})"
    )
    docs = default_registry()["ner"].read(Path(args.data) / "cluener" / "train.json")[: args.docs]
    with tempfile.TemporaryDirectory() as tmp:
        encoder = _base_encoder(args.tokenizer, Path(tmp) / "bert-base-sized")
        from transformers import AutoConfig

        args.vocab = AutoConfig.from_pretrained(encoder).vocab_size
        args.predict_length = args.length
        rows = predict_rows(encoder, docs, args)
        for length in args.lengths:  # training: the step against the HF loop at each window length
            args.length = length
            rows += [{**r, "length": length} for r in gplinker_rows(encoder, docs, args) + hf_rows(encoder, docs, args)]
    write(rows, args, device, Path(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
