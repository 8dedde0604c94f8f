"""The end-to-end pipeline: several models merged per text, calibrated scores, HTML report, bad input."""

import json
import math
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest
from conftest import ROOT

from gplinker.cells import HeadCells
from gplinker.combine import combine_record
from gplinker.html import render
from gplinker.structures import Argument, Document, Event, Relation, Span
from gplinker.tasks import load as load_model


def run(*args):
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *map(str, args)], capture_output=True, text=True, cwd=ROOT)


def test_cell_probability_is_sigmoid_of_twice_the_logit_and_monotone():
    logits = np.array([-3.0, -0.1, 0.0, 0.2, 1.0, 7.5])
    cells = HeadCells(np.column_stack([np.zeros(6, int), np.arange(6), np.arange(6)]), logits)
    probs = cells.scores()
    got = [probs[(0, k, k)] for k in range(6)]
    assert got == pytest.approx([1 / (1 + math.exp(-2 * s)) for s in logits], rel=1e-6)
    assert all(a < b for a, b in zip(got, got[1:]))
    assert got[2] == 0.5  # the decision threshold s = 0 is probability 0.5
    assert cells.most_probable(2).rows[:, 1].tolist() == [4, 5]  # the two highest logits, in order


def test_combine_record_tags_every_item_and_filters_by_threshold():
    doc = Document("张伟在华为工作。", id="7", meta={"source": "x"})
    ner = Document(doc.text, entities=(Span(0, 2, "PER", 0.97), Span(3, 5, "ORG", 0.55)))
    rel = Document(
        doc.text,
        entities=(Span(0, 2, "人", 0.9),),
        relations=(Relation(Span(0, 2, "人", 0.9), "就职于", Span(3, 5, "机构", 0.8), 0.8),),
    )
    ev = Document(doc.text, events=(Event("工作", (Argument("trigger", 5, 7, 0.7), Argument("sub", 0, 2, 0.9)), 0.7),))
    rec = combine_record(
        doc, [("ner", "m1", ner), ("relation", "m2", rel), ("event", "m3", ev), ("ner", "m4", "RuntimeError: boom")]
    )
    assert rec["id"] == "7" and rec["source"] == "x" and rec["text"] == doc.text
    assert {(e["text"], e["task"], e["model"]) for e in rec["entities"]} == {
        ("张伟", "ner", "m1"),
        ("华为", "ner", "m1"),
        ("张伟", "relation", "m2"),
    }
    assert rec["relations"][0]["head"]["text"] == "张伟" and rec["relations"][0]["model"] == "m2"
    assert rec["events"][0]["arguments"][0]["text"] in ("张伟", "工作") and rec["events"][0]["task"] == "event"
    assert "m4: RuntimeError: boom" in rec["error"]
    high = combine_record(doc, [("ner", "m1", ner), ("relation", "m2", rel), ("event", "m3", ev)], threshold=0.75)
    assert [e["text"] for e in high["entities"]] == ["张伟", "张伟"] and len(high["relations"]) == 1 and high["events"] == []


class StrictParser(HTMLParser):
    """Fails on any end tag that does not close the innermost open element."""

    VOID = {"meta", "br", "hr", "img", "input", "link"}

    def __init__(self):
        super().__init__()
        self.stack, self.text = [], []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-5:])
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def test_html_is_well_formed_and_shows_every_item():
    text = "北京大学位于北京，<script>x</script> & more"
    rec = {
        "id": 1,
        "text": text,
        "entities": [
            {"start": 0, "end": 4, "label": "ORG", "text": "北京大学", "score": 0.9, "model": "m"},
            {"start": 0, "end": 2, "label": "LOC", "text": "北京", "score": 0.8, "model": "m"},  # nested
            {"start": 6, "end": 8, "label": "LOC", "text": "北京", "score": 0.7, "model": "m"},
        ],
        "relations": [
            {
                "head": {"text": "北京大学", "label": "ORG"},
                "label": "位于",
                "tail": {"text": "北京", "label": "LOC"},
                "score": 0.6,
            }
        ],
        "events": [
            {
                "label": "位于事件",
                "arguments": [{"role": "trigger", "text": "位于"}, {"role": "place", "text": "北京"}],
                "score": 0.5,
            }
        ],
    }
    html = render([rec, {"line": 2, "error": "bad UTF-8 <x>"}])
    p = StrictParser()
    p.feed(html)
    p.close()
    assert p.stack == []
    body = "".join(p.text)
    assert "<script>" in body and "<script>" not in html.replace("&lt;script&gt;", "")  # escaped, not executed
    for item in ("ORG", "LOC", "位于", "位于事件", "trigger: 位于", "place: 北京", "bad UTF-8 <x>"):
        assert item in body, item
    assert body.count("LOC") >= 2 and "http" not in html  # no external assets


