"""Readers of the published NER formats, auto-detection, and errors that name file and line."""

import json

import pytest
from conftest import DATA, REGISTRY, read

from gplinker.io import DataError


@pytest.mark.parametrize(
    "name,fmt",
    [
        ("zh_train.jsonl", "jsonl"),
        ("cluener_sample.json", "cluener"),
        ("cmeee_sample.json", "cmeee"),
        ("resume_sample.char.bmes", "conll"),
        ("spert_sample.json", "spert"),
        ("genia_sample.jsonlines", "genia"),
    ],
)
def test_auto_detects_format(name, fmt):
    from gplinker.io import detect_format

    formats = REGISTRY["ner"].formats
    assert detect_format(DATA / name, {k: f.sniff for k, f in formats.items() if f.sniff}) == fmt


def test_formats_agree_on_the_same_sentences():
    canonical = read("ner", DATA / "zh_train.jsonl")
    for name in ("cluener_sample.json", "resume_sample.char.bmes"):
        docs = read("ner", DATA / name)
        assert [d.text for d in docs] == [d.text for d in canonical[: len(docs)]]
        if name.startswith("cluener"):
            assert [d.entities for d in docs] == [d.entities for d in canonical[: len(docs)]]
        else:  # BMES labels are upper-cased
            assert [[(s.start, s.end, s.label.lower()) for s in d.entities] for d in docs] == [
                [(s.start, s.end, s.label) for s in d.entities] for d in canonical[: len(docs)]
            ]


def test_cluener_inclusive_end_and_surface(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(
        '{"text": "浙商银行叶老桂", "label": {"company": {"浙商银行": [[0, 3]]}, "name": {"叶老桂": [[4, 6]]}}}', encoding="utf-8"
    )
    (d,) = read("ner", path, "cluener")
    assert [(s.start, s.end, s.label, d.text[s.start : s.end]) for s in d.entities] == [
        (0, 4, "company", "浙商银行"),
        (4, 7, "name", "叶老桂"),
    ]


def test_spert_rebuilds_text_and_offsets():
    docs = read("ner", DATA / "spert_sample.json")
    raw = json.loads((DATA / "spert_sample.json").read_text())
    assert len(docs) == len(raw)
    for d, r in zip(docs, raw):
        assert d.text == " ".join(r["tokens"])
        assert len(d.entities) == len({(e["start"], e["end"], e["type"]) for e in r["entities"]})  # none dropped
        for e, s in zip(sorted(r["entities"], key=lambda e: (e["start"], e["end"])), sorted(d.entities)):
            assert d.text[s.start : s.end] == " ".join(r["tokens"][e["start"] : e["end"]])


def test_conll_variants(tmp_path):
    bio = tmp_path / "bio.txt"
    bio.write_text("张 B-PER\n伟 I-PER\n在 O\n北 B-LOC\n京 I-LOC\n\n上 B-LOC\n海 I-LOC\n", encoding="utf-8")
    docs = read("ner", bio, "conll")
    assert [(d.text, [(s.start, s.end, s.label) for s in d.entities]) for d in docs] == [
        ("张伟在北京", [(0, 2, "PER"), (3, 5, "LOC")]),
        ("上海", [(0, 2, "LOC")]),
    ]
    weibo = tmp_path / "weibo.txt"  # character with a glued segmentation digit
    weibo.write_text("张0 B-PER.NAM\n伟1 I-PER.NAM\n好0 O\n", encoding="utf-8")
    (d,) = read("ner", weibo, "conll")
    assert d.text == "张伟好" and [(s.start, s.end, s.label) for s in d.entities] == [(0, 2, "PER.NAM")]
    three = tmp_path / "seg.txt"  # a middle column of segmentation digits
    three.write_text("张 0 S-PER\n在 1 O\n", encoding="utf-8")
    (d,) = read("ner", three, "conll")
    assert d.text == "张在" and [(s.start, s.end) for s in d.entities] == [(0, 1)]
    words = tmp_path / "en.txt"  # word-per-line files join with spaces
    words.write_text("John B-PER\nSmith E-PER\nruns O\n", encoding="utf-8")
    (d,) = read("ner", words, "conll")
    assert d.text == "John Smith runs" and [(s.start, s.end) for s in d.entities] == [(0, 10)]


@pytest.mark.parametrize(
    "fmt,content,line",
    [
        ("conll", "张 B-PER\n伟 I-PER\n在O\n", 3),
        ("conll", "张 B-PER\n伟 X-PER\n", 2),
        (
            "cluener",
            '{"text": "北京", "label": {"address": {"北京": [[0, 1]]}}}\n{"text": "上海", "label": {"address": {"上海": [[0, 5]]}}}\n',
            2,
        ),
        ("cluener", '{"text": "北京", "label": {}}\n{"text": "上海" "label"}\n', 2),
        ("jsonl", '{"text": "abc", "entities": []}\n{"text": "abc", "entities": [{"start": 0, "end": 9, "label": "X"}]}\n', 2),
        (
            "genia",
            '{"tokens": ["a"], "entity_mentions": []}\n{"tokens": ["a"], "entity_mentions": [{"start": 0, "end": 3, "entity_type": "x"}]}\n',
            2,
        ),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, fmt, content, line):
    path = tmp_path / f"bad.{fmt}"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as err:
        read("ner", path, fmt)
    assert err.value.line == line and str(path) in str(err.value)
    assert f"line {line}" in str(err.value)


def test_json_array_error_names_record(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(
        json.dumps(
            [
                {"text": "胃痛", "entities": []},
                {"text": "胃痛", "entities": [{"start_idx": 0, "end_idx": 0, "type": "bod", "entity": "痛"}]},
            ]
        ),
        encoding="utf-8",
    )
    with pytest.raises(DataError, match="record 2"):
        read("ner", path, "cmeee")


def test_non_utf8_file_is_reported_with_line(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("a O\n".encode() + "é O\n".encode("latin-1"))
    with pytest.raises(DataError, match="line 2"):
        read("ner", path, "conll")


def test_unknown_format_lists_choices(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("nothing to see\n", encoding="utf-8")
    with pytest.raises(DataError, match="--format"):
        read("ner", path)
