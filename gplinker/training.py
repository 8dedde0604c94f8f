"""A plain training loop: AdamW (separate head learning rate), warmup + linear decay, clipping,
dev evaluation after each epoch, best checkpoint kept."""
from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from gplinker.model import collate
from gplinker.pipeline import Extractor
from gplinker.structures import Document
from gplinker.task import AlignmentReport

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Hyper-parameters of :func:`train`."""

    epochs: int = 3
    max_steps: int | None = None  # train exactly this many optimizer steps, overriding epochs (as in HF)
    batch_size: int = 16
    lr: float = 2e-5  # encoder
    head_lr: float = 1e-3  # GlobalPointer heads, freshly initialised
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    seed: int = 42
    eval_batch_size: int = 32
    freeze_embeddings: bool = False  # keep the word-embedding matrix fixed (cheaper on CPU)
    factorized_loss: bool = True  # Efficient GlobalPointer: loss without the [B, H, n, n] logits


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def warmup_linear_decay(optimizer: torch.optim.Optimizer, total: int, warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Learning rates rise linearly over ``warmup`` steps, then fall linearly to 0 at ``total``."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _main_f1(metrics: dict[str, Any]) -> float:
    """The first level's F1 is the model-selection score (tasks order their levels)."""
    for level in metrics.values():
        if isinstance(level, dict) and "f1" in level:
            return float(level["f1"])
    return 0.0


def _batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar-length windows: sort inside chunks of 50 batches, shuffle batches."""
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    chunk = batch_size * 50
    out = []
    for c0 in range(0, len(idx), chunk):
        part = sorted(idx[c0 : c0 + chunk], key=lambda k: lengths[k])
        out += [part[b : b + batch_size] for b in range(0, len(part), batch_size)]
    rng.shuffle(out)
    return out


def train(extractor: Extractor, train_docs: Sequence[Document], dev_docs: Sequence[Document] | None,
          config: TrainConfig, output_dir: str | Path | None = None,
          on_epoch: Callable[[int, dict], None] | None = None) -> dict[str, Any]:
    """Train ``extractor`` in place; save the best model (by dev F1) to ``output_dir/model``.

    Returns a summary: best dev metrics, epoch/step of the best, steps, seconds, alignment report.
    """
    set_seed(config.seed)
    task, model, device = extractor.task, extractor.model, extractor.device
    specs = task.head_specs()

    windows = extractor.featurizer.windows([d.text for d in train_docs])
    report = AlignmentReport()
    policy = extractor.settings.align
    targets = [task.targets(train_docs[w.doc_index], w, policy) for w in windows]
    by_doc: list[list] = [[] for _ in train_docs]
    for w in windows:
        by_doc[w.doc_index].append(w)
    for d, ws in zip(train_docs, by_doc):
        task.check_alignment(d, ws, policy, report)
    logger.info("training data: %d documents, %d windows; %s", len(train_docs), len(windows), report.summary())
    for ex in report.examples:
        logger.info("  e.g. %s", ex)

    if config.freeze_embeddings:
        emb = model.encoder.get_input_embeddings()
        emb.weight.requires_grad_(False)
    head_params = list(model.heads.parameters())
    enc_named = [(n, p) for n, p in model.encoder.named_parameters() if p.requires_grad]
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
    groups = [
        {"params": [p for n, p in enc_named if not n.endswith(no_decay)], "lr": config.lr, "weight_decay": config.weight_decay},
        {"params": [p for n, p in enc_named if n.endswith(no_decay)], "lr": config.lr, "weight_decay": 0.0},
        {"params": head_params, "lr": config.head_lr, "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]])
    steps_per_epoch = math.ceil(len(windows) / config.batch_size)
    total = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total = config.max_steps  # overrides epochs, as Hugging Face's Trainer does
    warmup = int(total * config.warmup_ratio)

    scheduler = warmup_linear_decay(optimizer, total, warmup)
    rng = random.Random(config.seed)
    lengths = [len(w) for w in windows]
    model_dir = Path(output_dir) / "model" if output_dir is not None else None
    best: dict[str, Any] = {"f1": -1.0, "metrics": None, "epoch": None, "step": None}
    history = []
    best_state: dict[str, torch.Tensor] | None = None
    step, t0 = 0, time.time()
    epochs = max(1, config.epochs) if config.max_steps is None else math.ceil(total / max(1, steps_per_epoch))
    for epoch in range(1, epochs + 1):
        model.train()
        batches = _batches(lengths, config.batch_size, rng)
        bar = tqdm(batches, desc=f"epoch {epoch}/{epochs}", unit="batch", total=min(len(batches), total - step))
        running = None
        for idx in bar:
            batch = collate([windows[k] for k in idx], extractor.pad_id, specs, [targets[k] for k in idx])
            labels = {k: v.to(device) for k, v in batch.pop("labels").items()}
            loss, _ = model.training_loss(**{k: v.to(device) for k, v in batch.items()}, labels=labels,
                                          factorized=config.factorized_loss)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            value = float(loss.detach())
            running = value if running is None else 0.9 * running + 0.1 * value
            bar.set_postfix(loss=f"{running:.4f}")
            if step >= total:
                break
        bar.close()
        entry: dict[str, Any] = {"epoch": epoch, "step": step, "loss": running, "seconds": round(time.time() - t0, 1)}
        if dev_docs:
            pred = extractor.predict(dev_docs, config.eval_batch_size, progress=True)
            metrics = task.evaluate(dev_docs, pred)
            entry["dev"] = {k: {m: v[m] for m in ("precision", "recall", "f1")} for k, v in metrics.items() if isinstance(v, dict) and "f1" in v}
            f1 = _main_f1(metrics)
            logger.info("epoch %d step %d loss %.4f dev %s", epoch, step, running or 0.0,
                        ", ".join(f"{k} f1={v['f1']:.4f}" for k, v in entry["dev"].items()))
            if f1 > best["f1"]:
                best.update(f1=f1, metrics=metrics, epoch=epoch, step=step)
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
                if model_dir is not None:
                    extractor.save_pretrained(model_dir)
        elif model_dir is not None:
            extractor.save_pretrained(model_dir)
        history.append(entry)
        if output_dir is not None:  # progress so far, readable while training runs
            progress = {"best": {k: best[k] for k in ("f1", "epoch", "step")}, "history": history}
            (Path(output_dir) / "train_progress.json").write_text(json.dumps(progress, indent=2), encoding="utf-8")
        if on_epoch is not None:
            on_epoch(epoch, entry)
        if step >= total:
            break
    if best_state is not None and best["step"] != step:  # leave the extractor at its best epoch, as saved
        model.load_state_dict(best_state)
        logger.info("restored the best model (epoch %s, step %s)", best["epoch"], best["step"])
    summary = {"best": best, "history": history, "steps": step, "seconds": round(time.time() - t0, 1),
               "train_windows": len(windows), "alignment": {k: v for k, v in asdict(report).items()},
               "config": asdict(config)}
    if output_dir is not None:
        (Path(output_dir) / "train_summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
    return summary
