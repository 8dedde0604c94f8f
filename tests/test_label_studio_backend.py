"""Pre-annotation with a trained model: ``predict --output-format label-studio``, the server's
Label Studio ML-backend routes, and ``info --label-studio-config``."""

import json

import pytest
from conftest import ROOT, read

from gplinker import label_studio as ls
from gplinker.cli import main
from gplinker.structures import Document

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from gplinker.combine import Pipeline  # noqa: E402
from gplinker.server import ServeSettings, create_app  # noqa: E402
from gplinker.tasks import load as load_model  # noqa: E402


@pytest.fixture(scope="module")
def pipeline(trained_ner):
    return Pipeline([(load_model(trained_ner[0], device="cpu"), "ner")])


@pytest.fixture
def client(pipeline):
    with TestClient(create_app(pipeline, ServeSettings(max_wait_ms=1)), base_url="http://127.0.0.1") as c:
        yield c


def accepted(tasks: list[dict]) -> list[dict]:
    """Tasks as exported after an annotator accepted each prediction unchanged."""
    return [
        {"id": k, "data": t["data"], "annotations": [{"id": k, "result": t["predictions"][0]["result"]}]}
        for k, t in enumerate(tasks)
    ]


def test_predict_writes_label_studio_tasks_that_read_back_as_the_predictions(trained_ner, tmp_path, capsys):
    model, docs = trained_ner
    src = tmp_path / "in.jsonl"
    src.write_text(
        "".join(json.dumps({"id": f"d{k}", "text": d.text}) + "\n" for k, d in enumerate(docs)) + "{bad\n", encoding="utf-8"
    )
    assert (
        main(["predict", "--model", str(model), "--input", str(src), "--output", str(tmp_path / "p.jsonl"), "--device", "cpu"])
        == 0
    )
    argv = ["predict", "--model", str(model), "--input", str(src), "--output", str(tmp_path / "t.json"), "--device", "cpu"]
    assert main(argv + ["--output-format", "label-studio"]) == 0
    out = capsys.readouterr()
    assert f"{len(docs)} Label Studio tasks with predictions" in out.out and "1 failed" in out.out and "line 9" in out.err
    tasks = json.loads((tmp_path / "t.json").read_text(encoding="utf-8"))
    assert [t["data"]["id"] for t in tasks] == [f"d{k}" for k in range(len(docs))]
    pred = tasks[0]["predictions"][0]
    assert pred["model_version"].startswith("trained_ner") and pred["result"] and 0 < pred["score"] <= 1
    assert all(r["value"]["text"] == tasks[0]["data"]["text"][r["value"]["start"] : r["value"]["end"]] for r in pred["result"])
    export = tmp_path / "export.json"
    export.write_text(json.dumps(accepted(tasks), ensure_ascii=False), encoding="utf-8")
    records = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text(encoding="utf-8").splitlines() if "error" not in x]
    expected = [Document.from_json({"text": r["text"], "entities": r["entities"]}).entities for r in records]
    assert [d.entities for d in ls.read_export(export)] == expected
    assert sum(map(len, expected)) >= len(docs)  # the fitted model finds the entities: the comparison is not vacuous


def test_predict_for_a_projects_own_config(trained_ner, tmp_path, capsys):
    model, docs = trained_ner
    labels = sorted({s.label for d in docs for s in d.entities})
    xml = tmp_path / "config.xml"
    xml.write_text(
        f'<View><Text name="t" value="$body"/><Labels name="ner" toName="t"><Label value="{labels[0]}"/></Labels></View>'
    )
    src = tmp_path / "in.txt"
    src.write_text("\n".join(d.text for d in docs) + "\n", encoding="utf-8")
    argv = ["predict", "--model", str(model), "--input", str(src), "--output", str(tmp_path / "t.json"), "--device", "cpu"]
    assert main(argv + ["--output-format", "label-studio", "--label-config", str(xml)]) == 0
    tasks = json.loads((tmp_path / "t.json").read_text(encoding="utf-8"))
    results = [r for t in tasks for r in t["predictions"][0]["result"]]
    assert "body" in tasks[0]["data"] and results
    assert {r["value"]["labels"][0] for r in results} == {labels[0]} and {r["from_name"] for r in results} == {"ner"}
    assert "left out: entity label" in capsys.readouterr().out
    assert main(argv + ["--label-config", str(xml)]) == 2  # a config without label-studio output is a mistake
    assert "--label-config is used with --output-format label-studio only" in capsys.readouterr().err