@pytest.fixture(scope="module")
def three_models(tiny_encoder, tmp_path_factory):
    out = tmp_path_factory.mktemp("models")
    common = [
        "--encoder",
        tiny_encoder,
        "--epochs",
        "40",
        "--batch-size",
        "16",
        "--max-length",
        "128",
        "--stride",
        "16",
        "--head-size",
        "16",
        "--lr",
        "5e-3",
        "--head-lr",
        "1e-2",
        "--device",
        "cpu",
    ]
    for task, sub in (("ner", "ner"), ("relation", "relation"), ("event", "event")):
        lang = "zh" if task != "relation" else "en"
        r = run(
            "train",
            task,
            "--train",
            ROOT / "data" / sub / f"{lang}_train.jsonl",
            "--dev",
            ROOT / "data" / sub / f"{lang}_dev.jsonl",
            "--output",
            out / task,
            *common,
        )
        assert r.returncode == 0, r.stderr[-2000:]
    return [out / t / "model" for t in ("ner", "relation", "event")]


def test_pipeline_one_record_per_input_with_bad_input(three_models, tmp_path):
    src = tmp_path / "in.jsonl"
    long_text = "张伟在北京的华为公司工作了三年。" * 1250  # 20,000 characters
    src.write_bytes(
        b'{"id": "a", "text": "\xe5\xbc\xa0\xe4\xbc\x9f\xe5\x9c\xa8\xe5\x8c\x97\xe4\xba\xac"}\n'
        b"\n"
        b'{"id": "b", "text": "\xff\xfe bad"}\n'
        b'{"id": "c", "body": "no text"}\n'
        + json.dumps({"id": "d", "text": long_text}, ensure_ascii=False).encode()
        + b"\n"
        + b'{"id": "e", "text": ""}\n'
    )
    args = [a for m in three_models for a in ("--model", m)]
    r = run("pipeline", *args, "--input", src, "--output", tmp_path / "out.jsonl", "--html", tmp_path / "r.html")
    assert r.returncode == 0, r.stderr[-3000:]
    recs = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [x["line"] for x in recs] == [1, 2, 3, 4, 5, 6]
    assert recs[0]["id"] == "a" and {"entities", "relations", "events"} <= set(recs[0])
    assert "empty line" in recs[1]["error"] and "UTF-8" in recs[2]["error"] and "text" in recs[3]["error"]
    assert recs[4]["id"] == "d" and len(recs[4]["text"]) == 20000 and "error" not in recs[4]
    long_ents = recs[4]["entities"]
    assert len(long_ents) > 100  # the trained NER model finds the repeated names all along the 20,000 characters
    assert all(0 <= e["start"] < e["end"] <= 20000 and e["text"] == recs[4]["text"][e["start"] : e["end"]] for e in long_ents)
    assert max(e["start"] for e in long_ents if e["task"] == "ner") > 15000  # found in the last windows too
    assert recs[5]["text"] == "" and recs[5]["entities"] == []
    tasks = {e["task"] for rec in recs for e in rec.get("entities", [])}
    assert "ner" in tasks and tasks <= {"ner", "relation"}
    scores = [(e["score"], e["model"]) for rec in recs for e in rec.get("entities", [])]
    assert scores and all(0.5 < sc <= 1.0 and m in ("ner", "relation") for sc, m in scores)
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    p = StrictParser()
    p.feed(html)
    assert p.stack == [] and html.count('class="rec"') == 6
    assert "3 records with errors" in r.stdout and "texts/s" in r.stdout


def test_html_stays_small_when_a_model_fires_everywhere():
    from gplinker import html as report

    text = "北京" * 500
    ents = [
        {"start": i, "end": j, "label": "X", "text": text[i:j], "score": 0.5 + (i % 7) / 20}
        for i in range(0, 200)
        for j in range(i + 1, i + 30)
    ]
    html = report.render([{"text": text, "entities": ents, "relations": [], "events": []}])
    assert f"{len(ents) - report.MAX_ITEMS} more entities" in html
    assert html.count('class="lab"') == report.MAX_ITEMS + 1  # and one in the legend


def test_prediction_options_apply_to_the_models_they_fit(three_models, tmp_path):
    """--decode reaches the NER model and --drop-triggerless the event model of one pipeline."""
    src = tmp_path / "in.txt"
    src.write_text("张伟在北京的华为公司工作了三年。\n" + "李娜起诉了华为公司。\n", encoding="utf-8")
    args = [a for m in three_models for a in ("--model", m)]
    r = run("pipeline", *args, "--input", src, "--output", tmp_path / "out.jsonl", "--decode", "flat", "--drop-triggerless")
    assert r.returncode == 0, r.stderr[-3000:]
    recs = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    for rec in recs:
        ner = sorted((e["start"], e["end"]) for e in rec["entities"] if e["task"] == "ner")
        assert all(b[0] >= a[1] for a, b in zip(ner, ner[1:]))
        assert all(any(a["role"] == "trigger" for a in ev["arguments"]) for ev in rec["events"])
    r = run("pipeline", "--model", three_models[1], "--input", src, "--output", tmp_path / "o2.jsonl", "--decode", "flat")
    assert r.returncode == 2 and "--decode is for ner models" in r.stderr


def test_pipeline_records_take_plain_strings_as_documented(three_models):
    from gplinker.combine import Pipeline
    from gplinker.structures import Document

    pipe = Pipeline([(load_model(three_models[0], device="cpu"), "ner")])
    texts = ["王芳在北京的华为公司工作。", "李娜。"]
    got = pipe.records(texts + ["bad \ud800"])
    assert got[:2] == pipe.records([Document(t) for t in texts]) and [r["text"] for r in got[:2]] == texts
    assert "lone surrogate" in got[2]["error"] and len(got) == 3
