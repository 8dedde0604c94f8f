"""Resumable training checkpoints, as data: safetensors for tensors, JSON for everything else.

``DIR/checkpoint/`` holds the model weights, the optimizer's state tensors and its parameter
groups, the scheduler and gradient-scaler states, every random number generator's state (Python,
NumPy, torch, and the generator of the batch order as it was at the start of the epoch), the
step, and the position in the epoch's batch order. It is written atomically
(:func:`gplinker.atomic.atomic_directory`), so a crash leaves the previous complete checkpoint.
Nothing in it is pickled. Training takes a :func:`snapshot` (host copies) at the step and a
:class:`BackgroundWriter` writes it while the next steps run.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from gplinker.atomic import atomic_directory

CHECKPOINT_DIR = "checkpoint"
FROZEN_FILE = "frozen.safetensors"  # parameters that do not train, kept apart so an unchanged file can be shared


def _random_state_to_json(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _random_state_from_json(obj: list) -> tuple:
    return (obj[0], tuple(obj[1]), obj[2])


def _numpy_state_to_json() -> dict[str, Any]:
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"name": name, "keys": keys.tolist(), "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)}


def _numpy_state_from_json(obj: dict[str, Any]) -> None:
    np.random.set_state((obj["name"], np.array(obj["keys"], dtype=np.uint32), obj["pos"], obj["has_gauss"], obj["gauss"]))


def _optimizer_to_data(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, entry in state["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{key}"] = value.detach().to("cpu", copy=True).contiguous()  # a copy, also on the CPU
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _optimizer_from_data(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in list(tensors.items()) + list(meta["scalars"].items()):
        pid, _, key = name.partition(".")
        state.setdefault(int(pid), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


@dataclass
class Snapshot:
    """A checkpoint in memory, taken at a step boundary so that writing it can overlap the next
    training steps: host copies of every trained tensor and the JSON state. Frozen parameters (the
    word embeddings with ``--freeze-embeddings``: most of a multilingual encoder) never change, so
    they are referenced, not copied, and identified by ``frozen_key``: when the previous checkpoint
    holds the same ones, its file is hard-linked instead of written again."""

    tensors: dict[str, dict[str, torch.Tensor]]  # file stem -> tensors
    meta: dict[str, Any]
    frozen: dict[str, torch.Tensor] = field(default_factory=dict)
    frozen_key: str = ""


def _frozen_key(frozen: dict[str, torch.Tensor]) -> str:
    """Identity of the frozen tensors: names, storage, shape and in-place version counters."""
    parts = [(k, v.data_ptr(), v._version, tuple(v.shape), str(v.dtype), str(v.device)) for k, v in sorted(frozen.items())]
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def snapshot(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    progress: dict[str, Any],
    epoch_rng_state: tuple,
    best_state: dict[str, torch.Tensor] | None,
) -> Snapshot:
    """Copy everything a checkpoint holds, now (tensors to the host, random states, positions)."""
    frozen_names = {n for n, p in model.named_parameters() if not p.requires_grad}
    state = model.state_dict()
    frozen = {k: v.detach() for k, v in state.items() if k in frozen_names}
    tensors = {"model": {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items() if k not in frozen_names}}
    opt_tensors, opt_meta = _optimizer_to_data(optimizer)
    tensors["optimizer"] = opt_tensors
    if best_state is not None:  # already a host copy that training never modifies (a new dict per improvement)
        tensors["best"] = {k: v.contiguous() for k, v in best_state.items() if k not in frozen_names}  # frozen: as above
    tensors["rng"] = {"torch": torch.get_rng_state()}
    key = _frozen_key(frozen) if frozen else ""
    meta = {
        "progress": progress,
        "optimizer": opt_meta,
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "python_random": _random_state_to_json(random.getstate()),
        "numpy_random": _numpy_state_to_json(),
        "epoch_batch_rng": _random_state_to_json(epoch_rng_state),
        "frozen_key": key,
    }
    return Snapshot(tensors, json.loads(json.dumps(meta)), frozen, key)  # meta deep-copied: later steps cannot change it


def _previous_frozen(path: Path, key: str) -> Path | None:
    """The previous checkpoint's frozen-tensor file when it holds the same frozen tensors."""
    try:
        same = json.loads((path / "state.json").read_text(encoding="utf-8")).get("frozen_key") == key
    except (OSError, ValueError):
        return None
    return path / FROZEN_FILE if same and (path / FROZEN_FILE).is_file() else None


