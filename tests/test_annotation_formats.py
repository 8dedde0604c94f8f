"""Label Studio and doccano in and out: round trips of the shipped examples, every odd case of an
export with its defined outcome, labelling configs, and the convert command."""

import json
from pathlib import Path

import pytest

from gplinker import doccano
from gplinker import label_studio as ls
from gplinker.cli import main
from gplinker.io import DataError
from gplinker.structures import Argument, Document, Event, Relation, Span

DATA = Path(__file__).resolve().parents[1] / "data"


def docs_of(task: str) -> list[Document]:
    from gplinker.tasks import default_registry

    return default_registry()[task].read(DATA / task / "en_train.jsonl")


def export_of(tasks: list[dict], path: Path) -> Path:
    """``tasks`` (from :func:`ls.tasks_of`) as Label Studio exports them: ids, annotation metadata."""
    out = []
    for k, t in enumerate(tasks, start=1):
        anns = [{"id": 100 + k, "result": a["result"], "was_cancelled": False, "created_at": "2026-01-01T00:00:00Z",
                 "updated_at": "2026-01-01T00:00:00Z", "completed_by": 1} for a in t.get("annotations", [])]  # fmt: skip
        out.append({"id": k, "data": t["data"], "annotations": anns, "predictions": t.get("predictions", [])})
    path.write_text(json.dumps(out, ensure_ascii=False), encoding="utf-8")
    return path


def region(rid, start, end, labels, text, control="label"):
    return {"id": rid, "from_name": control, "to_name": "text", "type": "labels",
            "value": {"start": start, "end": end, "text": text[start:end], "labels": labels}}  # fmt: skip


def one_task(tmp_path, text, result, **task) -> Path:
    ann = {"id": 1, "result": result, "was_cancelled": False, "updated_at": "2026-01-01T00:00:00Z"}
    return write(tmp_path, [{"id": 7, "data": {"text": text}, "annotations": [ann], **task}])


