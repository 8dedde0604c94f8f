"""run.py end to end on the shipped examples with a tiny encoder: train, evaluate, predict."""

import json
import subprocess
import sys

from conftest import DATA, ROOT, read


def run(*args):
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *map(str, args)], capture_output=True, text=True, cwd=ROOT)


def test_train_evaluate_predict(tiny_encoder, tmp_path):
    out = tmp_path / "run"
    r = run(
        "train",
        "ner",
        "--train",
        DATA / "zh_train.jsonl",
        "--dev",
        DATA / "zh_dev.jsonl",
        "--encoder",
        tiny_encoder,
        "--output",
        out,
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--max-length",
        "48",
        "--stride",
        "8",
        "--head-size",
        "16",
        "--device",
        "cpu",
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "model" / "gplinker.json").is_file() and (out / "train.log").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["entities"]) >= {"precision", "recall", "f1", "per_label"}
    assert "entities" in r.stdout and "ALL (micro)" in r.stdout

    r = run("evaluate", "--model", out / "model", "--data", DATA / "cluener_sample.json", "--output", tmp_path / "m.json")
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "m.json").read_text())
    gold = read("ner", DATA / "cluener_sample.json")
    assert m["entities"]["n_gold"] == sum(len(d.entities) for d in gold) > 0
    from gplinker.tasks import load

    ex = load(out / "model", device="cpu")  # the command's scores are the library's on the same model and data
    assert m == json.loads(json.dumps(ex.task.evaluate(gold, ex.predict(gold))))
    assert "documents in" in r.stdout

    # plain text: one record per line, empty lines included
    src = tmp_path / "in.txt"
    src.write_text("王芳在杭州工作。\n\n李娜访问了百度公司。\n", encoding="utf-8")
    r = run("predict", "--model", out / "model", "--input", src, "--output", tmp_path / "p.jsonl")
    assert r.returncode == 0, r.stderr[-3000:]
    recs = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [x["text"] for x in recs] == ["王芳在杭州工作。", "", "李娜访问了百度公司。"]
    assert all(x["text"][e["start"] : e["end"]] == e["text"] for x in recs for e in x["entities"])  # offsets read the text

    # JSONL with bad records: each still gets an output record, and the good ones are predicted
    bad = tmp_path / "in.jsonl"
    bad.write_bytes(
        b'{"id": 1, "text": "\xe7\x8e\x8b\xe8\x8a\xb3"}\n{"id": 2}\n\n{"text": "\xff\xfe"}\n{"id": 5, "text": "x", "source": "s"}\n'
    )
    r = run("predict", "--model", out / "model", "--input", bad, "--output", tmp_path / "q.jsonl")
    assert r.returncode == 0, r.stderr[-3000:]
    recs = [json.loads(x) for x in (tmp_path / "q.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(recs) == 5
    assert recs[0]["id"] == "1" and recs[0]["text"] == "王芳"
    assert "text" in recs[1]["error"] and "line 2" in recs[1]["error"]
    assert "line 3" in recs[2]["error"] and "UTF-8" in recs[3]["error"]
    assert recs[4]["source"] == "s" and "entities" in recs[4]
    assert "3 failed" in r.stdout


def test_bad_training_file_is_a_clear_error(tiny_encoder, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "abc", "entities": []}\n{"text": "abc", "entities": [{"start": 2, "end": 1, "label": "X"}]}\n')
    r = run("train", "ner", "--train", bad, "--encoder", tiny_encoder, "--output", tmp_path / "o", "--max-steps", "1")
    assert r.returncode == 2
    assert f"{bad}, line 2" in r.stderr and "Traceback" not in r.stderr


def test_train_with_trimmed_vocabulary(tiny_encoder, tmp_path):
    """--trim-vocab train: the saved encoder holds only the training texts' pieces (plus special
    tokens), the dev texts' tokenization changes are counted, and the model reloads and predicts."""
    from transformers import AutoTokenizer

    out = tmp_path / "run"
    r = run(
        "train",
        "ner",
        "--train",
        DATA / "en_train.jsonl",
        "--dev",
        DATA / "zh_dev.jsonl",
        "--encoder",
        tiny_encoder,
        "--output",
        out,
        "--max-steps",
        "2",
        "--batch-size",
        "8",
        "--max-length",
        "48",
        "--stride",
        "8",
        "--head-size",
        "16",
        "--trim-vocab",
        "train",
        "--device",
        "cpu",
    )
    assert r.returncode == 0, r.stderr[-3000:]
    full = AutoTokenizer.from_pretrained(str(tiny_encoder))
    trimmed = AutoTokenizer.from_pretrained(str(out / "model" / "encoder"))
    train_texts = [json.loads(x)["text"] for x in (DATA / "en_train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(trimmed) < len(full)
    for t in train_texts[:20]:  # the training texts tokenize to the same pieces
        assert trimmed.tokenize(t) == full.tokenize(t)
    report = json.loads((out / "trim_report.json").read_text())
    assert report["texts"] > 0 and report["texts_changed"] > 0  # Chinese dev texts lose their characters
    assert not (out / "trimmed_encoder").exists()
    r = run("predict", "--model", out / "model", "--input", DATA / "predict_en.txt", "--output", tmp_path / "p.jsonl")
    assert r.returncode == 0, r.stderr[-3000:]
