"""A plain training loop: AdamW (separate head learning rate), warmup + linear decay, clipping,
dev evaluation after each epoch, best model kept (saved atomically)."""
from __future__ import annotations

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

from gplinker.alignment import AlignmentStats, TokenCells, align_targets
from gplinker.extractor import Extractor
from gplinker.io import write_json
from gplinker.model import collate
from gplinker.offsets import Window
from gplinker.structures import Document

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


def main_f1(metrics: dict[str, Any]) -> float:
    """The first level's F1 is the model-selection score (tasks order their levels)."""
    for level in metrics.values():
        if isinstance(level, dict) and "f1" in level:
            return float(level["f1"])
    return 0.0


def length_bucketed_batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
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


def training_windows(extractor: Extractor, docs: Sequence[Document]) -> tuple[list[Window], list[TokenCells], AlignmentStats]:
    """Every window of ``docs`` with its token-level targets, and what alignment did to the gold."""
    windows = extractor.featurizer.windows([d.text for d in docs])
    by_doc: list[list[int]] = [[] for _ in docs]
    for k, w in enumerate(windows):
        by_doc[w.doc_index].append(k)
    specs = extractor.task.head_specs()
    stats = AlignmentStats()
    targets: list[TokenCells] = [{} for _ in windows]
    for d, ks in zip(docs, by_doc):
        placed = align_targets(specs, d, extractor.task.targets(d), [windows[k] for k in ks],
                               extractor.settings.align, stats)  # type: ignore[arg-type]
        for k, cells in zip(ks, placed):
            targets[k] = cells
    return windows, targets, stats


def build_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with the encoder at ``lr`` (no decay on biases and norms) and the heads at ``head_lr``."""
    if config.freeze_embeddings:
        model.encoder.get_input_embeddings().weight.requires_grad_(False)
    head_params = list(model.heads.parameters())
    enc_named = [(n, p) for n, p in model.encoder.named_parameters() if p.requires_grad]
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
    groups = [
        {"params": [p for n, p in enc_named if not n.endswith(no_decay)], "lr": config.lr, "weight_decay": config.weight_decay},
        {"params": [p for n, p in enc_named if n.endswith(no_decay)], "lr": config.lr, "weight_decay": 0.0},
        {"params": head_params, "lr": config.head_lr, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]])


def train_step(extractor: Extractor, windows: Sequence[Window], targets: Sequence[TokenCells], config: TrainConfig,
               optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler) -> float:
    """One optimizer step on a batch of windows; returns the loss."""
    model, device = extractor.model, extractor.device
    batch = collate(windows, extractor.pad_id, extractor.task.head_specs(), targets)
    labels = {k: v.to(device) for k, v in batch.pop("labels").items()}
    loss, _ = model.training_loss(**{k: v.to(device) for k, v in batch.items()}, labels=labels,
                                  factorized=config.factorized_loss)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def dev_scores(metrics: dict[str, Any]) -> dict[str, dict[str, float]]:
    """P/R/F1 of every level of a metrics dict."""
    return {k: {m: v[m] for m in ("precision", "recall", "f1")} for k, v in metrics.items() if isinstance(v, dict) and "f1" in v}


class _Best:
    """The best evaluation so far, its weights kept in memory to restore at the end."""

    def __init__(self) -> None:
        self.f1, self.metrics, self.epoch, self.step = -1.0, None, None, None
        self.state: dict[str, torch.Tensor] | None = None

    def offer(self, f1: float, metrics: dict[str, Any], epoch: int, step: int, model: torch.nn.Module) -> bool:
        if f1 <= self.f1:
            return False
        self.f1, self.metrics, self.epoch, self.step = f1, metrics, epoch, step
        self.state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        return True

    def to_json(self) -> dict[str, Any]:
        return {"f1": self.f1, "metrics": self.metrics, "epoch": self.epoch, "step": self.step}


def train(extractor: Extractor, train_docs: Sequence[Document], dev_docs: Sequence[Document] | None,
          config: TrainConfig, output_dir: str | Path | None = None,
          on_epoch: Callable[[int, dict], None] | None = None) -> dict[str, Any]:
    """Train ``extractor`` in place; save the best model (by dev F1) to ``output_dir/model``.

    Returns a summary: best dev metrics, epoch/step of the best, steps, seconds, alignment stats.
    """
    set_seed(config.seed)
    task, model = extractor.task, extractor.model
    windows, targets, stats = training_windows(extractor, train_docs)
    logger.info("training data: %d documents, %d windows; %s", len(train_docs), len(windows), stats.summary())
    for ex in stats.examples:
        logger.info("  e.g. %s", ex)

    optimizer = build_optimizer(model, config)
    steps_per_epoch = math.ceil(len(windows) / config.batch_size)
    total = config.max_steps if config.max_steps is not None else steps_per_epoch * config.epochs  # max_steps wins, as in HF
    scheduler = warmup_linear_decay(optimizer, total, int(total * config.warmup_ratio))
    rng = random.Random(config.seed)
    lengths = [len(w) for w in windows]
    out = Path(output_dir) if output_dir is not None else None
    extractor.info.update(train_documents=len(train_docs), dev_documents=len(dev_docs or []))
    best, history = _Best(), []
    step, t0 = 0, time.time()
    epochs = max(1, config.epochs) if config.max_steps is None else math.ceil(total / max(1, steps_per_epoch))
    for epoch in range(1, epochs + 1):
        model.train()
        batches = length_bucketed_batches(lengths, config.batch_size, rng)
        bar = tqdm(batches, desc=f"epoch {epoch}/{epochs}", unit="batch", total=min(len(batches), total - step))
        running = None
        for idx in bar:
            value = train_step(extractor, [windows[k] for k in idx], [targets[k] for k in idx], config, optimizer, scheduler)
            step += 1
            running = value if running is None else 0.9 * running + 0.1 * value
            bar.set_postfix(loss=f"{running:.4f}")
            if step >= total:
                break
        bar.close()
        entry: dict[str, Any] = {"epoch": epoch, "step": step, "loss": running, "seconds": round(time.time() - t0, 1)}
        improved = True
        if dev_docs:
            metrics = task.evaluate(dev_docs, extractor.predict(dev_docs, config.eval_batch_size, progress=True))
            entry["dev"] = dev_scores(metrics)
            logger.info("epoch %d step %d loss %.4f dev %s", epoch, step, running or 0.0,
                        ", ".join(f"{k} f1={v['f1']:.4f}" for k, v in entry["dev"].items()))
            improved = best.offer(main_f1(metrics), metrics, epoch, step, model)
            if improved:
                extractor.info.update(dev_scores=entry["dev"], best_epoch=epoch, best_step=step)
        if improved and out is not None:
            extractor.save_pretrained(out / "model")
        history.append(entry)
        if out is not None:  # progress so far, readable while training runs
            write_json(out / "train_progress.json", {"best": {k: v for k, v in best.to_json().items() if k != "metrics"},
                                                     "history": history})
        if on_epoch is not None:
            on_epoch(epoch, entry)
        if step >= total:
            break
    if best.state is not None and best.step != step:  # leave the extractor at its best epoch, as saved
        model.load_state_dict(best.state)
        logger.info("restored the best model (epoch %s, step %s)", best.epoch, best.step)
    summary = {"best": best.to_json(), "history": history, "steps": step, "seconds": round(time.time() - t0, 1),
               "train_windows": len(windows), "alignment": asdict(stats), "config": asdict(config)}
    if out is not None:
        write_json(out / "train_summary.json", summary)
    return summary
