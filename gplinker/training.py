"""A plain training loop: AdamW (separate head learning rate), warmup + linear decay, clipping,
gradient accumulation, fp32 / bf16 / fp16 autocast, dev evaluation each epoch or every N steps with
early stopping, the best model kept (saved atomically), resumable checkpoints, and data-parallel
training across processes (``torchrun``; see :mod:`gplinker.distributed`)."""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from gplinker import checkpoint, curves
from gplinker.alignment import AlignmentStats, TokenCells, align_targets
from gplinker.distributed import DistContext
from gplinker.extractor import PRECISIONS, Extractor  # noqa: F401 - PRECISIONS: where bench scripts import it
from gplinker.io import write_json
from gplinker.metrics import Metrics
from gplinker.model import Batch, collate
from gplinker.offsets import Window, windows_by_document
from gplinker.settings import TrainConfig
from gplinker.structures import Document

logger = logging.getLogger(__name__)


LINK_THRESHOLDS = (
    1.0,
    0.5,
    0.0,
    -0.5,
    -1.0,
    -1.5,
    -2.0,
    -3.0,
    -4.0,
    -5.0,
)  # logits tried for the link heads (both full-budget event runs chose -3, the old grid's edge; above 0
# for a model whose links over-fire)


def tune_link_threshold(
    extractor: Extractor, dev_docs: Sequence[Document], batch_size: int = 32, candidates: Sequence[float] = LINK_THRESHOLDS
) -> tuple[float, dict[float, dict[str, Any]]]:
    """The link heads' decision threshold (a logit) with the best main dev F1, and every
    candidate's metrics. Missing links split one event into several cliques (and lose triples);
    a lower link threshold trades link precision for recall, so it is chosen on dev. The model runs
    once: cells are extracted at the lowest candidate and filtered for the others. Ties go to the
    candidate nearest 0 (the multilabel loss's own threshold). Where the task has a
    ``count_band`` (events: 0.8-1.25 predicted per gold), only candidates inside it are considered
    when any is, so a lower F1 without fragments wins over a higher one with them. Sets
    ``extractor.settings``."""
    from gplinker.cells import DocumentCells

    task = extractor.task
    links = {s.name for s in task.head_specs() if s.axes != "span"}
    extractor.settings.link_threshold = min(candidates)
    cells = extractor.document_cells([d.text for d in dev_docs], batch_size)
    results: dict[float, dict[str, Any]] = {}
    for t in candidates:
        pred = [
            task.decode(
                Document(d.text, id=d.id),
                DocumentCells(
                    {name: hc.select(hc.logits > t) if name in links else hc for name, hc in c.heads.items()}, c.windows
                ),
            )
            for d, c in zip(dev_docs, cells)
        ]
        results[t] = task.evaluate(dev_docs, pred)
    pool = list(candidates)
    band = task.count_band
    if band is not None:  # prefer thresholds whose structures number about as many as gold's
        within = [t for t in candidates if band[0] <= count_ratio(results[t], task.main_level) <= band[1]]
        pool = within or pool
    chosen = max(pool, key=lambda t: (main_f1(results[t], task.main_level), -abs(t)))
    extractor.settings.link_threshold = chosen
    return chosen, results


def count_ratio(metrics: dict[str, Any], main_level: str) -> float:
    """Predicted / gold items of the main level (events per gold event, triples per gold triple)."""
    return Metrics(metrics, main_level).count_ratio


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


def main_f1(metrics: dict[str, Any], main_level: str) -> float:
    """The main level's F1 (the task names it: ``Task.main_level``) is the model-selection score."""
    return Metrics(metrics, main_level).f1


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
    by_doc = windows_by_document(windows, len(docs))
    specs = extractor.task.head_specs()
    stats = AlignmentStats()
    targets: list[TokenCells] = [{} for _ in windows]
    for d, ks in zip(docs, by_doc):
        placed = align_targets(specs, d, extractor.task.targets(d), [windows[k] for k in ks], extractor.settings.align, stats)  # type: ignore[arg-type]
        for k, cells in zip(ks, placed):
            targets[k] = cells
    return windows, targets, stats


