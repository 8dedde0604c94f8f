"""Outputs that never lose anything: not a model, not a device, not an earlier run, not a batch for
one bad text, not a line of JSON; a full disk said in one line with what survived. The CLI runs
in-process (``cli.main``)."""

import errno
import json
import os
import stat
import threading

import pytest
from conftest import DATA

from gplinker import cli
from gplinker.tasks import load as load_model


@pytest.fixture(scope="module")
def saved(trained_ner):
    return trained_ner[0]


def train_argv(encoder, out, *extra: str) -> list[str]:
    """A tiny NER training command into ``out``."""
    return ["train", "ner", "--train", str(DATA / "zh_train.jsonl"), "--encoder", str(encoder), "--output", str(out),
            "--device", "cpu", "--head-size", "16", "--max-length", "32", *extra]  # fmt: skip


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def texts_file(tmp_path, lines, name="in.jsonl"):
    src = tmp_path / name
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in lines), encoding="utf-8")
    return src


# ---- 3. no output inside a model directory ----------------------------------------------------------


@pytest.mark.parametrize("command", ["evaluate", "calibrate", "predict", "pipeline", "pipeline-html", "train"])
def test_an_output_inside_a_model_directory_is_refused(saved, tmp_path, capsys, command, tiny_encoder):
    import shutil

    model = tmp_path / "m" / "model"
    shutil.copytree(saved, model)
    before = snapshot(model)
    src = texts_file(tmp_path, ["王芳在杭州工作。"])
    gold = str(DATA / "zh_dev.jsonl")
    target = str(model / "gplinker.json")
    argv = {
        "evaluate": ["evaluate", "--model", str(model), "--data", gold, "--output", target],
        "calibrate": ["calibrate", "--model", str(model), "--data", gold, "--output", str(model / "encoder" / "config.json")],
        "predict": ["predict", "--model", str(model), "--input", str(src), "--output", str(model / "heads.safetensors")],
        "pipeline": ["pipeline", "--model", str(model), "--input", str(src), "--output", target],
        "pipeline-html": [
            "pipeline",
            "--model",
            str(model),
            "--input",
            str(src),
            "--output",
            str(tmp_path / "o.jsonl"),
            "--html",
            str(model / "encoder" / "tokenizer.json"),
        ],
        "train": ["train", "ner", "--train", gold, "--encoder", str(tiny_encoder), "--output", str(model), "--max-steps", "1"],
    }[command]
    assert cli.main(argv + ["--device", "cpu"]) == 2
    assert "inside the model directory" in capsys.readouterr().err
    assert snapshot(model) == before
    load_model(model, device="cpu")


# ---- 4. devices, FIFOs and standard output are written, never replaced --------------------------------


