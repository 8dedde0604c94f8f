"""The annotation loop against a real Label Studio (SQLite, 127.0.0.1, a generated user and token):
a project made with gplinker's labelling config, tasks imported with gplinker's pre-annotations,
``gplinker serve`` connected as the project's ML backend and asked for predictions by Label
Studio itself, the project exported as JSON and read back by gplinker -- entities, relations and
events equal, offsets equal -- and the export trains the next model with one command.

Label Studio is not a dependency of gplinker (it pins its own Django stack): the test runs when
``GPLINKER_LABEL_STUDIO`` names its ``label-studio`` executable or one is on the PATH; ``.ci/run``
installs it in a virtual environment of its own and sets the variable.
"""

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gplinker import label_studio as ls
from gplinker.cli import main
from gplinker.structures import Document

LS_BIN = os.environ.get("GPLINKER_LABEL_STUDIO") or shutil.which("label-studio")
pytestmark = [
    pytest.mark.label_studio,
    pytest.mark.skipif(not LS_BIN, reason="Label Studio is not installed (.ci/run installs it; set GPLINKER_LABEL_STUDIO)"),
]
httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen, log: Path, seconds: float) -> None:
    end = time.time() + seconds
    while time.time() < end:
        if proc.poll() is not None:
            pytest.fail(f"{url} exited ({proc.returncode}): {log.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    proc.kill()
    pytest.fail(f"{url} did not answer within {seconds:.0f} s: {log.read_text(errors='replace')[-3000:]}")


def start(argv: list[str], log: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, cwd=log.parent)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    """(base URL, an httpx client logged in with the generated user's token)."""
    home = tmp_path_factory.mktemp("label_studio")
    port, token = free_port(), secrets.token_hex(20)
    # Label Studio refuses ML backends on loopback addresses unless both of these are off
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LABEL_STUDIO_BASE_DATA_DIR": str(home), "HOME": str(home),
           "ML_BLOCK_LOCAL_IP": "false", "SSRF_PROTECTION_ENABLED": "false"}  # fmt: skip
    env.pop("DJANGO_SETTINGS_MODULE", None)
    argv = [LS_BIN, "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port), "--data-dir", str(home / "data"),
            "--username", "gplinker@example.com", "--password", secrets.token_hex(12), "--user-token", token,
            "--enable-legacy-api-token", "--log-level", "WARNING"]  # fmt: skip
    proc = start(argv, home / "label_studio.log", env)
    url = f"http://127.0.0.1:{port}"
    wait_for(url + "/health", proc, home / "label_studio.log", 300)
    with httpx.Client(base_url=url, headers={"Authorization": f"Token {token}"}, timeout=120) as client:
        yield url, client
    stop(proc)


@pytest.fixture(scope="module")
def models(fitted_relation, fitted_event):
    return fitted_relation, fitted_event


def tasks_of(client, project: int) -> list[dict]:
    got = client.get("/api/tasks", params={"project": project, "page_size": 1000}).json()
    return got["tasks"] if isinstance(got, dict) else got


def items(doc: Document):
    return set(doc.entities), set(doc.relations), set(doc.events)