def build_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with the encoder at ``lr`` (no decay on biases and norms) and the heads at ``head_lr``;
    the fused implementation where the parameters' device has it (CPU and CUDA do)."""
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
    groups = [g for g in groups if g["params"]]
    try:  # one fused kernel per step instead of a loop over tensors (HF Trainer's default since torch 2.8)
        return torch.optim.AdamW(groups, fused=True)
    except (RuntimeError, TypeError, ValueError):  # a device or dtype without the fused kernel
        return torch.optim.AdamW(groups)


class _LossModule(torch.nn.Module):
    """The training loss as a module's forward, so DistributedDataParallel's hooks run as designed."""

    def __init__(self, model: torch.nn.Module, factorized: bool) -> None:
        super().__init__()
        self.model, self.factorized = model, factorized

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, span_mask: torch.Tensor, labels: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        return self.model.training_loss(input_ids, attention_mask, span_mask, labels, self.factorized)[0]


def train_step(
    extractor: Extractor,
    loss_module: torch.nn.Module,
    group: Sequence[Batch | tuple[Sequence[Window], Sequence[TokenCells]]],
    config: TrainConfig,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
) -> torch.Tensor:
    """One optimizer step over ``group`` (grad_accum batches of this process's windows, collated
    already or as (windows, targets)); returns the mean loss as a 0-d tensor on the device, not
    read: the host waits for the device only when it logs. Gradients are synchronised across
    processes on the group's last batch only."""
    device, specs = extractor.device, extractor.task.head_specs()
    dtype = PRECISIONS[config.precision]
    total = torch.zeros((), device=device)
    for k, item in enumerate(group):
        batch = item if isinstance(item, Batch) else collate(item[0], extractor.pad_id, specs, item[1])
        labels = batch.labels_on(device)
        last = k == len(group) - 1
        sync = contextlib.nullcontext() if last or not hasattr(loss_module, "no_sync") else loss_module.no_sync()
        with sync:
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = loss_module(**batch.inputs(device), labels=labels)
            scaler.scale(loss / len(group) if len(group) > 1 else loss).backward()
        total = total + loss.detach().float() / len(group)  # () on the device
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(extractor.model.parameters(), config.max_grad_norm)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return total


def dev_scores(metrics: dict[str, Any]) -> dict[str, dict[str, float]]:
    """P/R/F1 of every level of a metrics dict."""
    return {k: {m: v[m] for m in ("precision", "recall", "f1")} for k, v in metrics.items() if isinstance(v, dict) and "f1" in v}


def _mean_f1(metrics: dict[str, Any] | None) -> float:
    """The mean F1 over a metrics dict's levels (-1 for none): the tie-break of model selection."""
    f1s = [v["f1"] for v in dev_scores(metrics).values()] if metrics else []
    return sum(f1s) / len(f1s) if f1s else -1.0


class _Best:
    """The best evaluation so far, its weights kept in memory to restore at the end."""

    def __init__(self) -> None:
        self.f1, self.metrics, self.epoch, self.step = -1.0, None, None, None
        self.state: dict[str, torch.Tensor] | None = None
        self.since = 0  # evaluations since the last improvement

    def offer(self, f1: float, metrics: dict[str, Any], epoch: int, step: int, model: torch.nn.Module) -> bool:
        """Keep this evaluation when its main F1 is higher, or equal with a higher mean F1 over all
        levels: a run whose main level is still 0 (no whole event right yet) keeps its latest,
        better arguments and triggers rather than its first evaluation."""
        if (f1, _mean_f1(metrics)) <= (self.f1, _mean_f1(self.metrics)):
            self.since += 1
            return False
        self.f1, self.metrics, self.epoch, self.step, self.since = f1, metrics, epoch, step, 0
        self.state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        return True

    def to_json(self) -> dict[str, Any]:
        return {"f1": self.f1, "metrics": self.metrics, "epoch": self.epoch, "step": self.step}


def _step_shares(batch: list[int], accum: int, ctx: DistContext) -> list[list[int]]:
    """This process's micro-batches of one optimizer step: the step's length-bucketed batch split
    into ``accum`` contiguous micro-batches, each split into contiguous per-process shares. A
    micro-batch too small to give every process a share is left out (on every process alike)."""
    m = math.ceil(len(batch) / accum)
    out = []
    for micro in (batch[i * m : (i + 1) * m] for i in range(accum)):
        if len(micro) < ctx.world:
            continue
        size = math.ceil(len(micro) / ctx.world)
        out.append(micro[ctx.rank * size : (ctx.rank + 1) * size])
    return out


