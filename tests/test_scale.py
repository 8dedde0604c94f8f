"""Scaling training: data-parallel processes (gloo), gradient accumulation, mixed precision,
evaluation every N steps with early stopping, resumable checkpoints."""

import json
import os
import random
import socket

import pytest
import torch
from conftest import DATA, build_tiny_encoder, read

from gplinker.extractor import Extractor, ModelSettings
from gplinker.structures import Document, Span
from gplinker.tasks import ner
from gplinker.training import TrainConfig, train

NAMES = ["john smith", "mary johnson", "anna petrova", "carlos ruiz"]
PLACES = ["paris", "boston", "new york", "lima"]


def _docs(n: int) -> list[Document]:
    """n one-window documents with a person and a place each."""
    out = []
    for k in range(n):
        who, where = NAMES[k % 4], PLACES[(k // 4) % 4]
        text = f"{who} said in {where} the {k} ."
        out.append(Document(text, (Span(0, len(who), "PER"), Span(len(who) + 9, len(who) + 9 + len(where), "LOC"))))
    return out


@pytest.fixture(scope="module")
def still_encoder(tmp_path_factory):
    """The tiny encoder without dropout, so runs can be compared weight for weight."""
    texts = [d.text for d in _docs(32)]
    return build_tiny_encoder(tmp_path_factory.mktemp("still"), texts, dropout=0.0)


def _build(encoder, docs, seed=5):
    return Extractor.build(
        str(encoder), ner.NERTask.from_documents(docs), ModelSettings(head_size=16, max_length=32, stride=8), "cpu", seed=seed
    )


def _max_diff(a: dict, b: dict) -> float:
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


# ---- data-parallel training: 2 gloo processes x batch 8 == 1 process x batch 16 --------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, encoder: str, out_dirs: list[str], result_dir: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        OMP_NUM_THREADS="1",
    )
    torch.set_num_threads(1)
    from safetensors.torch import save_file

    docs = _docs(32)
    ex = _build(encoder, docs)
    summary = train(
        ex, docs, docs[:8], TrainConfig(max_steps=4, batch_size=8, lr=1e-3, head_lr=1e-2, warmup_ratio=0.0), out_dirs[rank]
    )
    save_file({k: v.contiguous() for k, v in ex.model.state_dict().items()}, os.path.join(result_dir, f"rank{rank}.safetensors"))
    with open(os.path.join(result_dir, f"rank{rank}.json"), "w") as f:
        json.dump({"steps": summary["steps"], "processes": summary["processes"], "best_step": summary["best"]["step"]}, f)
    torch.distributed.destroy_process_group()


def test_two_gloo_processes_match_one_process_with_the_global_batch(still_encoder, tmp_path):
    import torch.multiprocessing as mp
    from safetensors.torch import load_file

    docs = _docs(32)
    single = _build(still_encoder, docs)
    torch.set_num_threads(2)
    train(
        single, docs, docs[:8], TrainConfig(max_steps=4, batch_size=16, lr=1e-3, head_lr=1e-2, warmup_ratio=0.0), tmp_path / "one"
    )
    outs = [str(tmp_path / "rank0"), str(tmp_path / "rank1")]
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(still_encoder), outs, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    assert _max_diff(r0, r1) == 0.0  # every process ends on the same (best) model
    diff = _max_diff(r0, single.model.state_dict())
    assert diff < 1e-4, diff  # same global batches and averaged gradients; float32 summation order differs
    info = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert info[0] == info[1] and info[0]["steps"] == 4 and info[0]["processes"] == 2
    assert (tmp_path / "rank0" / "model" / "gplinker.json").is_file() and (tmp_path / "rank0" / "train_summary.json").is_file()
    assert not os.path.exists(outs[1])  # rank 1 wrote nothing


# ---- gradient accumulation -----------------------------------------------------------------------


def test_two_accumulated_batches_of_8_equal_one_batch_of_16(still_encoder):
    docs = _docs(32)
    a, b = _build(still_encoder, docs), _build(still_encoder, docs)
    train(a, docs, None, TrainConfig(max_steps=3, batch_size=16, lr=1e-3, head_lr=1e-2, warmup_ratio=0.0))
    summary = train(b, docs, None, TrainConfig(max_steps=3, batch_size=8, grad_accum=2, lr=1e-3, head_lr=1e-2, warmup_ratio=0.0))
    assert summary["steps"] == 3
    assert _max_diff(a.model.state_dict(), b.model.state_dict()) < 1e-5


# ---- mixed precision ------------------------------------------------------------------------------


def test_loss_under_bf16_autocast_is_close_to_fp32(still_encoder):
    from gplinker.model import collate
    from gplinker.training import training_windows

    docs = _docs(16)
    ex = _build(still_encoder, docs)
    ws, targets, _ = training_windows(ex, docs)
    batch = collate(ws, ex.pad_id, ex.task.head_specs(), targets)
    full, _ = ex.model.training_loss(**batch.inputs(), labels=batch.labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half, _ = ex.model.training_loss(**batch.inputs(), labels=batch.labels)
    assert torch.isfinite(half) and half.dtype == torch.float32  # the factorised loss is computed in float64
    half, full = float(half.detach()), float(full.detach())
    assert abs(half - full) / full < 0.02, (half, full)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_training_runs_in_mixed_precision(still_encoder, precision):
    docs = _docs(16)
    ex = _build(still_encoder, docs)
    before = {k: v.detach().clone() for k, v in ex.model.heads.state_dict().items()}
    summary = train(ex, docs, docs[:4], TrainConfig(max_steps=4, batch_size=8, lr=1e-3, head_lr=1e-2, precision=precision))
    assert any(not torch.equal(before[k], v) for k, v in ex.model.heads.state_dict().items())  # the weights moved
    assert summary["steps"] == 4 and all(h["loss"] == h["loss"] and h["loss"] < 1e4 for h in summary["history"])  # finite
    assert all(torch.isfinite(p).all() for p in ex.model.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="mixed precision on a GPU (fp16 with the gradient scaler) needs a GPU")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_on_a_gpu(still_encoder, precision):
    docs = _docs(16)
    ex = Extractor.build(
        str(still_encoder), ner.NERTask.from_documents(docs), ModelSettings(head_size=16, max_length=32), "cuda", seed=5
    )
    before = {k: v.detach().clone() for k, v in ex.model.state_dict().items()}
    summary = train(ex, docs, docs[:4], TrainConfig(max_steps=6, batch_size=8, lr=1e-3, head_lr=1e-2, precision=precision))
    assert summary["steps"] == 6 and all(h["loss"] == h["loss"] and h["loss"] < 1e4 for h in summary["history"])  # finite
    assert all(torch.isfinite(p).all() for p in ex.model.parameters())
    changed = [k for k, v in ex.model.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert changed, "no weight moved: the scaler skipped every step"


# ---- evaluation every N steps, early stopping -------------------------------------------------------


def test_eval_every_and_patience(still_encoder):
    docs = _docs(32)
    ex = _build(still_encoder, docs)
    # learning rates so small that dev F1 cannot move: the second evaluation does not improve, patience 1 stops
    summary = train(
        ex, docs, docs[:8], TrainConfig(max_steps=20, batch_size=8, lr=1e-12, head_lr=1e-12, eval_every=3, patience=1)
    )
    assert [h["step"] for h in summary["history"]] == [3, 6] and summary["steps"] == 6


# ---- resume: a crash after step k, then --resume, ends where an uninterrupted run ends ---------------


@pytest.mark.parametrize("freeze", [False, True])  # frozen word embeddings: kept in their own, shared file
def test_resume_after_a_crash_equals_an_uninterrupted_run(tiny_encoder, tmp_path, monkeypatch, freeze):
    import gplinker.training as training

    docs = read("ner", DATA / "zh_train.jsonl")[:12]
    config = dict(
        epochs=3,
        batch_size=4,
        lr=5e-3,
        head_lr=1e-2,
        save_every=2,  # dropout on: its random state must resume too
        freeze_embeddings=freeze,
        log_every=2,
    )
    whole = _build(tiny_encoder, docs)
    want = train(whole, docs, docs[:4], TrainConfig(**config), tmp_path / "whole")

    real, calls = training.train_step, []

    def crashing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 6:  # after the checkpoint at step 4, in the middle of epoch 2
            raise RuntimeError("power cut")
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "train_step", crashing)
    with pytest.raises(RuntimeError, match="power cut"):
        train(_build(tiny_encoder, docs), docs, docs[:4], TrainConfig(**config), tmp_path / "cut")
    monkeypatch.setattr(training, "train_step", real)
    progress = json.loads((tmp_path / "cut" / "checkpoint" / "state.json").read_text())["progress"]
    assert progress["step"] == 4
    resumed = _build(tiny_encoder, docs, seed=99)  # a different start: everything must come from the checkpoint
    got = train(resumed, docs, docs[:4], TrainConfig(**config, resume=True), tmp_path / "cut")
    assert got["steps"] == want["steps"] == 9
    assert _max_diff(resumed.model.state_dict(), whole.model.state_dict()) == 0.0
    assert [h["dev"] for h in got["history"]] == [h["dev"] for h in want["history"]]
    assert got["best"]["metrics"] == want["best"]["metrics"]

    def curve(run):  # the training curve, kept in the checkpoint across the crash
        rows = [json.loads(x) for x in (tmp_path / run / "history.jsonl").read_text().splitlines()]
        return [r for r in rows if r["kind"] == "train"], [(r["step"], r["dev"], r["best"]) for r in rows if r["kind"] == "dev"]

    assert curve("cut") == curve("whole") and len(curve("whole")[0]) == 5  # steps 1, 2, 4, 6, 8


def test_resume_without_a_checkpoint_is_a_clear_error(tiny_encoder, tmp_path, capsys):
    from gplinker import cli

    rc = cli.main(
        [
            "train",
            "ner",
            "--train",
            str(DATA / "en_train.jsonl"),
            "--encoder",
            str(tiny_encoder),
            "--output",
            str(tmp_path / "o"),
            "--resume",
            "--device",
            "cpu",
        ]
    )
    assert rc == 2 and "holds no checkpoint" in capsys.readouterr().err


def test_background_checkpoint_equals_a_direct_save_and_reports_errors(tiny_encoder, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from gplinker import checkpoint
    from gplinker.training import build_optimizer, warmup_linear_decay

    docs = read("ner", DATA / "zh_train.jsonl")[:4]
    ex = _build(tiny_encoder, docs)
    opt = build_optimizer(ex.model, TrainConfig(lr=1e-3))
    for p in ex.model.parameters():  # give the optimizer some state
        p.grad = torch.ones_like(p)
    opt.step()
    sched = warmup_linear_decay(opt, 10, 1)
    args = (ex.model, opt, sched, None, {"step": 1}, random.Random(3).getstate(), None)
    checkpoint.save(tmp_path / "direct", *args)
    with checkpoint.BackgroundWriter() as writer:
        writer.submit(tmp_path / "background", checkpoint.snapshot(*args))
        with torch.no_grad():  # training goes on while the write runs: the snapshot must not see it
            for p in ex.model.parameters():
                p.add_(1.0)
    for name in ("model", "optimizer"):
        a = load_file(str(tmp_path / "direct" / "checkpoint" / f"{name}.safetensors"))
        b = load_file(str(tmp_path / "background" / "checkpoint" / f"{name}.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_file", broken)
    writer = checkpoint.BackgroundWriter()
    writer.submit(tmp_path / "full", checkpoint.snapshot(*args))
    with pytest.raises(OSError, match="disk full"):  # an OSError stays one (the CLI says it in one line)
        writer.close()
    assert not (tmp_path / "full" / "checkpoint").exists()


def test_unchanged_frozen_weights_are_linked_not_written_again(tiny_encoder, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from gplinker import checkpoint
    from gplinker.training import build_optimizer, warmup_linear_decay

    docs = read("ner", DATA / "zh_train.jsonl")[:4]
    ex = _build(tiny_encoder, docs)
    opt = build_optimizer(ex.model, TrainConfig(lr=1e-3, freeze_embeddings=True))
    args = (ex.model, opt, warmup_linear_decay(opt, 10, 1), None, {"step": 1}, random.Random(3).getstate(), None)
    written, real_save = [], checkpoint.save_file
    monkeypatch.setattr(
        checkpoint, "save_file", lambda tensors, name: (written.append(os.path.basename(name)), real_save(tensors, name))
    )
    emb = ex.model.encoder.get_input_embeddings().weight
    for k in range(3):
        if k == 2:
            with torch.no_grad():
                emb.add_(1.0)  # a frozen tensor changed (in place): its file must be written again
        written.clear()
        checkpoint.save(tmp_path, *args)
        assert ("frozen.safetensors" in written) == (k != 1), (k, written)
        frozen = load_file(str(tmp_path / "checkpoint" / "frozen.safetensors"))
        assert torch.equal(frozen["encoder.embeddings.word_embeddings.weight"], emb.detach())
        assert "encoder.embeddings.word_embeddings.weight" not in load_file(str(tmp_path / "checkpoint" / "model.safetensors"))
