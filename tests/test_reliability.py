"""Hostile model directories, crashes mid-save, outputs that would destroy inputs, bad input.

One regression test per defect in docs/reliability.md; the CLI runs in-process (``cli.main``).
"""

import json
import os
import shutil
import sys

import pytest
from conftest import DATA, read

from gplinker import cli, model_dir
from gplinker.io import DataError
from gplinker.structures import Document, Span
from gplinker.tasks import load as load_model
from gplinker.tasks import ner


@pytest.fixture(scope="module")
def saved(trained_ner):
    """A small trained NER model directory and its documents (shared, read-only)."""
    return trained_ner


@pytest.fixture
def model_copy(saved, tmp_path):
    path = tmp_path / "model"
    shutil.copytree(saved[0], path)
    return path


def _predictions(path, docs):
    return [d.entities for d in load_model(path, device="cpu").predict(docs)]


def _edit_config(path, **changes):
    cfg = json.loads((path / model_dir.CONFIG_NAME).read_text())
    cfg.update(changes)
    (path / model_dir.CONFIG_NAME).write_text(json.dumps(cfg))


# ---- 1. a model directory never runs code ----------------------------------------------------------


@pytest.mark.parametrize("task", ["payload:NERTask", "antigravity:X", "tasks.ner:NERTask", "gplinker.tasks.ner:NERTask"])
def test_model_directory_naming_a_module_is_refused_and_nothing_imported(model_copy, monkeypatch, task):
    marker = model_copy / "imported.txt"
    (model_copy / "payload.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\nclass NERTask: pass\n")
    monkeypatch.syspath_prepend(str(model_copy))
    _edit_config(model_copy, task=task)
    before = set(sys.modules)
    with pytest.raises(model_dir.ModelDirError, match="not a registered task"):
        load_model(model_copy, device="cpu")
    assert not marker.exists()
    assert "payload" not in sys.modules and "antigravity" not in sys.modules
    assert not {m for m in set(sys.modules) - before if m.split(".")[0] in ("payload", "antigravity", "tasks")}


def test_pickle_weights_are_refused(model_copy):
    (model_copy / "encoder" / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(model_dir.ModelDirError, match="pickle"):
        load_model(model_copy, device="cpu")


# ---- 2. saves are atomic ---------------------------------------------------------------------------


def test_crash_in_the_middle_of_a_save_leaves_the_previous_model(saved, model_copy, monkeypatch):
    path, docs = model_copy, saved[1]
    before = _predictions(path, docs)
    files_before = {p.relative_to(path): p.read_bytes() for p in path.rglob("*") if p.is_file()}
    ex = load_model(path, device="cpu")
    for p in ex.model.heads.parameters():  # a different model, so a mix would show
        p.data.add_(1.0)

    import gplinker.extractor as extractor_module

    def crash(*a, **k):  # the encoder is already written when the heads are saved
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(extractor_module, "save_file", crash)
    with pytest.raises(OSError):
        ex.save_pretrained(path)
    assert {p.relative_to(path): p.read_bytes() for p in path.rglob("*") if p.is_file()} == files_before
    assert _predictions(path, docs) == before
    assert [p.name for p in path.parent.iterdir() if "partial" in p.name] == []  # no debris


def test_crash_between_the_two_renames_recovers_the_previous_model(saved, model_copy, monkeypatch):
    path, docs = model_copy, saved[1]
    before = _predictions(path, docs)
    ex = load_model(path, device="cpu")
    real = os.replace
    calls = []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the old model moved aside, the new one not yet in place
            raise KeyboardInterrupt
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        ex.save_pretrained(path)
    monkeypatch.setattr(os, "replace", real)
    assert not path.exists()
    assert _predictions(path, docs) == before  # loaded from MODEL.previous, with a warning


def test_a_directory_mixing_two_saves_is_refused(saved, model_copy, tmp_path):
    other = tmp_path / "other"
    ex = load_model(model_copy, device="cpu")
    for p in ex.model.heads.parameters():
        p.data.mul_(2.0)
    ex.save_pretrained(other)
    shutil.copy(other / model_dir.HEADS_NAME, model_copy / model_dir.HEADS_NAME)  # new heads, old encoder + config
    with pytest.raises(model_dir.ModelDirError, match=r"heads.safetensors: does not match the fingerprint"):
        load_model(model_copy, device="cpu")


# ---- 9. broken model directories: one clear error each ------------------------------------------------


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda p: (p / "heads.safetensors").unlink(), "heads.safetensors: missing"),
        (
            lambda p: (p / "heads.safetensors").write_bytes((p / "heads.safetensors").read_bytes()[:100]),
            "does not match the fingerprint",
        ),
        (lambda p: (p / "encoder" / "model.safetensors").unlink(), "model.safetensors: is missing"),
        (lambda p: (p / "gplinker.json").write_text('{"task": "ner", '), "gplinker.json: not valid JSON"),
        (
            lambda p: _edit_config(p, task_config={"labels": ["a", "b", "c", "d", "e", "f", "g"], "decode": "nested"}),
            "do not belong together",
        ),
        (lambda p: _edit_config(p, task_config={"decode": "flat"}), "bad task or model settings"),
        (
            lambda p: (_edit_config(p, fingerprint=None, format_version=1), (p / "heads.safetensors").write_bytes(b"garbage"))[0],
            "heads.safetensors: cannot be read",
        ),
    ],
)
def test_broken_model_directory_gives_one_clear_error(model_copy, damage, message):
    damage(model_copy)
    with pytest.raises(model_dir.ModelDirError, match=message):
        load_model(model_copy, device="cpu")
    rc = cli.main(
        [
            "predict",
            "--model",
            str(model_copy),
            "--input",
            str(DATA / "predict_en.txt"),
            "--output",
            str(model_copy.parent / "p.jsonl"),
        ]
    )
    assert rc == 2