@dataclass
class TrainState:
    """Where a training run stands: what a checkpoint saves and ``--resume`` restores."""

    step: int = 0
    epoch: int = 1  # the epoch to run next (or running)
    position: int = 0  # the next batch group of that epoch
    history: list = field(default_factory=list)
    curve: list = field(default_factory=list)  # training points of the curves (:class:`gplinker.curves.Recorder`)
    best: _Best = field(default_factory=_Best)
    started: float = field(default_factory=time.time)  # moved back by the seconds of a resumed run
    stop: bool = False

    def progress(self, epoch: int, position: int) -> dict[str, Any]:
        """The JSON a checkpoint keeps, the next step at ``epoch``, batch group ``position``."""
        return {
            "step": self.step,
            "epoch": epoch,
            "position": position,
            "history": self.history,
            "curve": self.curve,
            "seconds": time.time() - self.started,
            "best": {**self.best.to_json(), "since": self.best.since},
        }


@dataclass
class _Run:
    """The fixed parts of one training run: data, optimisation, schedule and where it writes."""

    extractor: Extractor
    config: TrainConfig
    ctx: DistContext
    out: Path | None
    windows: list[Window]
    targets: list
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    loss_module: torch.nn.Module
    rng: random.Random  # the batch order
    step_batch: int  # windows per optimizer step, all processes together
    total: int  # optimizer steps in all
    epochs: int
    dev_docs: Sequence[Document] | None
    on_epoch: Callable[[int, dict], None] | None
    recorder: curves.Recorder | None = None  # rank 0 with an output directory


def train(
    extractor: Extractor,
    train_docs: Sequence[Document],
    dev_docs: Sequence[Document] | None,
    config: TrainConfig,
    output_dir: str | Path | None = None,
    on_epoch: Callable[[int, dict], None] | None = None,
) -> dict[str, Any]:
    """Train ``extractor`` in place; save the best model (by dev F1) to ``output_dir/model``.

    Under ``torchrun`` every process runs this with the same arguments: each takes its share of
    every global batch (``batch_size`` per process), gradients are all-reduced, rank 0 alone
    evaluates, logs and writes, and every process ends on the same best model. Returns a summary:
    best dev metrics, epoch/step of the best, steps, seconds, alignment statistics.
    """
    set_seed(config.seed)
    ctx = DistContext.from_env(extractor.device)
    windows, targets, stats = _training_data(extractor, train_docs, ctx)
    out = Path(output_dir) if output_dir is not None else None
    if (config.resume or config.save_every) and out is None:
        raise ValueError("checkpoints need an output directory")
    run = _prepare(extractor, config, ctx, out, windows, targets, dev_docs, on_epoch)
    extractor.info.update(train_documents=len(train_docs), dev_documents=len(dev_docs or []))
    state = _resume(run) if config.resume else TrainState()
    state.stop = state.step >= run.total
    if out is not None and ctx.is_main:
        tensorboard = out / curves.TENSORBOARD if config.report_to == "tensorboard" else None
        run.recorder = curves.Recorder(state.curve, config.log_every, tensorboard)
    try:
        with checkpoint.BackgroundWriter() as writer:  # checkpoints are written while the next steps run
            for epoch in range(state.epoch, run.epochs + 1):
                if state.stop:
                    break
                _train_epoch(run, state, epoch, writer)
    finally:
        if run.recorder is not None:
            run.recorder.close()
    if state.best.state is not None and state.best.step != state.step and ctx.is_main:  # the best evaluation, as saved
        extractor.model.load_state_dict(state.best.state)
        logger.info("restored the best model (epoch %s, step %s)", state.best.epoch, state.best.step)
    tuned = _tune_links(run, state.best) if ctx.is_main else None
    ctx.broadcast_module(extractor.model)  # every process ends on rank 0's (best) model ...
    best_json, history = ctx.broadcast_object((state.best.to_json(), state.history))  # ... and knows what rank 0 measured
    tuned = ctx.broadcast_object(tuned)
    summary = {
        "best": best_json,
        "history": history,
        "steps": state.step,
        "seconds": round(time.time() - state.started, 1),
        "train_windows": len(windows),
        "alignment": asdict(stats),
        "config": asdict(config),
        "processes": ctx.world,
        "link_threshold": tuned,
    }
    if out is not None and ctx.is_main:
        write_json(out / "train_summary.json", summary)
        _draw(extractor, state, out)
    ctx.barrier()
    return summary