def test_info_prints_a_config_with_the_models_labels(trained_ner, capsys):
    model, docs = trained_ner
    assert main(["info", str(model), "--label-studio-config"]) == 0
    config = ls.LabelConfig.parse(capsys.readouterr().out)
    assert set(config.entity_controls[0][1]) == {s.label for d in docs for s in d.entities}
    assert config.relations is None and config.event_types is None


def test_ml_backend_health_setup_and_predict(client, pipeline, trained_ner):
    _, docs = trained_ner
    health = client.get("/label-studio/health").json()
    assert health["status"] == "UP" and health["model_version"].startswith("ner (gplinker")
    assert client.get("/label-studio").json()["status"] == "UP"
    labels = sorted({s.label for d in docs for s in d.entities})
    xml = ls.LabelConfig.for_schema(ls.schema_of(docs)).to_xml().replace("</Labels>", '<Label value="Unknown"/></Labels>')
    setup = client.post("/label-studio/setup", json={"project": "3.1700000000", "schema": xml}).json()
    assert setup["unknown_labels"] == {"entity labels": ["Unknown"]} and setup["model_version"] == health["model_version"]
    tasks = [{"id": k, "data": {"text": d.text}} for k, d in enumerate(docs[:4])] + [{"id": 99, "data": {"other": "x"}}]
    body = {"tasks": tasks, "label_config": xml, "project": "3.1700000000", "params": {"context": None}}
    results = client.post("/label-studio/predict", json=body).json()["results"]
    assert len(results) == len(tasks) and results[-1]["result"] == []
    offline = pipeline.records([Document(d.text) for d in docs[:4]])
    for res, rec, task in zip(results, offline, tasks):
        got = ls.document_of(task, {"result": res["result"]}, ls.ReadReport()).entities
        assert got == Document.from_json({"text": rec["text"], "entities": rec["entities"]}).entities
        assert {r["value"]["labels"][0] for r in res["result"]} <= set(labels)
    after = client.get("/label-studio/health").json()
    assert (after["tasks"], after["predicted"], after["skipped"], after["setups"]) == (5, 4, 1, 1)


def test_ml_backend_refuses_what_label_studio_never_sends(client):
    assert (
        client.post("/label-studio/predict", content=b"[1, 2]", headers={"content-type": "application/json"}).status_code == 422
    )
    assert client.post("/label-studio/predict", json={"tasks": "x"}).status_code == 422
    r = client.post("/label-studio/setup", json={"schema": "<View>"})
    assert r.status_code == 422 and "not valid XML" in r.json()["error"]
    assert client.post("/label-studio/webhook", json={"action": "ANNOTATION_CREATED"}).json()["status"] == "ignored"


def test_ml_backend_sits_behind_the_api_key(pipeline):
    import base64

    app = create_app(pipeline, ServeSettings(max_wait_ms=1, api_key="s3cret"))
    with TestClient(app, base_url="http://127.0.0.1") as c:
        assert c.get("/label-studio/health").status_code == 401
        basic = base64.b64encode(b"labelstudio:s3cret").decode()  # Label Studio's "Basic auth" of an ML backend
        assert c.get("/label-studio/health", headers={"Authorization": f"Basic {basic}"}).json()["status"] == "UP"


def test_training_reads_a_label_studio_export(tiny_encoder, tmp_path, capsys):
    docs = read("relation", ROOT / "data" / "relation" / "en_train.jsonl")
    tasks, _ = ls.tasks_of(docs, ls.LabelConfig.for_schema(ls.schema_of(docs)))
    export = tmp_path / "project.json"
    export.write_text(json.dumps([{"id": k, **t} for k, t in enumerate(tasks)]), encoding="utf-8")
    argv = ["train", "relation", "--train", str(export), "--encoder", str(tiny_encoder), "--output", str(tmp_path / "m"),
            "--device", "cpu", "--epochs", "1", "--head-size", "16", "--max-length", "48"]  # fmt: skip
    assert main(argv) == 0
    info = json.loads((tmp_path / "m" / "model" / "gplinker.json").read_text())
    assert sorted(info["task_config"]["predicates"]) == sorted({r.label for d in docs for r in d.relations})
