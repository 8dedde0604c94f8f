"""Every training run leaves its curves: history.jsonl, curves.png with the kept checkpoint
marked, and TensorBoard event files when asked."""

import json

import pytest
from conftest import ROOT

from gplinker import curves
from gplinker.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


def train_argv(encoder, out, *extra):
    return ["train", "relation", "--train", str(ROOT / "data" / "relation" / "en_train.jsonl"),
            "--dev", str(ROOT / "data" / "relation" / "en_dev.jsonl"), "--encoder", str(encoder), "--output", str(out),
            "--device", "cpu", "--epochs", "3", "--batch-size", "8", "--head-size", "16", "--max-length", "48",
            "--lr", "5e-3", "--head-lr", "1e-2", *extra]  # fmt: skip


def test_a_training_run_writes_its_history_and_picture(tiny_encoder, tmp_path, capsys):
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    assert main(train_argv(tiny_encoder, out, "--log-every", "1", "--report-to", "tensorboard")) == 0
    assert "training curves:" in capsys.readouterr().out
    rows = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    train_rows, dev_rows = [r for r in rows if r["kind"] == "train"], [r for r in rows if r["kind"] == "dev"]
    summary = json.loads((out / "train_summary.json").read_text())
    assert [r["step"] for r in train_rows] == list(range(1, summary["steps"] + 1))  # --log-every 1
    assert all(r["loss"] > 0 and r["head_lr"] >= r["lr"] >= 0 for r in train_rows)
    assert len(dev_rows) == 3 and {"triples", "entities"} <= set(dev_rows[0]["dev"])
    assert [r["step"] for r in dev_rows if r["best"]] == [summary["best"]["step"]]
    png = (out / "curves.png").read_bytes()
    assert png.startswith(PNG) and len(png) > 20_000  # three drawn panels, not an empty canvas

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/head_lr", "dev/triples_f1", "dev/entities_f1"} <= tags
    assert [e.step for e in acc.Scalars("dev/triples_f1")] == [r["step"] for r in dev_rows]
    assert [round(e.value, 5) for e in acc.Scalars("train/loss")] == [round(r["loss"], 5) for r in train_rows]

    assert main(["card", str(out / "model"), "--output", str(tmp_path / "README.md")]) == 0  # the card names the command
    card = (tmp_path / "README.md").read_text()
    assert "gplinker train relation --train" in card and "--report-to tensorboard" in card and "- **predicates**" in card


def test_tensorboard_missing_is_a_usage_error_before_any_work(tiny_encoder, tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    assert main(train_argv(tiny_encoder, tmp_path / "run", "--report-to", "tensorboard")) == 2
    assert "pip install 'gplinker[tensorboard]'" in capsys.readouterr().err
    assert not (tmp_path / "run" / "model").exists()


def test_the_picture_marks_the_kept_checkpoint_and_survives_a_run_without_dev():
    rows = curves.history_lines(
        [{"step": s, "epoch": 1, "loss": 10.0 / s, "lr": 1e-4, "head_lr": 1e-3} for s in range(1, 9)],
        [{"epoch": 1, "step": 4, "loss": 2.0, "dev": {"entities": {"precision": 0.5, "recall": 0.5, "f1": 0.5}}},
         {"epoch": 1, "step": 8, "loss": 1.0, "dev": {"entities": {"precision": 0.4, "recall": 0.4, "f1": 0.4}}}],
        best_step=4,
    )  # fmt: skip
    assert [(r["kind"], r["step"]) for r in rows][-2:] == [("train", 8), ("dev", 8)]
    assert [r["step"] for r in rows if r.get("best")] == [4]
    assert curves.plot(rows, "entities").startswith(PNG)
    no_dev = curves.history_lines(
        [{"step": 1, "epoch": 1, "loss": 1.0, "lr": 0.0, "head_lr": 0.0}], [{"epoch": 1, "step": 1, "loss": 1.0}], None
    )
    assert curves.plot(no_dev, "entities").startswith(PNG)


def test_training_reads_the_loss_from_the_device_only_when_it_logs(tiny_encoder, tmp_path, monkeypatch):
    """train_step leaves its loss on the device; the loop reads it at --log-every points and
    evaluations, not every step (on a GPU each read makes the host wait for the device)."""
    import torch

    import gplinker.training as training
    from gplinker.extractor import Extractor
    from gplinker.settings import ModelSettings, TrainConfig
    from gplinker.tasks import NERTask, default_registry

    reads = []

    class Counted(torch.Tensor):  # a loss that counts host reads (ops on it keep the subclass)
        def __float__(self):
            reads.append(1)
            return super().__float__()

    real = training.train_step
    monkeypatch.setattr(training, "train_step", lambda *a, **k: real(*a, **k).as_subclass(Counted))
    docs = default_registry()["ner"].read(ROOT / "data" / "ner" / "zh_train.jsonl")[:8]
    ex = Extractor.build(str(tiny_encoder), NERTask.from_documents(docs), ModelSettings(head_size=16, max_length=32), "cpu")
    summary = training.train(ex, docs, None, TrainConfig(max_steps=40, batch_size=1, log_every=10), tmp_path)
    assert summary["steps"] == 40
    evaluations = len(summary["history"])  # one per epoch (no --dev: the loss is recorded)
    assert len(reads) <= 5 + 4 + evaluations < 40 / 2  # the curve's 5 points, the bar at 10/20/30/40, evaluations
    rows = [json.loads(x) for x in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "train"] == [1, 10, 20, 30, 40]