def _draw(extractor: Extractor, state: TrainState, out: Path) -> None:
    """``history.jsonl`` and ``curves.png`` of the run (a failure to draw never loses the model)."""
    title = f"{extractor.task.name} · {extractor.info.get('encoder') or ''} · {state.step} steps"
    try:
        curves.write(out, state.curve, state.history, state.best.step, extractor.task.main_level, title)
    except Exception as e:  # noqa: BLE001 - the model is saved; the picture is a report of it
        logger.warning(
            "could not draw %s (%s: %s); the model and %s are saved", curves.PICTURE, type(e).__name__, e, "train_summary.json"
        )
        return
    logger.info("training curves: %s (and %s)", out / curves.PICTURE, out / curves.HISTORY)


def _training_data(extractor: Extractor, train_docs: Sequence[Document], ctx: DistContext):
    """The training windows and targets (logged with their alignment statistics); a temperature
    fitted on other weights (``--init-from`` a calibrated model) is reset, no longer true."""
    if extractor.settings.temperature != 1.0:
        logger.info(
            "temperature %.3f reset to 1: it was fitted on the weights this training changes; run calibrate again",
            extractor.settings.temperature,
        )
        extractor.settings.temperature = 1.0
    windows, targets, stats = training_windows(extractor, train_docs)
    if ctx.is_main:
        logger.info("training data: %d documents, %d windows; %s", len(train_docs), len(windows), stats.summary())
        for ex in stats.examples:
            logger.info("  e.g. %s", ex)
    return windows, targets, stats