def _link(src: Path, dst: Path) -> bool:
    """Hard-link ``src`` as ``dst`` (unchanged since the last checkpoint: share its file); False
    where the file system cannot."""
    try:
        os.link(src, dst)
    except OSError:
        return False
    return True


def write(out_dir: str | Path, snap: Snapshot) -> Path:
    """Write a snapshot to ``out_dir/checkpoint`` atomically (the previous checkpoint stays whole
    until the new one is complete)."""
    path = Path(out_dir) / CHECKPOINT_DIR
    previous = _previous_frozen(path, snap.frozen_key) if snap.frozen else None
    with atomic_directory(path) as tmp:
        for stem, tensors in snap.tensors.items():
            save_file(tensors, str(tmp / f"{stem}.safetensors"))
        if snap.frozen and not (previous is not None and _link(previous, tmp / FROZEN_FILE)):
            copies = {k: v.to("cpu", copy=True).contiguous() for k, v in snap.frozen.items()}
            if _frozen_key(snap.frozen) != snap.frozen_key:
                raise RuntimeError("a frozen parameter changed while its checkpoint was written")
            save_file(copies, str(tmp / FROZEN_FILE))
        (tmp / "state.json").write_text(json.dumps(snap.meta), encoding="utf-8")
    return path


def save(
    out_dir: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    progress: dict[str, Any],
    epoch_rng_state: tuple,
    best_state: dict[str, torch.Tensor] | None,
) -> Path:
    """Write ``out_dir/checkpoint`` atomically, now; ``progress`` is the loop's JSON-able position."""
    return write(out_dir, snapshot(model, optimizer, scheduler, scaler, progress, epoch_rng_state, best_state))


class BackgroundWriter:
    """Writes checkpoints on a background thread while training goes on: :meth:`submit` takes a
    snapshot's copies on the caller's thread, waits for the previous write to finish (at most one
    write in flight, at most one extra copy in memory) and starts the next. :meth:`close` waits for
    the last write and re-raises its error, if any. Use it as a context manager."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, out_dir: str | Path, snap: Snapshot) -> None:
        self.wait()
        self._thread = threading.Thread(target=self._run, args=(out_dir, snap), name="gplinker-checkpoint", daemon=False)
        self._thread.start()

    def _run(self, out_dir: str | Path, snap: Snapshot) -> None:
        try:
            write(out_dir, snap)
        except BaseException as e:  # surfaced on the training thread by wait()
            self._error = e

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            if isinstance(error, OSError):  # a full disk (SaveError says what survived), a permission: one clear line
                raise error
            raise RuntimeError(f"writing the checkpoint failed: {error}") from error

    close = wait

    def __enter__(self) -> "BackgroundWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            self.wait()
        elif self._thread is not None:  # training failed: still finish the checkpoint in flight, keep the first error
            self._thread.join()
            self._thread = None


def load(
    out_dir: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any
) -> tuple[dict[str, Any], tuple, dict[str, torch.Tensor] | None]:
    """Restore a checkpoint written by :func:`save`; returns (progress, the batch-order generator's
    state at the start of its epoch, the best weights so far or None). Random states are restored."""
    path = Path(out_dir) / CHECKPOINT_DIR
    if not (path / "state.json").is_file():
        raise ValueError(f"{path}: no checkpoint to resume from — train with --save-every N first, or drop --resume")
    meta = json.loads((path / "state.json").read_text(encoding="utf-8"))
    frozen = load_file(str(path / FROZEN_FILE)) if (path / FROZEN_FILE).is_file() else {}
    model.load_state_dict({**load_file(str(path / "model.safetensors")), **frozen})
    _optimizer_from_data(optimizer, load_file(str(path / "optimizer.safetensors")), meta["optimizer"])
    scheduler.load_state_dict(meta["scheduler"])
    if scaler is not None and meta.get("scaler"):
        scaler.load_state_dict(meta["scaler"])
    best = {**load_file(str(path / "best.safetensors")), **frozen} if (path / "best.safetensors").is_file() else None
    random.setstate(_random_state_from_json(meta["python_random"]))
    _numpy_state_from_json(meta["numpy_random"])
    torch.set_rng_state(load_file(str(path / "rng.safetensors"))["torch"])
    return meta["progress"], _random_state_from_json(meta["epoch_batch_rng"]), best