def test_the_annotation_loop_through_a_real_label_studio(label_studio, models, tmp_path, tiny_encoder):
    url, client = label_studio
    (rel_model, rel_docs), (ev_model, ev_docs) = models
    # a project for both models' labels: the generated config, relation labels and event roles in one
    from gplinker.tasks import load

    rel, ev = load(rel_model, device="cpu"), load(ev_model, device="cpu")
    xml = ls.LabelConfig.for_schema(rel.task.schema().merged(ev.task.schema())).to_xml()
    (tmp_path / "config.xml").write_text(xml, encoding="utf-8")
    r = client.post("/api/projects", json={"title": "gplinker loop", "label_config": xml})
    assert r.status_code == 201, r.text
    project = r.json()["id"]

    # 1. pre-annotations written by `gplinker predict` for the project's config, imported
    imported = []
    for model, docs, name in ((rel_model, rel_docs, "rel"), (ev_model, ev_docs, "ev")):
        src = tmp_path / f"{name}.jsonl"
        src.write_text(
            "".join(json.dumps({"id": f"{name}{k}", "text": d.text}) + "\n" for k, d in enumerate(docs)), encoding="utf-8"
        )
        out = tmp_path / f"{name}_tasks.json"
        argv = ["predict", "--model", str(model), "--input", str(src), "--output", str(out), "--device", "cpu",
                "--output-format", "label-studio", "--label-config", str(tmp_path / "config.xml")]  # fmt: skip
        assert main(argv) == 0
        tasks = json.loads(out.read_text(encoding="utf-8"))
        imported += tasks
        r = client.post(f"/api/projects/{project}/import", json=tasks)
        assert r.status_code == 201, r.text
    expected = {t["data"]["id"]: ls.document_of(t, {"result": t["predictions"][0]["result"]}, ls.ReadReport()) for t in imported}
    assert sum(len(d.relations) for d in expected.values()) >= 4 and sum(len(d.events) for d in expected.values()) >= 4

    # 2. gplinker serve as the project's ML backend; Label Studio asks it for predictions of new tasks
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "gplinker", "serve", "--model", str(rel_model), "--model", str(ev_model),
            "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]  # fmt: skip
    server = start(argv, tmp_path / "serve.log", env)
    try:
        wait_for(f"http://127.0.0.1:{port}/health", server, tmp_path / "serve.log", 120)
        backend_url = f"http://127.0.0.1:{port}/label-studio"
        r = client.post("/api/ml", json={"url": backend_url, "project": project, "title": "gplinker", "is_interactive": False})
        assert r.status_code == 201, r.text
        backend = client.get(f"/api/ml/{r.json()['id']}").json()
        assert backend["state"] == "CO", backend  # connected: Label Studio called /health and /setup
        fresh = [{"data": {"id": f"new{k}", "text": d.text}} for k, d in enumerate(rel_docs[:3] + ev_docs[:3])]
        before = {t["id"] for t in tasks_of(client, project)}
        assert client.post(f"/api/projects/{project}/import", json=fresh).status_code == 201
        new_ids = [t["id"] for t in tasks_of(client, project) if t["id"] not in before]
        r = client.post("/api/dm/actions", params={"id": "retrieve_tasks_predictions", "project": project},
                        json={"selectedItems": {"all": False, "included": new_ids}})  # fmt: skip
        assert r.status_code == 200, r.text
        health = httpx.get(backend_url + "/health").json()
        assert health["setups"] >= 1 and health["predicted"] >= len(fresh), health
        served = load_pipeline_records([rel, ev], [f["data"]["text"] for f in fresh])
    finally:
        stop(server)
    for tid in new_ids:
        preds = client.get("/api/predictions", params={"task": tid}).json()
        preds = preds["results"] if isinstance(preds, dict) else preds
        assert len(preds) == 1 and "gplinker" in preds[0]["model_version"], preds
        task = client.get(f"/api/tasks/{tid}").json()
        expected[task["data"]["id"]] = ls.document_of(task, {"result": preds[0]["result"]}, ls.ReadReport())
    for k, doc in enumerate(served):  # Label Studio stored what the models predict offline
        stored = expected[f"new{k}"]
        drawable = [e for e in doc.events if any(a.role == "trigger" for a in e.arguments)]  # others cannot be drawn
        assert (set(stored.relations), set(stored.events)) == (set(doc.relations), set(drawable))
        arguments = {(a.start, a.end) for e in drawable for a in e.arguments}
        assert set(doc.entities) <= set(stored.entities)
        assert {(x.start, x.end) for x in set(stored.entities) - set(doc.entities)} <= arguments  # argument regions

    # 3. an annotator accepts every pre-annotation; the project is exported and read back
    for task in tasks_of(client, project):
        preds = client.get("/api/predictions", params={"task": task["id"]}).json()
        preds = preds["results"] if isinstance(preds, dict) else preds
        r = client.post(f"/api/tasks/{task['id']}/annotations", json={"result": preds[0]["result"], "was_cancelled": False})
        assert r.status_code == 201, r.text
    export = client.get(f"/api/projects/{project}/export", params={"exportType": "JSON", "download_all_tasks": "true"})
    assert export.status_code == 200, export.text[:500]
    path = tmp_path / "export.json"
    path.write_bytes(export.content)
    back = {d.id: d for d in ls.read_export(path)}
    assert set(back) == set(expected)
    for key, doc in expected.items():
        assert items(back[key]) == items(doc), key

    # 4. the export trains the next models, one command each
    for task, model in (("relation", "rel2"), ("event", "ev2")):
        argv = ["train", task, "--train", str(path), "--encoder", str(tiny_encoder), "--output", str(tmp_path / model),
                "--device", "cpu", "--epochs", "1", "--head-size", "16", "--max-length", "48"]  # fmt: skip
        assert main(argv) == 0
        assert (tmp_path / model / "model" / "gplinker.json").is_file()


def load_pipeline_records(extractors, texts: list[str]) -> list[Document]:
    """What the served models predict for ``texts`` offline, every model's items in one document."""
    from gplinker.combine import Pipeline

    records = Pipeline([(ex, f"m{k}") for k, ex in enumerate(extractors)]).records([Document(t) for t in texts])
    return [Document.from_json({k: r[k] for k in ("text", "entities", "relations", "events")}) for r in records]