def _prepare(
    extractor: Extractor,
    config: TrainConfig,
    ctx: DistContext,
    out: Path | None,
    windows: list[Window],
    targets: list,
    dev_docs: Sequence[Document] | None,
    on_epoch: Callable[[int, dict], None] | None,
) -> _Run:
    """The optimizer, the schedule over the steps the data and config give, the loss module
    (wrapped for DDP under torchrun) and the batch-order generator."""
    optimizer = build_optimizer(extractor.model, config)
    step_batch = config.batch_size * config.grad_accum * ctx.world
    steps_per_epoch = max(1, len(windows) // step_batch + (len(windows) % step_batch >= ctx.world))
    total = config.max_steps if config.max_steps is not None else steps_per_epoch * config.epochs  # max_steps wins, as in HF
    scheduler = warmup_linear_decay(optimizer, total, int(total * config.warmup_ratio))
    scaler = torch.amp.GradScaler(extractor.device.type, enabled=config.precision == "fp16")
    loss_module: torch.nn.Module = _LossModule(extractor.model, config.factorized_loss)
    if ctx.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ids = [extractor.device.index] if extractor.device.type == "cuda" else None
        loss_module = DistributedDataParallel(loss_module, device_ids=ids)
    epochs = max(1, config.epochs) if config.max_steps is None else math.ceil(total / max(1, steps_per_epoch))
    return _Run(
        extractor,
        config,
        ctx,
        out,
        windows,
        targets,
        optimizer,
        scheduler,
        scaler,
        loss_module,
        random.Random(config.seed),
        step_batch,
        total,
        epochs,
        dev_docs,
        on_epoch,
    )


def _resume(run: _Run) -> TrainState:
    """The state of the run checkpointed in ``run.out``: weights, optimizer, schedule, scaler and
    every random state restored, the batch order at the start of its epoch."""
    progress, epoch_rng_state, best_state = checkpoint.load(
        run.out, run.extractor.model, run.optimizer, run.scheduler, run.scaler
    )
    state = TrainState(
        step=progress["step"],
        epoch=progress["epoch"],
        position=progress["position"],
        history=progress["history"],
        curve=progress.get("curve", []),
    )
    best = state.best
    best.f1, best.metrics, best.epoch, best.step, best.since = (
        progress["best"][k] for k in ("f1", "metrics", "epoch", "step", "since")
    )
    best.state = best_state
    run.rng.setstate(epoch_rng_state)
    state.started -= progress.get("seconds", 0.0)
    if run.ctx.is_main:
        logger.info(
            "resumed from %s at step %d (epoch %d, batch group %d)",
            run.out / checkpoint.CHECKPOINT_DIR,
            state.step,
            state.epoch,
            state.position,
        )
    return state


def _train_epoch(run: _Run, state: TrainState, epoch: int, writer: checkpoint.BackgroundWriter) -> None:
    """One epoch from ``state.position``: steps, evaluations when due, checkpoints when due."""
    run.extractor.model.train()
    epoch_rng_state = run.rng.getstate()
    lengths = [len(w) for w in run.windows]
    groups = [
        shares
        for b in length_bucketed_batches(lengths, run.step_batch, run.rng)
        if (shares := _step_shares(b, run.config.grad_accum, run.ctx))
    ]
    bar = tqdm(
        total=min(len(groups), run.total - state.step + state.position) - state.position,
        desc=f"epoch {epoch}/{run.epochs}",
        unit="step",
        disable=not run.ctx.is_main,
    )
    running = None
    with _Prefetch(run, groups) as batches:
        for g in range(state.position, len(groups)):
            lrs = run.scheduler.get_last_lr()  # the rates this step uses
            value = train_step(
                run.extractor, run.loss_module, batches.take(g), run.config, run.optimizer, run.scheduler, run.scaler
            )
            running = _end_step(run, state, epoch, value, lrs, running, bar, g == len(groups) - 1)
            if run.config.save_every and state.step % run.config.save_every == 0 and run.ctx.is_main:
                _checkpoint(run, state, epoch, g, g == len(groups) - 1, epoch_rng_state, writer)
            if state.stop:
                break
    bar.close()
    state.position = 0


class _Prefetch:
    """Collates the next step's batches on a host thread while the current step runs."""

    def __init__(self, run: _Run, groups: list) -> None:
        self.run, self.groups = run, groups
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="gplinker-collate")
        self.ahead: dict[int, Future] = {}

    def _collate(self, g: int) -> list[Batch]:
        run, specs = self.run, self.run.extractor.task.head_specs()
        return [
            collate([run.windows[k] for k in share], run.extractor.pad_id, specs, [run.targets[k] for k in share])
            for share in self.groups[g]
        ]

    def take(self, g: int) -> list[Batch]:
        """Step ``g``'s batches; step ``g + 1``'s start collating now."""
        batches = (self.ahead.pop(g, None) or self.pool.submit(self._collate, g)).result()
        if g + 1 < len(self.groups):
            self.ahead[g + 1] = self.pool.submit(self._collate, g + 1)
        return batches

    def __enter__(self) -> "_Prefetch":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _end_step(run: _Run, state: TrainState, epoch: int, value, lrs, running, bar, epoch_done: bool):
    """Count the step, record it, show the loss at log points, evaluate when due; the running loss."""
    state.step += 1
    if run.recorder is not None:
        run.recorder.step(state.step, epoch, value, lrs)
    running = value if running is None else 0.9 * running + 0.1 * value  # () on the device
    bar.update(1)
    if state.step % run.config.log_every == 0:  # the progress bar's read of the loss, at log points only
        bar.set_postfix(loss=f"{float(running):.4f}")
    _after_step(run, state, epoch, running, epoch_done)
    return running


def _checkpoint(run: _Run, state: TrainState, epoch: int, g: int, epoch_done: bool, epoch_rng_state, writer) -> None:
    """A resumable snapshot after batch group ``g``, written in the background."""
    nxt = (epoch + 1, 0, run.rng.getstate()) if epoch_done else (epoch, g + 1, epoch_rng_state)
    snap = checkpoint.snapshot(
        run.extractor.model,
        run.optimizer,
        run.scheduler,
        run.scaler,
        state.progress(nxt[0], nxt[1]),
        nxt[2],
        state.best.state,
    )
    writer.submit(run.out, snap)