def test_missing_model_path_says_it_does_not_exist(tmp_path, capsys):
    rc = cli.main(["info", str(tmp_path / "nope")])
    assert rc == 2 and "does not exist" in capsys.readouterr().err


# ---- 3. outputs never destroy inputs ---------------------------------------------------------------


def test_output_equal_to_input_is_refused_before_any_work(saved, tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "王芳在杭州工作。"}\n', encoding="utf-8")
    data = src.read_bytes()
    assert cli.main(["predict", "--model", str(saved[0]), "--input", str(src), "--output", str(src)]) == 2
    assert "destroy the input" in capsys.readouterr().err and src.read_bytes() == data
    gold = tmp_path / "gold.jsonl"
    shutil.copy(DATA / "zh_dev.jsonl", gold)
    data = gold.read_bytes()
    assert cli.main(["evaluate", "--model", str(saved[0]), "--data", str(gold), "--output", str(gold)]) == 2
    assert gold.read_bytes() == data
    link = tmp_path / "link.jsonl"
    link.symlink_to(src)  # the same file under another name
    assert cli.main(["predict", "--model", str(saved[0]), "--input", str(src), "--output", str(link)]) == 2


def test_unwritable_output_fails_before_any_work(saved, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc = cli.main(
        ["predict", "--model", str(saved[0]), "--input", str(DATA / "predict_en.txt"), "--output", str(blocker / "out.jsonl")]
    )
    assert rc == 2 and "is a file, not a folder" in capsys.readouterr().err


def test_a_failed_write_keeps_the_previous_output(tmp_path, monkeypatch):
    from gplinker import atomic
    from gplinker.io import write_jsonl

    out = tmp_path / "out.jsonl"
    write_jsonl(out, [{"a": 1}])

    def records():
        yield {"a": 2}
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_jsonl(out, records())
    assert out.read_text() == '{"a": 1}\n' and len(list(tmp_path.iterdir())) == 1
    assert atomic.recover_directory(tmp_path / "nothing") is None


# ---- 4. everything gplinker writes, it reads back ---------------------------------------------------

SEPARATORS = ["\u2028", "\u2029", "\u0085", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\r"]


def test_every_unicode_line_separator_round_trips_through_predict_and_evaluate(saved, tmp_path):
    from gplinker.io import write_jsonl

    texts = [f"王芳{sep}在杭州工作。" for sep in SEPARATORS]
    src = tmp_path / "in.jsonl"
    write_jsonl(src, [{"id": str(k), "text": t} for k, t in enumerate(texts)])
    assert cli.main(["predict", "--model", str(saved[0]), "--input", str(src), "--output", str(tmp_path / "p.jsonl")]) == 0
    back = read("ner", tmp_path / "p.jsonl", "jsonl", labelled=False)
    assert [d.text for d in back] == texts
    gold = tmp_path / "gold.jsonl"
    write_jsonl(gold, [Document(t, (Span(0, 2, "name"),)).to_json() for t in texts])
    assert [d.text for d in read("ner", gold, "jsonl")] == texts
    assert cli.main(["evaluate", "--model", str(saved[0]), "--data", str(gold), "--output", str(tmp_path / "m.json")]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["entities"]["n_gold"] == len(texts)


def test_conll_line_numbers_ignore_unicode_separators(tmp_path):
    p = tmp_path / "x.bmes"
    p.write_text("a\u2028 O\nb O\nc BAD\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        read("ner", p, "conll")
    assert err.value.line == 3


# ---- 5. a wrong --format is an error, not zero annotations ---------------------------------------------


def test_wrong_format_reading_no_annotation_is_an_error(saved, capsys):
    rc = cli.main(["evaluate", "--model", str(saved[0]), "--data", str(DATA / "en_dev.jsonl"), "--format", "cluener"])
    err = capsys.readouterr().err
    assert rc == 2 and "found no ner annotation" in err and "--format" in err


# ---- 6. predict decides the input type properly --------------------------------------------------------


def test_jsonl_with_a_bom_is_jsonl_and_text_starting_with_a_brace_is_text(saved, tmp_path):
    src = tmp_path / "in"  # no extension: sniffed
    src.write_bytes(b'\xef\xbb\xbf{"id": "a", "text": "\xe7\x8e\x8b\xe8\x8a\xb3"}\n{"id": "b", "text": "x"}\n')
    assert cli.main(["predict", "--model", str(saved[0]), "--input", str(src), "--output", str(tmp_path / "o1.jsonl")]) == 0
    recs = [json.loads(x) for x in (tmp_path / "o1.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r.get("id") for r in recs] == ["a", "b"] and recs[0]["text"] == "王芳" and "error" not in recs[0]
    txt = tmp_path / "notes"
    txt.write_text("{not json, just a brace}\n王芳在杭州。\n", encoding="utf-8")
    assert cli.main(["predict", "--model", str(saved[0]), "--input", str(txt), "--output", str(tmp_path / "o2.jsonl")]) == 0
    recs = [json.loads(x) for x in (tmp_path / "o2.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in recs] == ["{not json, just a brace}", "王芳在杭州。"]
    assert (
        cli.main(
            [
                "predict",
                "--model",
                str(saved[0]),
                "--input",
                str(src),
                "--input-format",
                "text",
                "--output",
                str(tmp_path / "o3.jsonl"),
            ]
        )
        == 0
    )
    recs = [json.loads(x) for x in (tmp_path / "o3.jsonl").read_text(encoding="utf-8").splitlines()]
    assert recs[0]["text"].startswith('{"id": "a"')  # the BOM stripped, the line taken as text


def test_predict_isolates_failing_records_and_fails_when_none_succeed(saved, tmp_path, exploding_decoder, capsys):
    src = tmp_path / "in.txt"
    src.write_text("王芳在杭州。\nBOOM here\n李娜。\n", encoding="utf-8")
    out = tmp_path / "o.jsonl"
    assert cli.main(["predict", "--model", str(saved[0]), "--input", str(src), "--output", str(out)]) == 0
    recs = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [r["line"] for r in recs] == [1, 2, 3]
    assert "error" not in recs[0] and "decoder exploded" in recs[1]["error"] and "entities" in recs[2]
    assert "1 failed" in capsys.readouterr().out
    src.write_text("BOOM\nBOOM again\n", encoding="utf-8")
    assert cli.main(["predict", "--model", str(saved[0]), "--input", str(src), "--output", str(out)]) == 1


def test_input_fields_never_overwrite_gplinker_fields(saved, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "王芳", "line": 99, "error": "mine", "entities": "x", "source": "s"}\n', encoding="utf-8")
    for cmd in ("predict", "pipeline"):
        out = tmp_path / f"{cmd}.jsonl"
        assert cli.main([cmd, "--model", str(saved[0]), "--input", str(src), "--output", str(out)]) == 0
        (rec,) = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
        assert rec["line"] == 1 and "error" not in rec and isinstance(rec["entities"], list), cmd
        assert rec["input.line"] == 99 and rec["input.error"] == "mine" and rec["source"] == "s", cmd


# ---- 7. readers validate types, inside their error handling ----------------------------------------------

BAD_RECORDS = [
    ("ner", "cluener", '{"text": null, "label": {}}'),
    ("ner", "cluener", '{"text": 5, "label": {"X": {"a": [[0, 0]]}}}'),
    ("ner", "cluener", '{"text": "abc", "label": {"X": {"a": [[0.0, 0]]}}}'),
    ("ner", "cluener", '{"text": "abc", "label": {"X": {"b": [[true, 1]]}}}'),
    ("ner", "cmeee", '[{"text": 7, "entities": []}]'),
    ("ner", "cmeee", '[{"text": "abc", "entities": [{"start_idx": 0, "end_idx": 1.5, "type": "X"}]}]'),
    ("ner", "cmeee", '[{"text": "abc", "entities": [{"start_idx": 0, "end_idx": 0, "type": null}]}]'),
    ("ner", "cmeee", '[{"text": "abc", "entities": [{"start_idx": 0, "end_idx": 0, "type": 3}]}]'),
    ("ner", "spert", '[{"tokens": "abc", "entities": []}]'),
    ("ner", "genia", '{"tokens": ["a", "b"], "entity_mentions": [{"start": 0, "end": 1, "entity_type": "X", "text": "b"}]}'),
    ("ner", "jsonl", '{"text": "abc", "entities": [{"start": 0, "end": 1, "label": "X", "text": "b"}]}'),
    ("ner", "jsonl", '{"text": "abc", "entities": [{"start": 0, "end": 1, "label": null}]}'),
    ("ner", "jsonl", '{"text": null, "entities": []}'),
    ("relation", "spert", '[{"tokens": "ab", "entities": [], "relations": []}]'),
    ("relation", "spert", '[{"tokens": ["a"], "entities": [{"type": "X", "start": 0.0, "end": 1}], "relations": []}]'),
    ("relation", "casrel", '[{"text": null, "triple_list": []}]'),
    ("relation", "casrel", '[{"text": "a b", "triple_list": [["a", 5, "b"]]}]'),
    ("relation", "duie", '{"text": 3, "spo_list": []}'),
    ("relation", "duie", '{"text": "ab", "spo_list": [{"subject": "a", "predicate": "R", "object": "b", "subject_type": 4}]}'),
    ("event", "duee", '{"text": null, "event_list": []}'),
    ("event", "duee", '{"text": "ab", "event_list": [{"event_type": "E", "trigger": "a", "trigger_start_index": 0.0}]}'),
    ("event", "fewfc", '{"content": 1, "events": []}'),
    (
        "event",
        "fewfc",
        '{"content": "ab", "events": [{"type": "E", "mentions": [{"word": "a", "span": [false, 1], "role": "r"}]}]}',
    ),
    ("event", "phee", '{"context": null, "annotations": []}'),
    (
        "event",
        "phee",
        '{"context": "ab", "annotations": [{"events": [{"event_type": null, "Trigger": {"text": [["a"]], "start": [[0]]}}]}]}',
    ),
]


@pytest.mark.parametrize("task,fmt,content", BAD_RECORDS)
def test_readers_refuse_wrong_types_with_a_data_error(tmp_path, task, fmt, content):
    p = tmp_path / f"bad.{fmt}"
    p.write_text(content + "\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        read(task, p, fmt)
    assert str(p) in str(err.value)


# ---- 8. combining marks stay with their letter ---------------------------------------------------------


def test_decomposed_accents_are_not_cut_off(tokenizer):
    from conftest import oracle_predict

    text = "Jose\u0301 met Zoe\u0308 ."  # decomposed é and ë; the tiny tokenizer strips accents
    assert "\u0301" not in "".join(tokenizer.tokenize(text))  # the mark is dropped by the tokenizer
    gold = [Document(text, (Span(0, 5, "PER"), Span(10, 14, "PER")))]
    task = ner.NERTask(["PER"], "nested")
    pred, _ = oracle_predict(task, tokenizer, gold, policy="strict")
    assert pred[0].entities == gold[0].entities
    assert [s.text_in(text) for s in pred[0].entities] == ["Jose\u0301", "Zoe\u0308"]


# ---- 9. two trainings into one folder -----------------------------------------------------------------


def test_second_training_into_the_same_folder_fails_at_once(tiny_encoder, tmp_path, capsys):
    from gplinker.atomic import OutputLock

    out = tmp_path / "run"
    with OutputLock(out):
        rc = cli.main(
            [
                "train",
                "ner",
                "--train",
                str(DATA / "zh_train.jsonl"),
                "--encoder",
                str(tiny_encoder),
                "--output",
                str(out),
                "--max-steps",
                "1",
                "--device",
                "cpu",
            ]
        )
    assert rc == 2 and "in use by another gplinker job" in capsys.readouterr().err
    assert not (out / "model").exists()


# ---- fuzz: every reader gives documents or a DataError ---------------------------------------------------


def _all_formats():
    from conftest import REGISTRY

    return [(t, f) for t in REGISTRY.names() for f in REGISTRY[t].formats]


def _check_read(task, fmt, path):
    try:
        docs = read(task, path, fmt, labelled=False)
    except DataError:
        return
    for d in docs:  # (offsets inside the text hold by construction: Document refuses others)
        back = Document.from_json(json.loads(json.dumps(d.to_json())))  # what a reader gives, gplinker writes and reads back
        assert (back.text, back.entities, back.relations, back.events) == (d.text, d.entities, d.relations, d.events)


hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 40) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda kids: (
        st.lists(kids, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "text",
                    "content",
                    "context",
                    "label",
                    "entities",
                    "tokens",
                    "start",
                    "end",
                    "type",
                    "start_idx",
                    "end_idx",
                    "entity",
                    "relations",
                    "head",
                    "tail",
                    "triple_list",
                    "spo_list",
                    "subject",
                    "predicate",
                    "object",
                    "event_list",
                    "event_type",
                    "trigger",
                    "trigger_start_index",
                    "arguments",
                    "role",
                    "argument",
                    "argument_start_index",
                    "events",
                    "mentions",
                    "span",
                    "word",
                    "annotations",
                    "Trigger",
                    "entity_mentions",
                    "entity_type",
                    "events",
                ]
            )
            | st.text(max_size=5),
            kids,
            max_size=5,
        )
    ),
    max_leaves=25,
)
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.mark.parametrize("task,fmt", _all_formats())
@FUZZ
@given(data=st.binary(max_size=300))
def test_fuzz_arbitrary_bytes(tmp_path, task, fmt, data):
    p = tmp_path / "fuzz.bin"
    p.write_bytes(data)
    _check_read(task, fmt, p)


@pytest.mark.parametrize("task,fmt", _all_formats())
@FUZZ
@given(records=st.lists(JSON, min_size=1, max_size=3), as_array=st.booleans())
def test_fuzz_arbitrary_json(tmp_path, task, fmt, records, as_array):
    p = tmp_path / "fuzz.json"
    text = json.dumps(records) if as_array else "\n".join(json.dumps(r) for r in records)
    p.write_text(text, encoding="utf-8")
    _check_read(task, fmt, p)


@pytest.mark.parametrize("task,fmt", _all_formats())
@FUZZ
@given(text=st.text(max_size=40), k=st.integers(0, 45), m=st.integers(-2, 45), label=JSON)
def test_fuzz_plausible_records(tmp_path, task, fmt, text, k, m, label):
    """Records shaped like the format with arbitrary values in the fields."""
    recs = [
        {
            "text": text,
            "label": {"X": {text[k:m]: [[k, m]]}} if isinstance(label, bool) else label,
            "entities": [{"start": k, "end": m, "label": label, "start_idx": k, "end_idx": m, "type": label}],
            "tokens": text.split() or [text],
            "relations": [{"head": k, "tail": m, "type": label}],
            "triple_list": [[text[:k], label, text[k:m]]],
            "spo_list": [{"subject": text[:k], "predicate": label, "object": text[k:]}],
            "event_list": [{"event_type": label, "trigger": text[k:m], "trigger_start_index": k, "arguments": []}],
            "content": text,
            "events": [{"type": label, "mentions": [{"word": text[k:m], "span": [k, m], "role": label}]}],
            "context": text,
            "annotations": [{"events": [{"event_type": label, "Trigger": {"text": [[text[k:m]]], "start": [[k]]}}]}],
        }
    ]
    p = tmp_path / "fuzz.json"
    p.write_text(json.dumps(recs), encoding="utf-8")
    _check_read(task, fmt, p)
    p.write_text("\n".join(json.dumps(r) for r in recs), encoding="utf-8")
    _check_read(task, fmt, p)
