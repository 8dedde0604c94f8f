"""Training curves: the loss and learning rates every ``log_every`` steps and the dev scores of
every evaluation, kept with the run (resumable), written as ``history.jsonl`` and drawn as
``curves.png`` with the chosen checkpoint marked; optionally mirrored to TensorBoard."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import torch

from gplinker import atomic
from gplinker.io import dumps

logger = logging.getLogger(__name__)

HISTORY, PICTURE, TENSORBOARD = "history.jsonl", "curves.png", "tensorboard"


class Recorder:
    """Collects training points (mean loss of the last ``every`` steps, the encoder's and the
    heads' learning rates) into ``points`` -- a list the caller keeps in its resumable state --
    and mirrors them and every evaluation to TensorBoard when ``tensorboard_dir`` is given."""

    def __init__(self, points: list[dict[str, Any]], every: int, tensorboard_dir: Path | None = None) -> None:
        self.points, self.every = points, every
        self.losses: list[float] = []
        self.tb = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:  # the tensorboard package is missing
                raise RuntimeError(
                    "--report-to tensorboard needs the tensorboard package: pip install 'gplinker[tensorboard]'"
                ) from e
            self.tb = SummaryWriter(str(tensorboard_dir))

    def step(self, step: int, epoch: int, loss: Any, lrs: Sequence[float]) -> None:
        """One optimizer step's loss (a float, or a 0-d tensor left on the device until the point is
        logged); ``lrs``: the optimizer groups' learning rates (encoder first, heads last)."""
        self.losses.append(loss)
        if step % self.every and step != 1:
            return
        mean = float(torch.stack([torch.as_tensor(x, dtype=torch.float32) for x in self.losses]).mean())  # one device read
        point = {"step": step, "epoch": epoch, "loss": mean, "lr": lrs[0], "head_lr": lrs[-1]}
        self.losses = []
        self.points.append(point)
        if self.tb is not None:
            self.tb.add_scalar("train/loss", point["loss"], step)
            self.tb.add_scalar("train/lr", point["lr"], step)
            self.tb.add_scalar("train/head_lr", point["head_lr"], step)

    def evaluation(self, entry: dict[str, Any]) -> None:
        if self.tb is not None:
            for level, s in (entry.get("dev") or {}).items():
                self.tb.add_scalar(f"dev/{level}_f1", s["f1"], entry["step"])
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def history_lines(points: Sequence[dict[str, Any]], evaluations: Sequence[dict[str, Any]], best_step: int | None) -> list[dict]:
    """``history.jsonl``'s records in step order: ``{"kind": "train", step, epoch, loss, lr,
    head_lr}`` and ``{"kind": "dev", step, epoch, loss, dev: {level: {precision, recall, f1}},
    best}`` (``best``: the evaluation whose model was kept)."""
    rows = [{"kind": "train", **p} for p in points]
    rows += [{"kind": "dev", **e, "best": e["step"] == best_step} for e in evaluations]
    return sorted(rows, key=lambda r: (r["step"], r["kind"] == "dev"))


def write(
    out: Path,
    points: Sequence[dict[str, Any]],
    evaluations: Sequence[dict[str, Any]],
    best_step: int | None,
    main_level: str,
    title: str = "",
) -> None:
    """Write ``out/history.jsonl`` and ``out/curves.png`` (atomically)."""
    rows = history_lines(points, evaluations, best_step)
    atomic.write_text(out / HISTORY, "".join(dumps(r) + "\n" for r in rows))
    atomic.write_bytes(out / PICTURE, plot(rows, main_level, title))


def plot(rows: Sequence[dict[str, Any]], main_level: str, title: str = "") -> bytes:
    """The PNG of the curves: training loss, learning rates, and dev F1 of every level against
    steps; the kept checkpoint marked on each panel."""
    import io

    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    train = [r for r in rows if r["kind"] == "train"]
    dev = [r for r in rows if r["kind"] == "dev" and r.get("dev")]
    best = next((r for r in dev if r["best"]), None)
    fig = Figure(figsize=(13, 3.8), dpi=110, layout="constrained")
    ax_loss, ax_lr, ax_f1 = fig.subplots(1, 3)
    steps = [r["step"] for r in train]
    ax_loss.plot(steps, [r["loss"] for r in train], color="#1f77b4", lw=1.2)
    ax_loss.set(title="training loss", xlabel="step", yscale="log" if train and min(r["loss"] for r in train) > 0 else "linear")
    ax_lr.plot(steps, [r["lr"] for r in train], color="#2ca02c")
    ax_lr.set_xlabel("step")
    ax_lr.set_ylabel("encoder", color="#2ca02c")
    ax_head = ax_lr.twinx()  # the heads' rate is usually 10-50x the encoder's: its own axis
    ax_head.plot(steps, [r["head_lr"] for r in train], color="#d62728", ls="--")
    ax_head.set_ylabel("heads", color="#d62728")
    ax_lr.set_title("learning rate")
    levels = list(dev[0]["dev"]) if dev else []
    for level in levels:
        ax_f1.plot([r["step"] for r in dev], [r["dev"][level]["f1"] for r in dev], marker="o", ms=3,
                   lw=2.2 if level == main_level else 1.0, label=level)  # fmt: skip
    ax_f1.set(title="dev F1" if dev else "dev F1 (no --dev given)", xlabel="step", ylim=(0, 1.02))
    if levels:
        ax_f1.legend(loc="upper left", fontsize=7, ncol=2)
    if best is not None:
        for ax in (ax_loss, ax_lr, ax_f1):
            ax.axvline(best["step"], color="#555555", ls=":", lw=1)
        f1 = best["dev"].get(main_level, {}).get("f1")
        if f1 is not None:
            ax_f1.plot([best["step"]], [f1], marker="*", ms=14, color="black", zorder=5)
            ax_f1.set_title(f"dev F1 (\u2605 kept: step {best['step']}, {main_level} {f1:.3f})")
    for ax in (ax_loss, ax_lr, ax_f1):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