def _after_step(run: _Run, state: TrainState, epoch: int, running: torch.Tensor, epoch_done: bool) -> None:
    """Evaluate when due (every ``eval_every`` steps, else at the end of each epoch, and at the
    last step); set ``state.stop`` at the last step or when patience runs out."""
    config = run.config
    due = state.step % config.eval_every == 0 if config.eval_every else epoch_done
    if not (due or state.step >= run.total):
        return
    stopped = _evaluate(
        run.extractor,
        run.dev_docs,
        config,
        run.ctx,
        state.best,
        state.history,
        run.out,
        epoch,
        state.step,
        running,
        state.started,
    )
    state.stop = stopped or state.step >= run.total
    if run.recorder is not None:
        run.recorder.evaluation(state.history[-1])
    run.extractor.model.train()
    if run.on_epoch is not None and run.ctx.is_main:
        run.on_epoch(epoch, state.history[-1])


def _tune_links(run: _Run, best: _Best) -> dict[str, Any] | None:
    """Choose the link heads' threshold on dev (relations, events), record it, save the model again."""
    extractor, config = run.extractor, run.config
    if not (run.dev_docs and config.tune_link_threshold and any(s.axes != "span" for s in extractor.task.head_specs())):
        return None
    chosen, by_threshold = tune_link_threshold(extractor, run.dev_docs, config.eval_batch_size)
    tuned = {
        "chosen": chosen,
        "dev_f1": {str(t): main_f1(m, extractor.task.main_level) for t, m in by_threshold.items()},
        "dev_count_ratio": {str(t): round(count_ratio(m, extractor.task.main_level), 4) for t, m in by_threshold.items()},
    }
    logger.info(
        "link threshold chosen on dev: %+.1f (F1 / predicted per gold: %s)",
        chosen,
        ", ".join(f"{t}: {f:.4f} / {tuned['dev_count_ratio'][t]:.2f}" for t, f in tuned["dev_f1"].items()),
    )
    if best.metrics is not None:
        best.metrics = by_threshold[chosen]
    extractor.info.update(dev_scores=dev_scores(by_threshold[chosen]), link_threshold_dev_f1=tuned["dev_f1"])
    if run.out is not None:
        extractor.save_pretrained(run.out / "model")
    return tuned


def _evaluate(
    extractor: Extractor,
    dev_docs: Sequence[Document] | None,
    config: TrainConfig,
    ctx: DistContext,
    best: _Best,
    history: list,
    out: Path | None,
    epoch: int,
    step: int,
    running: torch.Tensor | float | None,
    t0: float,
) -> bool:
    """Rank 0 evaluates, keeps and saves the best model, writes progress; every rank learns whether
    to stop (patience). Returns the stop decision."""
    stop = False
    if ctx.is_main:
        running = None if running is None else float(running)
        entry: dict[str, Any] = {"epoch": epoch, "step": step, "loss": running, "seconds": round(time.time() - t0, 1)}
        improved = True
        if dev_docs:
            metrics = extractor.task.evaluate(dev_docs, extractor.predict(dev_docs, config.eval_batch_size, progress=True))
            entry["dev"] = dev_scores(metrics)
            logger.info(
                "epoch %d step %d loss %.4f dev %s",
                epoch,
                step,
                running or 0.0,
                ", ".join(f"{k} f1={v['f1']:.4f}" for k, v in entry["dev"].items()),
            )
            improved = best.offer(main_f1(metrics, extractor.task.main_level), metrics, epoch, step, extractor.model)
            if improved:
                extractor.info.update(dev_scores=entry["dev"], best_epoch=epoch, best_step=step)
            stop = bool(config.patience and best.since >= config.patience)
            if stop:
                logger.info("no dev improvement for %d evaluations: stopping at step %d", best.since, step)
        if improved and out is not None:
            extractor.save_pretrained(out / "model")
        history.append(entry)
        if out is not None:  # progress so far, readable while training runs
            write_json(
                out / "train_progress.json",
                {"best": {k: v for k, v in best.to_json().items() if k != "metrics"}, "history": history},
            )
    stop = ctx.broadcast_object(stop)
    ctx.barrier()
    return stop