def test_output_to_a_fifo_streams_into_it_and_leaves_it_a_fifo(saved, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    src = texts_file(tmp_path, ["王芳在杭州工作。", "李娜。"])
    assert cli.main(["predict", "--model", str(saved), "--input", str(src), "--output", str(fifo), "--device", "cpu"]) == 0
    reader.join(30)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert [json.loads(x)["line"] for x in got[0].decode().splitlines()] == [1, 2]


def test_output_dash_is_standard_output_and_messages_go_to_stderr(saved, tmp_path, capsys):
    src = texts_file(tmp_path, ["王芳在杭州工作。", "李娜。"])
    assert cli.main(["predict", "--model", str(saved), "--input", str(src), "--output", "-", "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    assert [json.loads(x)["text"] for x in out.splitlines()] == ["王芳在杭州工作。", "李娜。"]
    assert "2 records written" in err
    assert (
        cli.main(["evaluate", "--model", str(saved), "--data", str(DATA / "zh_dev.jsonl"), "--output", "-", "--device", "cpu"])
        == 0
    )
    out, err = capsys.readouterr()
    assert "f1" in json.loads(out)["entities"] and "documents in" in err


def test_a_symlinked_output_keeps_its_link_and_new_outputs_get_the_usual_mode(saved, tmp_path):
    src = texts_file(tmp_path, ["王芳在杭州工作。"])
    target = tmp_path / "real.jsonl"
    target.write_text("old\n")
    os.chmod(target, 0o640)
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    assert cli.main(["predict", "--model", str(saved), "--input", str(src), "--output", str(link), "--device", "cpu"]) == 0
    assert link.is_symlink() and json.loads(target.read_text())["line"] == 1
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # a replaced file keeps its mode
    old = os.umask(0o022)
    try:
        assert (
            cli.main(
                [
                    "predict",
                    "--model",
                    str(saved),
                    "--input",
                    str(src),
                    "--output",
                    str(tmp_path / "new.jsonl"),
                    "--device",
                    "cpu",
                ]
            )
            == 0
        )
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.jsonl").stat().st_mode) == 0o644  # not mkstemp's 0600


def test_two_outputs_of_one_command_on_one_path_are_refused(saved, tmp_path, capsys):
    src = texts_file(tmp_path, ["王芳在杭州工作。"])
    out = tmp_path / "x"
    assert cli.main(["pipeline", "--model", str(saved), "--input", str(src), "--output", str(out), "--html", str(out)]) == 2
    assert "one would overwrite the other" in capsys.readouterr().err and not out.exists()
    assert (
        cli.main(["calibrate", "--model", str(saved), "--data", str(DATA / "zh_dev.jsonl"), "--output", "-", "--plot", "-"]) == 2
    )


# ---- 5. a second training never replaces the first silently ------------------------------------------


def test_training_into_a_folder_with_a_model_needs_overwrite(tiny_encoder, tmp_path, capsys):
    out = tmp_path / "run"
    base = train_argv(tiny_encoder, out, "--max-steps", "1")
    assert cli.main(base) == 0
    first = snapshot(out / "model")
    assert cli.main(base + ["--seed", "7"]) == 2
    assert "already holds a trained model" in capsys.readouterr().err and snapshot(out / "model") == first
    assert cli.main(base + ["--seed", "7", "--overwrite"]) == 0
    assert snapshot(out / "model") != first
    (out / "checkpoint").mkdir()  # an unfinished run's checkpoint
    import shutil

    shutil.rmtree(out / "model")
    assert cli.main(base) == 2 and "--resume" in capsys.readouterr().err
    assert cli.main(base + ["--resume", "--overwrite"]) == 2


# ---- 6. one bad text loses nothing else ------------------------------------------------------------------


def test_a_lone_surrogate_is_an_error_for_its_record_only(saved, tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text(
        '{"text": "王芳在杭州工作。"}\n{"text": "bad \\ud800 text"}\n{"text": "李娜。", "id": "\\udfff"}\n', encoding="utf-8"
    )
    for command in ("predict", "pipeline"):
        out = tmp_path / f"{command}.jsonl"
        assert (
            cli.main(
                [
                    command,
                    "--model",
                    str(saved),
                    "--input",
                    str(src),
                    "--output",
                    str(out),
                    "--html" if command == "pipeline" else "--device",
                    str(tmp_path / "r.html") if command == "pipeline" else "cpu",
                ]
            )
            == 0
        )
        recs = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
        assert [r["line"] for r in recs] == [1, 2, 3]
        assert "error" not in recs[0] and "error" not in recs[2] and "lone surrogate" in recs[1]["error"]
        assert recs[2]["id"] == "\udfff"  # kept, written as an escape (valid UTF-8 JSON)
    gold = tmp_path / "gold.jsonl"
    gold.write_text('{"text": "王\\ud800", "entities": [{"start": 0, "end": 1, "label": "PER"}]}\n', encoding="utf-8")
    assert cli.main(["evaluate", "--model", str(saved), "--data", str(gold)]) == 2
    err = capsys.readouterr().err
    assert "line 1" in err and "lone surrogate" in err and "internal error" not in err


def test_json_output_escapes_the_separators_other_line_readers_split_on(saved, tmp_path):
    src = texts_file(tmp_path, ["王芳\u2028在杭州\u2029工作\u0085。"])
    out = tmp_path / "o.jsonl"
    assert cli.main(["predict", "--model", str(saved), "--input", str(src), "--output", str(out), "--device", "cpu"]) == 0
    raw = out.read_text(encoding="utf-8")
    assert not any(c in raw for c in "\u2028\u2029\u0085") and len(raw.splitlines()) == 1
    assert json.loads(raw)["text"] == "王芳\u2028在杭州\u2029工作\u0085。"


# ---- 13. a full disk: one line, and what survived ---------------------------------------------------------


def _no_space(*a, **k):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_during_a_model_save_says_so_and_keeps_the_previous_model(tiny_encoder, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    base = train_argv(tiny_encoder, out, "--max-steps", "2")
    assert cli.main(base) == 0
    before = snapshot(out / "model")
    from safetensors import SafetensorError

    import gplinker.extractor as extractor_module

    def full(*a, **k):  # what safetensors raises on a full disk
        raise SafetensorError(
            'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'
        )

    monkeypatch.setattr(extractor_module, "save_file", full)
    assert cli.main(base + ["--overwrite"]) == 1
    err = capsys.readouterr().err
    said = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(said) == 1 and "Traceback" not in err
    assert "no space left on device" in said[0] and "previous version there is intact" in said[0]
    assert snapshot(out / "model") == before and not [p for p in out.iterdir() if p.name.endswith(".partial")]


def test_a_full_disk_during_a_checkpoint_says_so_and_keeps_the_previous_checkpoint(tiny_encoder, tmp_path, capsys, monkeypatch):
    from gplinker import checkpoint

    out = tmp_path / "run"
    base = train_argv(tiny_encoder, out, "--max-steps", "4", "--save-every", "2")
    real = checkpoint.save_file
    dirs: list[str] = []

    def flaky(tensors, path, *a, **k):  # the second checkpoint finds the disk full
        if os.path.dirname(path) not in dirs:
            dirs.append(os.path.dirname(path))
        if len(dirs) >= 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tensors, path, *a, **k)

    monkeypatch.setattr(checkpoint, "save_file", flaky)
    assert cli.main(base) == 1
    err = capsys.readouterr().err
    said = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(said) == 1 and "Traceback" not in err
    assert "no space left on device" in said[0] and "intact" in said[0]
    assert json.loads((out / "checkpoint" / "state.json").read_text())["progress"]["step"] == 2