def write(tmp_path, obj, name="export.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return p


# ---- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["ner", "relation", "event"])
def test_label_studio_round_trip_keeps_every_item_and_offset(tmp_path, task):
    docs = docs_of(task)
    config = ls.LabelConfig.parse(ls.LabelConfig.for_schema(ls.schema_of(docs)).to_xml())
    tasks, report = ls.tasks_of(docs, config)
    assert report.dropped == {}
    back, read_report = ls.read_export_report(export_of(tasks, tmp_path / "e.json"))
    assert len(back) == len(docs) and read_report.documents == len(docs)
    for a, b in zip(docs, back):
        assert b.text == a.text
        assert b.relations == a.relations and b.events == a.events
        assert set(a.entities) <= set(b.entities)  # event arguments come back as regions (entities) too
        extra = set(b.entities) - set(a.entities)
        assert {(s.start, s.end) for s in extra} <= {(x.start, x.end) for e in a.events for x in e.arguments}


@pytest.mark.parametrize("task", ["ner", "relation"])
def test_doccano_round_trip_through_convert(tmp_path, task, capsys):
    src = DATA / task / "en_train.jsonl"
    assert main(["convert", "--input", str(src), "--to", "doccano", "--output", str(tmp_path / "d.jsonl")]) == 0
    first = json.loads((tmp_path / "d.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert ("entities" in first and "relations" in first) if task == "relation" else ("label" in first)
    assert main(["convert", "--input", str(tmp_path / "d.jsonl"), "--to", "jsonl", "--output", str(tmp_path / "b.jsonl")]) == 0
    assert "format doccano" in capsys.readouterr().out
    back = [Document.from_json(json.loads(x)) for x in (tmp_path / "b.jsonl").read_text(encoding="utf-8").splitlines()]
    docs = docs_of(task)
    assert [(d.text, d.entities, d.relations) for d in back] == [(d.text, d.entities, d.relations) for d in docs]


def test_convert_to_label_studio_writes_tasks_and_the_config(tmp_path, capsys):
    out, xml = tmp_path / "tasks.json", tmp_path / "config.xml"
    argv = ["convert", "--input", str(DATA / "event" / "en_train.jsonl"), "--to", "label-studio", "--output", str(out)]
    assert main(argv + ["--label-config", str(xml)]) == 0
    config = ls.LabelConfig.parse(xml.read_text(encoding="utf-8"))
    assert set(config.event_types) == {e.label for d in docs_of("event") for e in d.events}
    tasks = json.loads(out.read_text(encoding="utf-8"))
    assert len(tasks) == len(docs_of("event")) and all(t["annotations"][0]["result"] for t in tasks)
    back = ls.read_export(export_of(tasks, tmp_path / "e.json"))
    assert [d.events for d in back] == [d.events for d in docs_of("event")]


def test_events_cannot_go_to_doccano(tmp_path, capsys):
    argv = ["convert", "--input", str(DATA / "event" / "en_train.jsonl"), "--to", "doccano", "--output", str(tmp_path / "d")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "doccano cannot hold" in err and "--to label-studio" in err and not (tmp_path / "d").exists()


def test_formats_are_detected_for_every_task(tmp_path):
    from gplinker.tasks import default_registry

    reg = default_registry()
    tasks, _ = ls.tasks_of(docs_of("relation"), ls.LabelConfig.for_schema(ls.schema_of(docs_of("relation"))))
    export = export_of(tasks, tmp_path / "e.json")
    seq = tmp_path / "seq.jsonl"
    seq.write_text(json.dumps({"id": 1, "text": "Ann met Bo", "label": [[0, 3, "PER"], [8, 10, "PER"]]}) + "\n", encoding="utf-8")
    rel = tmp_path / "rel.jsonl"
    rel.write_text("\n".join(json.dumps(doccano.record_of(d)) for d in docs_of("relation")) + "\n", encoding="utf-8")
    assert reg["relation"].resolve_format(export) == "label-studio"
    assert reg["event"].resolve_format(export) == "label-studio"
    assert reg["ner"].resolve_format(seq) == "doccano"
    assert reg["relation"].resolve_format(rel) == "doccano"
    assert [s.label for s in reg["ner"].read(seq)[0].entities] == ["PER", "PER"]


# ---- the odd cases of a Label Studio export ----------------------------------------------------------


def test_a_region_with_several_labels_is_one_entity_per_label(tmp_path):
    text = "Paris Hilton"
    docs, report = ls.read_export_report(one_task(tmp_path, text, [region("a", 0, 5, ["LOC", "PER"], text)]))
    assert docs[0].entities == (Span(0, 5, "LOC"), Span(0, 5, "PER")) and report.multi_label == 1


def test_overlapping_regions_are_kept_as_nested_entities(tmp_path):
    text = "Bank of China Beijing"
    result = [region("a", 0, 13, ["ORG"], text), region("b", 8, 13, ["LOC"], text), region("c", 8, 13, ["LOC"], text)]
    assert ls.read_export(one_task(tmp_path, text, result))[0].entities == (Span(0, 13, "ORG"), Span(8, 13, "LOC"))


def test_a_relation_to_a_missing_region_names_the_task_and_region(tmp_path):
    text = "Ann met Bo"
    result = [region("a", 0, 3, ["PER"], text), {"type": "relation", "from_id": "a", "to_id": "zz", "labels": ["met"]}]
    with pytest.raises(DataError) as e:
        ls.read_export(one_task(tmp_path, text, result))
    assert "task 7" in str(e.value) and "region zz" in str(e.value) and "record 1 of the JSON array" in str(e.value)


def test_relation_directions_and_unlabelled_relations(tmp_path):
    text = "Ann met Bo"
    result = [
        region("a", 0, 3, ["PER"], text),
        region("b", 8, 10, ["PER"], text),
        {"type": "relation", "from_id": "b", "to_id": "a", "direction": "left", "labels": ["met"]},
        {"type": "relation", "from_id": "a", "to_id": "b", "direction": "right", "labels": []},
    ]
    docs, report = ls.read_export_report(one_task(tmp_path, text, result))
    assert docs[0].relations == (Relation(Span(0, 3, "PER"), "met", Span(8, 10, "PER")),) and report.unlabelled == 1


def test_cancelled_and_several_annotations_take_the_latest_live_one(tmp_path):
    text = "Ann met Bo"

    def ann(i, label, updated, cancelled=False):
        return {"id": i, "was_cancelled": cancelled, "updated_at": updated, "result": [region("a", 0, 3, [label], text)]}

    tasks = [
        {
            "id": 1,
            "data": {"text": text},
            "annotations": [ann(1, "OLD", "2026-01-01"), ann(2, "NEW", "2026-02-01"), ann(3, "CANCELLED", "2026-03-01", True)],
        },  # fmt: skip
        {"id": 2, "data": {"text": text}, "annotations": [ann(4, "X", "2026-01-01", True)]},
        {"id": 3, "data": {"text": text}, "annotations": [], "predictions": [{"result": [region("a", 0, 3, ["P"], text)]}]},
    ]
    docs, report = ls.read_export_report(write(tmp_path, tasks))
    assert [d.entities for d in docs] == [(Span(0, 3, "NEW"),)]
    assert (report.several, report.cancelled, report.unannotated) == (1, 2, 2)
    assert any("latest non-cancelled" in x for x in report.lines())


def test_utf16_offsets_are_converted_and_wrong_offsets_refused(tmp_path):
    text = "😀 Ann met Bo"  # the emoji is one character, two UTF-16 units
    utf16 = {"id": "a", "from_name": "label", "to_name": "text", "type": "labels",
             "value": {"start": 3, "end": 6, "text": "Ann", "labels": ["PER"]}}  # fmt: skip
    docs, report = ls.read_export_report(one_task(tmp_path, text, [utf16]))
    assert docs[0].entities == (Span(2, 5, "PER"),) and report.utf16 == 1
    wrong = {**utf16, "value": {**utf16["value"], "start": 7, "end": 10}}
    with pytest.raises(DataError, match="region a: its text 'Ann' is not what"):
        ls.read_export(one_task(tmp_path, text, [wrong]))


def test_other_results_and_unlabelled_regions_are_counted_not_read(tmp_path):
    text = "Ann met Bo"
    result = [
        {"id": "c", "from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["pos"]}},
        region("a", 0, 3, [], text),
        region("b", 8, 10, ["PER"], text),
    ]
    docs, report = ls.read_export_report(one_task(tmp_path, text, result))
    assert docs[0].entities == (Span(8, 10, "PER"),) and (report.other, report.unlabelled) == (1, 1)


def test_events_read_from_trigger_regions_and_role_links(tmp_path):
    text = "Ann sued Bo in Rome"
    result = [
        region("t", 4, 8, ["Lawsuit"], text, control="trigger"),
        region("p", 0, 3, ["plaintiff"], text),
        region("d", 9, 11, ["PER"], text),
        {"type": "relation", "from_id": "t", "to_id": "p", "labels": ["plaintiff"]},
        {"type": "relation", "from_id": "d", "to_id": "t", "labels": ["defendant"]},  # drawn backwards: still an argument
    ]
    doc = ls.read_export(one_task(tmp_path, text, result))[0]
    assert doc.events == (
        Event("Lawsuit", (Argument("trigger", 4, 8), Argument("plaintiff", 0, 3), Argument("defendant", 9, 11))),
    )
    assert doc.relations == ()


def test_json_min_and_other_exports_get_a_clear_error(tmp_path):
    from gplinker.tasks import default_registry

    json_min = [{"text": "Ann", "id": 1, "label": [{"start": 0, "end": 3, "text": "Ann", "labels": ["PER"]}],
                 "annotator": 1, "annotation_id": 1, "created_at": "2026-01-01", "lead_time": 2.0}]  # fmt: skip
    path = write(tmp_path, json_min)
    with pytest.raises(DataError, match="use Label Studio's JSON export|JSON export"):
        ls.read_export(path)
    with pytest.raises(DataError, match="JSON export"):
        default_registry()["ner"].read(path)  # auto detection sends it to the reader that explains


def test_the_text_field_is_text_or_the_only_string(tmp_path):
    text = "Ann met Bo"
    p = write(
        tmp_path, [{"id": 1, "data": {"sentence": text, "n": 3}, "annotations": [{"result": [region("a", 0, 3, ["PER"], text)]}]}]
    )
    doc = ls.read_export(p)[0]
    assert doc.text == text and doc.meta == {"n": 3} and doc.id == "1"
    p = write(tmp_path, [{"id": 1, "data": {"a": text, "b": text}, "annotations": [{"result": []}]}])
    with pytest.raises(DataError, match='no "text" field and 2 string fields'):
        ls.read_export(p)


# ---- labelling configs -------------------------------------------------------------------------


def test_a_users_config_is_read_and_predictions_written_for_it(tmp_path):
    xml = """<View>
      <Text name="doc" value="$sentence"/>
      <Labels name="ents" toName="doc"><Label value="PER"/><Label value="ORG"/></Labels>
      <Relations><Relation value="works_for"/></Relations>
    </View>"""
    config = ls.LabelConfig.parse(xml)
    assert (config.text_name, config.data_key, config.relations) == ("doc", "sentence", ("works_for",))
    text = "Ann works for Acme in Rome"
    doc = Document(text, (Span(0, 3, "PER"), Span(14, 18, "ORG"), Span(22, 26, "LOC", 0.9)),
                   (Relation(Span(0, 3, "PER"), "works_for", Span(14, 18, "ORG"), 0.8),
                    Relation(Span(14, 18, "ORG"), "based_in", Span(22, 26, "LOC"))))  # fmt: skip
    report = ls.WriteReport()
    task = ls.task_of(doc, config, report, as_predictions="m")
    result = task["predictions"][0]["result"]
    assert task["data"] == {"sentence": text}
    assert {r["value"]["text"] for r in result if r["type"] == "labels"} == {"Ann", "Acme"}
    assert all(r["from_name"] == "ents" and r["to_name"] == "doc" for r in result if r["type"] == "labels")
    assert [r["labels"] for r in result if r["type"] == "relation"] == [["works_for"]]
    assert report.dropped == {"entity label 'LOC' is not in the labelling config": 2}
    assert task["predictions"][0]["score"] == 0.8 and task["predictions"][0]["model_version"] == "m"
    assert config.unknown_to(ls.schema_of([doc])) == {}  # every label the config offers, the document has
    from gplinker.task import Schema

    assert ls.LabelConfig.parse(xml).unknown_to(Schema(entities=("PER",))) == {
        "entity labels": ["ORG"],
        "relation labels": ["works_for"],
    }


@pytest.mark.parametrize(
    "xml, problem",
    [("", "empty"), ("<View><Text", "not valid XML"), ("<View><Labels name='l' toName='t'/></View>", "no <Text")],
)
def test_bad_configs_say_what_is_wrong(xml, problem):
    with pytest.raises(ValueError, match=problem):
        ls.LabelConfig.parse(xml)


def test_triggerless_events_are_left_out_and_counted():
    doc = Document("Ann sued Bo", events=(Event("Lawsuit", (Argument("plaintiff", 0, 3),)),))
    report = ls.WriteReport()
    assert ls.results_of(doc, ls.LabelConfig.for_schema(ls.schema_of([doc])), report) == []
    assert report.dropped == {"an event without a trigger (it cannot be drawn as a trigger region)": 1}


# ---- doccano's odd cases ---------------------------------------------------------------------------


def test_doccano_forms_and_errors(tmp_path):
    p = tmp_path / "d.jsonl"
    lines = [
        {"id": 1, "text": "Ann met Bo", "label": [[0, 3, "PER"]], "Comments": []},
        {"id": 2, "data": "Ann met Bo", "labels": [[8, 10, "PER"]]},
        {"id": 3, "text": "Ann met Bo", "entities": [{"id": 5, "label": "PER", "start_offset": 0, "end_offset": 3},
                                                     {"id": 6, "label": "PER", "start_offset": 8, "end_offset": 10}],
         "relations": [{"id": 1, "from_id": 5, "to_id": 6, "type": "met"}]},
    ]  # fmt: skip
    p.write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    docs = doccano.read(p)
    assert [d.entities for d in docs[:2]] == [(Span(0, 3, "PER"),), (Span(8, 10, "PER"),)]
    assert docs[2].relations == (Relation(Span(0, 3, "PER"), "met", Span(8, 10, "PER")),)
    assert docs[0].meta == {"Comments": []}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": 1, "text": "nice", "label": ["positive"]}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 1.*text-classification export"):
        doccano.read(bad)
    lines[2]["relations"][0]["to_id"] = 9
    p.write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 3.*links entity 9"):
        doccano.read(p)


def test_a_doccano_export_trains_with_one_command(tmp_path, tiny_encoder):
    export = tmp_path / "doccano.jsonl"
    export.write_text("\n".join(json.dumps(doccano.record_of(d)) for d in docs_of("ner")) + "\n", encoding="utf-8")
    argv = ["train", "ner", "--train", str(export), "--encoder", str(tiny_encoder), "--output", str(tmp_path / "m"),
            "--device", "cpu", "--epochs", "1", "--head-size", "16", "--max-length", "48"]  # fmt: skip
    assert main(argv) == 0
    config = json.loads((tmp_path / "m" / "model" / "gplinker.json").read_text())
    assert sorted(config["task_config"]["labels"]) == sorted({s.label for d in docs_of("ner") for s in d.entities})
