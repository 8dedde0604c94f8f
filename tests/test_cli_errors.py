"""A command line a newcomer can live in: one-line errors with the fix (exit 2, no traceback),
defaults and choices in --help, checks before loading, info, fine-tuning, the installed command."""

import json
import os
import subprocess
import sys

import pytest
from conftest import DATA, read

from gplinker import cli
from gplinker.tasks import load as load_model

PREDICT = DATA / "predict_en.txt"


@pytest.fixture(scope="module")
def model(tiny_encoder, tmp_path_factory):
    out = tmp_path_factory.mktemp("m") / "run"
    rc = cli.main(
        [
            "train",
            "ner",
            "--train",
            str(DATA / "en_train.jsonl"),
            "--dev",
            str(DATA / "en_dev.jsonl"),
            "--encoder",
            str(tiny_encoder),
            "--output",
            str(out),
            "--max-steps",
            "4",
            "--batch-size",
            "8",
            "--max-length",
            "48",
            "--head-size",
            "16",
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    return out / "model"


def run_cli(capsys, *args):
    rc = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def user_error(capsys, *args, says):
    rc, out, err = run_cli(capsys, *args)
    assert rc == 2, (rc, err)
    assert "Traceback" not in err and "Traceback" not in out
    for phrase in [says] if isinstance(says, str) else says:
        assert phrase in err, (phrase, err)
    return err


def test_missing_input_file(model, capsys, tmp_path):
    user_error(
        capsys,
        "predict",
        "--model",
        model,
        "--input",
        tmp_path / "missing.txt",
        "--output",
        tmp_path / "o.jsonl",
        says=["--input", "no such file", "check the path"],
    )


def test_input_is_a_directory(model, capsys, tmp_path):
    user_error(capsys, "predict", "--model", model, "--input", DATA, "--output", tmp_path / "o.jsonl", says="is a directory")


def test_output_is_an_existing_directory(model, capsys, tmp_path):
    user_error(
        capsys, "predict", "--model", model, "--input", PREDICT, "--output", tmp_path, says=["is a directory", "file name"]
    )


@pytest.mark.parametrize("name,hint", [("minilm", "did you mean minilm-l6?"), ("bert-base-cased", "Offline aliases")])
def test_unknown_encoder_offline_lists_the_aliases(capsys, tmp_path, name, hint):
    err = user_error(
        capsys,
        "train",
        "ner",
        "--train",
        DATA / "en_train.jsonl",
        "--encoder",
        name,
        "--output",
        tmp_path / "o",
        "--max-steps",
        "1",
        "--device",
        "cpu",
        says=[f"cannot load encoder {name!r}", hint],
    )
    assert "me5-small" in err and "minilm-l6" in err


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_cuda_on_a_cpu_build(model, capsys, tmp_path):
    user_error(
        capsys,
        "predict",
        "--model",
        model,
        "--input",
        PREDICT,
        "--output",
        tmp_path / "o.jsonl",
        "--device",
        "cuda",
        says=["no CUDA GPU", "--device cpu"],
    )


def test_model_path_that_does_not_exist(capsys, tmp_path):
    user_error(
        capsys,
        "predict",
        "--model",
        tmp_path / "nope",
        "--input",
        PREDICT,
        "--output",
        tmp_path / "o.jsonl",
        says="does not exist",
    )


def test_model_path_one_level_too_high_gets_a_hint(model, capsys, tmp_path):
    user_error(capsys, "info", model.parent, says=f"did you mean {model}?")


@pytest.mark.parametrize("value", ["1.5", "0", "-0.2", "abc"])
def test_threshold_outside_zero_one_is_refused(model, capsys, tmp_path, value):
    rc, _, err = run_cli(
        capsys, "pipeline", "--model", model, "--input", PREDICT, "--output", tmp_path / "o.jsonl", "--threshold", value
    )
    assert rc == 2 and "--threshold" in err and "Traceback" not in err


def test_arguments_are_checked_before_anything_is_loaded(capsys, tmp_path):
    # a stride that does not fit the window: refused before the (unloadable) encoder is touched
    user_error(
        capsys,
        "train",
        "ner",
        "--train",
        DATA / "en_train.jsonl",
        "--encoder",
        "no-such-encoder",
        "--output",
        tmp_path / "o",
        "--max-length",
        "16",
        "--stride",
        "64",
        says=["--stride 64", "--max-length 16"],
    )
    user_error(
        capsys,
        "train",
        "ner",
        "--train",
        DATA / "en_train.jsonl",
        "--encoder",
        "no-such-encoder",
        "--output",
        tmp_path / "o",
        "--schema",
        DATA / "en_train.jsonl",
        says=["--schema does not apply to ner"],
    )
    assert not (tmp_path / "o").exists()


def test_default_stride_follows_max_length(tiny_encoder, capsys, tmp_path):
    rc, out, err = run_cli(
        capsys,
        "train",
        "ner",
        "--train",
        DATA / "en_train.jsonl",
        "--encoder",
        tiny_encoder,
        "--output",
        tmp_path / "o",
        "--max-length",
        "24",
        "--max-steps",
        "1",
        "--head-size",
        "8",
        "--device",
        "cpu",
    )
    assert rc == 0, err
    cfg = json.loads((tmp_path / "o" / "model" / "gplinker.json").read_text())
    assert (cfg["max_length"], cfg["stride"]) == (24, 6)


def test_labels_with_nothing_in_common_are_warned_about(model, capsys):
    rc, out, err = run_cli(capsys, "evaluate", "--model", model, "--data", DATA / "zh_dev.jsonl")
    assert rc == 0 and "none of the labels in the data" in err and "every score will be 0" in err


def test_prediction_flags_of_another_task_are_refused(model, capsys, tmp_path):
    user_error(
        capsys,
        "predict",
        "--model",
        model,
        "--input",
        PREDICT,
        "--output",
        tmp_path / "o.jsonl",
        "--drop-triggerless",
        says="--drop-triggerless is for event models",
    )


def test_debug_shows_the_traceback(capsys, tmp_path):
    rc, _, err = run_cli(capsys, "info", tmp_path / "nope", "--debug")
    assert rc == 2 and "Traceback" in err and "does not exist" in err


def test_help_shows_defaults_and_choices(capsys):
    assert cli.main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    for text in (
        "default: 2e-05",
        "default: 3",
        "default: minilm-l6",
        "me5-small",
        "{event,ner,relation}",
        "cluener",
        "casrel",
        "fewfc",
        "--init-from",
        "--decode",
    ):
        assert text in out, text
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():  # every option of every command says what it is
        for action in p._actions:
            assert action.help, (name, action.dest)


def test_info_shows_task_labels_encoder_and_scores(model, capsys, tiny_encoder):
    rc, out, err = run_cli(capsys, "info", model, "--json")
    assert rc == 0, err
    info = json.loads(out)
    gold_labels = sorted({s.label for d in read("ner", DATA / "en_train.jsonl") for s in d.entities})
    assert info["task"] == "ner" and info["labels"] == gold_labels and info["decode"] == "flat"
    assert info["encoder"] == str(tiny_encoder) and info["max_length"] == 48 and info["stride"] == 12
    assert set(info["dev_scores"]["entities"]) == {"precision", "recall", "f1"} and info["train_documents"] > 0
    assert info["size_mb"] > 0 and info["train_file"].endswith("en_train.jsonl")


def test_flat_decoding_returns_no_overlaps_and_nested_may(model, capsys, tmp_path):

    from gplinker.structures import Document

    ex = load_model(model, device="cpu")
    texts = [line for line in PREDICT.read_text(encoding="utf-8").split("\n") if line]
    # the barely trained model's cells taken well below the decision threshold: many overlapping spans
    cells = ex.document_cells(texts, thresholds={"entities": -10.0})
    ex.task.decoding = "nested"
    nested = [ex.task.decode(Document(t), c) for t, c in zip(texts, cells)]
    ex.task.decoding = "flat"
    flat = [ex.task.decode(Document(t), c) for t, c in zip(texts, cells)]
    overlapping = sum(a.end > b.start for d in nested for a, b in zip(sorted(d.entities), sorted(d.entities)[1:]))
    assert overlapping > 10 and sum(len(d.entities) for d in flat) > 0  # the comparison below is not vacuous
    for n, f in zip(nested, flat):
        spans = sorted((s.start, s.end) for s in f.entities)
        assert all(b[0] >= a[1] for a, b in zip(spans, spans[1:]))
        assert set(f.entities) <= set(n.entities)
        for s in n.entities:  # every nested span is either kept or overlaps a kept one scored at least as high
            assert s in f.entities or any(t.start < s.end and s.start < t.end and t.score >= s.score for t in f.entities)


def test_init_from_keeps_old_channels_and_adds_new_labels(model, capsys, tmp_path):
    import torch

    from gplinker.finetune import extend_extractor
    from gplinker.structures import Document, Span
    from gplinker.tasks import ner

    base = load_model(model, device="cpu")
    new = ner.NERTask.from_documents([Document("Acme Corp sued .", (Span(0, 9, "COMPANY"),))])
    ex = extend_extractor(base, new)
    assert ex.task.labels == base.task.labels + ["COMPANY"]
    old_q, new_q = base.model.heads["entities"].q_dense, ex.model.heads["entities"].q_dense
    k = len(base.task.labels)
    assert torch.equal(new_q.weight[: 2 * k], old_q.weight) and torch.equal(new_q.bias[: 2 * k], old_q.bias)
    texts = ["John Smith works for Globex in Paris ."]
    old_ents = {(s.start, s.end, s.label) for s in base.predict(texts)[0].entities}
    assert {(s.start, s.end, s.label) for s in ex.predict(texts)[0].entities if s.label != "COMPANY"} == old_ents
    # and through the command line, on data with a new label
    data = tmp_path / "new.jsonl"
    data.write_text(
        json.dumps({"text": "Acme Corp sued Initech .", "entities": [{"start": 0, "end": 9, "label": "COMPANY"}]}) + "\n"
    )
    rc, out, err = run_cli(
        capsys,
        "train",
        "ner",
        "--train",
        data,
        "--init-from",
        model,
        "--output",
        tmp_path / "ft",
        "--max-steps",
        "2",
        "--device",
        "cpu",
    )
    assert rc == 0, err
    info = json.loads((tmp_path / "ft" / "model" / "gplinker.json").read_text())
    assert info["task_config"]["labels"] == base.task.labels + ["COMPANY"] and info["info"]["init_from"] == str(model)


OUTSIDE = {**os.environ, "PYTHONPATH": ""}


def test_installed_command_and_module_run_outside_the_repository(model, tmp_path):
    import shutil

    exe = shutil.which("gplinker") or os.path.join(os.path.dirname(sys.executable), "gplinker")
    for cmd in ([exe, "--help"], [sys.executable, "-m", "gplinker", "--help"]):
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=OUTSIDE)
        assert r.returncode == 0 and "train" in r.stdout and "serve" in r.stdout, r.stderr
    r = subprocess.run([exe, "--version"], capture_output=True, text=True, cwd=tmp_path, env=OUTSIDE)
    from gplinker import __version__

    assert r.returncode == 0 and r.stdout.strip() == f"gplinker {__version__}"
    r = subprocess.run(
        [sys.executable, "-m", "gplinker", "info", str(model)], capture_output=True, text=True, cwd=tmp_path, env=OUTSIDE
    )
    assert r.returncode == 0 and "task: ner" in r.stdout, r.stderr
    r = subprocess.run(
        [sys.executable, "-c", "import importlib.util, gplinker.tasks; print(importlib.util.find_spec('tasks'))"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=OUTSIDE,
    )
    assert r.returncode == 0 and r.stdout.strip() == "None", r.stdout + r.stderr  # no top-level "tasks" module
    r = subprocess.run(
        [exe, "predict", "--model", str(model), "--input", "missing.txt", "--output", "o.jsonl"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=OUTSIDE,
    )
    assert r.returncode == 2 and "no such file" in r.stderr and "Traceback" not in r.stderr


def test_calibrate_measures_fits_and_applies_a_temperature(tiny_encoder, capsys, tmp_path):
    import math

    copy = tmp_path / "run"
    assert (
        cli.main(
            [
                "train",
                "ner",
                "--train",
                str(DATA / "zh_train.jsonl"),
                "--encoder",
                str(tiny_encoder),
                "--output",
                str(copy),
                "--epochs",
                "40",
                "--batch-size",
                "4",
                "--lr",
                "5e-3",
                "--head-lr",
                "1e-2",
                "--max-length",
                "32",
                "--head-size",
                "16",
                "--max-train-docs",
                "8",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    copy = copy / "model"
    texts = [d.text for d in read("ner", DATA / "zh_train.jsonl")[:8]]
    before = load_model(copy, device="cpu").predict(texts)
    assert sum(len(d.entities) for d in before) > 0
    rc, out, err = run_cli(
        capsys,
        "calibrate",
        "--model",
        copy,
        "--data",
        DATA / "zh_dev.jsonl",
        "--output",
        tmp_path / "c.json",
        "--plot",
        tmp_path / "c.png",
        "--apply",
        "--floor",
        "-10",
        "--device",
        "cpu",
    )
    assert rc == 0, err
    report = json.loads((tmp_path / "c.json").read_text())
    t = report["temperature"]
    assert report["heads"]["entities"]["cells"] > 0 and (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((copy / "gplinker.json").read_text())["temperature"] == t
    after = load_model(copy, device="cpu").predict(texts)
    assert [{(s.start, s.end, s.label) for s in d.entities} for d in after] == [
        {(s.start, s.end, s.label) for s in d.entities} for d in before
    ]
    for d0, d1 in zip(before, after):
        for s0, s1 in zip(sorted(d0.entities), sorted(d1.entities)):
            logit = math.log(s0.score / (1 - s0.score)) / 2  # s0.score = σ(2s)
            assert s1.score == pytest.approx(1 / (1 + math.exp(-2 * logit / t)), abs=1e-5)
