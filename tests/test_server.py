"""The HTTP server through FastAPI's TestClient: every endpoint, every bad request, auth, the
micro-batcher under concurrent requests, and the shared renderer."""

import base64
import threading

import pytest
from conftest import DATA, read

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from gplinker.combine import Pipeline  # noqa: E402
from gplinker.extractor import Extractor, ModelSettings  # noqa: E402
from gplinker.server import ServeSettings, create_app  # noqa: E402
from gplinker.tasks import load as load_model  # noqa: E402
from gplinker.tasks import ner  # noqa: E402
from gplinker.training import TrainConfig, train  # noqa: E402

TEXTS = [
    "记者从南京获悉，王芳昨天访问了百度公司。",
    "张伟在北京的华为公司工作了三年。",
    "李娜。",
    "",
    "王芳在杭州的小米公司工作了三年。" * 20,
]  # the last one spans several windows


@pytest.fixture(scope="module")
def pipeline(trained_ner, tiny_encoder, tmp_path_factory):
    """Two NER models on the Chinese examples: the shared fitted one and one barely trained."""
    docs = trained_ner[1]
    ex = Extractor.build(
        str(tiny_encoder), ner.NERTask.from_documents(docs), ModelSettings(head_size=16, max_length=32, stride=8), "cpu", seed=1
    )
    out = tmp_path_factory.mktemp("ner2")
    train(ex, docs, None, TrainConfig(epochs=2, batch_size=4, lr=5e-3, head_lr=1e-2, warmup_ratio=0.0), out)
    return Pipeline([(load_model(trained_ner[0], device="cpu"), "ner"), (load_model(out / "model", device="cpu"), "ner2")])


@pytest.fixture
def client(pipeline):
    with TestClient(
        create_app(pipeline, ServeSettings(max_chars=2000, max_texts=8, max_wait_ms=5)), base_url="http://127.0.0.1"
    ) as c:
        yield c


def offline(pipeline, texts, **kw):
    return pipeline.records([__import__("gplinker.structures").structures.Document(t) for t in texts], **kw)


def test_health_and_info(client, pipeline):
    r = client.get("/health")
    assert r.status_code == 200 and r.json()["ready"] is True and r.json()["models"] == ["ner", "ner2"]
    info = client.get("/info").json()
    assert [m["name"] for m in info["models"]] == ["ner", "ner2"]
    assert info["models"][0]["task"] == "ner" and info["models"][0]["labels"] == pipeline.models[0][0].task.labels
    assert info["models"][0]["max_length"] == 32 and info["limits"]["max_chars"] == 2000 and info["version"]
    assert client.get("/docs").status_code == 200 and "/extract" in client.get("/openapi.json").json()["paths"]


def test_extract_equals_the_pipeline_command_single_and_batched(client, pipeline):
    want = offline(pipeline, TEXTS)
    assert sum(len(r["entities"]) for r in want) > 0  # the comparison is not of empty records
    got = client.post("/extract", json={"texts": TEXTS}).json()["records"]
    assert got == want
    for text, rec in zip(TEXTS, want):
        assert client.post("/extract", json={"text": text}).json()["records"] == [rec]


def test_threshold_and_model_filter(client, pipeline):
    full = client.post("/extract", json={"texts": TEXTS[:2]}).json()["records"]
    only = client.post("/extract", json={"texts": TEXTS[:2], "models": ["ner"]}).json()["records"]
    assert only == offline(pipeline, TEXTS[:2], models=["ner"])
    assert {e["model"] for r in only for e in r["entities"]} == {"ner"}
    high = client.post("/extract", json={"texts": TEXTS[:2], "threshold": 0.95}).json()["records"]
    assert high == offline(pipeline, TEXTS[:2], threshold=0.95)
    for h, f in zip(high, full):  # exactly the items of the unfiltered answer scoring at least the threshold
        assert h["entities"] == [e for e in f["entities"] if e["score"] >= 0.95]


@pytest.mark.parametrize(
    "body,status,says",
    [
        (b"{not json", 422, "invalid request"),
        ({}, 422, 'exactly one of "text"'),
        ({"text": 5}, 422, "text"),
        ({"texts": ["a", 3]}, 422, "texts.1"),
        ({"texts": []}, 422, "empty"),
        ({"text": "a", "texts": ["b"]}, 422, "exactly one"),
        ({"text": "a", "threshold": 1.5}, 422, "threshold"),
        ({"text": "a", "extra": 1}, 422, "extra"),
        ({"text": "x" * 2001}, 413, "2000"),
        ({"texts": ["a"] * 9}, 413, "limit of 8"),
        ({"text": "a", "models": ["nope"]}, 404, "unknown model"),
    ],
)
def test_bad_requests_get_a_status_and_a_message(client, body, status, says):
    kw = {"content": body, "headers": {"content-type": "application/json"}} if isinstance(body, bytes) else {"json": body}
    r = client.post("/extract", **kw)
    assert r.status_code == status, r.text
    assert says in r.json()["error"]
    assert client.get("/health").status_code == 200  # still up


def test_body_over_the_limit_is_413(pipeline):
    with TestClient(create_app(pipeline, ServeSettings(max_body_bytes=1000)), base_url="http://127.0.0.1") as c:
        r = c.post("/extract", json={"text": "x" * 2000})
        assert r.status_code == 413 and "1000 bytes" in r.json()["error"]


def test_api_key(pipeline):
    with TestClient(create_app(pipeline, ServeSettings(api_key="s3cret")), base_url="http://127.0.0.1") as c:
        assert c.get("/health").status_code == 200
        for path in ("/info", "/docs", "/openapi.json"):
            assert c.get(path).status_code == 401
        assert c.post("/extract", json={"text": "王芳"}).status_code == 401
        assert c.get("/info", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/info", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        r = c.post("/extract", json={"text": "王芳"}, headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 200 and r.json()["records"][0]["text"] == "王芳"
        page = c.get("/")
        assert page.status_code == 401 and page.headers["www-authenticate"].startswith("Basic")
        basic = base64.b64encode(b"anyone:s3cret").decode()
        assert c.get("/", headers={"Authorization": f"Basic {basic}"}).status_code == 200


def test_concurrent_requests_each_get_their_own_text(pipeline):
    texts = [f"第{k}号：王芳在杭州的小米公司工作了{k}年。" for k in range(24)]
    want = {t: r for t, r in zip(texts, offline(pipeline, texts))}
    got, errors = {}, []
    with TestClient(create_app(pipeline, ServeSettings(max_wait_ms=20, max_batch=8)), base_url="http://127.0.0.1") as c:
        batcher = c.app.state.batcher

        def call(t):
            try:
                got[t] = c.post("/extract", json={"text": t}).json()["records"][0]
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=call, args=(t,)) for t in texts]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        assert not errors and got == want
        assert batcher.texts == len(texts) and batcher.batches < len(texts)  # texts of several requests shared batches


def test_a_failing_text_does_not_touch_the_others_of_its_batch(client, pipeline, exploding_decoder):
    texts = [TEXTS[0], "BOOM", TEXTS[1]]
    got = client.post("/extract", json={"texts": texts}).json()["records"]
    want = offline(pipeline, [TEXTS[0], TEXTS[1]])
    assert got[0] == want[0] and got[2] == want[1]
    assert "decoder exploded" in got[1]["error"] and got[1]["text"] == "BOOM"


def test_page_and_render_escape_everything(client):
    page = client.get("/")
    assert page.status_code == 200 and "<textarea" in page.text and "http://" not in page.text and "https://" not in page.text
    evil = "<script>alert(1)</script> 王芳在杭州的小米公司工作"
    r = client.post("/render", json={"text": evil}).json()
    from html.parser import HTMLParser

    class Reader(HTMLParser):
        tags: list = []
        text = ""

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)

        def handle_data(self, data):
            self.text += data

    reader = Reader()
    reader.feed(r["html"])
    assert "script" not in reader.tags and "<script" not in r["html"]  # shown as text, never a tag
    assert r["html"].count("&lt;") == evil.count("<") and reader.text.count("<") == evil.count("<")  # every "<" escaped
    assert r["records"][0]["text"] == evil


def test_renderer_distinguishes_nested_spans_with_one_label_and_shows_models():
    from html.parser import HTMLParser

    from gplinker.html import PALETTE, fragment

    text = "Acme acquired Initech"
    rec = {
        "text": text,
        "entities": [
            {"start": 0, "end": 21, "label": "ORG", "model": "a", "score": 0.9},
            {"start": 0, "end": 4, "label": "ORG", "model": "a", "score": 0.8},
            {"start": 14, "end": 21, "label": "ORG", "model": "a", "score": 0.7},
            {"start": 0, "end": 4, "label": "Peop", "model": "b", "score": 0.6},
        ],
        "relations": [],
        "events": [],
    }

    class Boxes(HTMLParser):
        def __init__(self):
            super().__init__()
            self.stack, self.boxes = [], []

        def handle_starttag(self, tag, attrs):
            cls = dict(attrs).get("class", "")
            self.stack.append([cls, ""])

        def handle_endtag(self, tag):
            cls, txt = self.stack.pop()
            if cls == "ent":
                self.boxes.append(txt)
            if self.stack:
                self.stack[-1][1] += txt

        def handle_data(self, data):
            if self.stack:
                self.stack[-1][1] += data

    p = Boxes()
    p.feed(fragment([rec]))
    # the outer ORG box holds the whole phrase (with the inner boxes and their badges inside it)
    assert any(b.startswith("Acme") and "Initech" in b and b.rstrip().endswith("ORG a") for b in p.boxes), p.boxes
    assert sum(b.startswith("Acme") for b in p.boxes) == 3 and len(p.boxes) == 4
    html = fragment([rec])
    assert 'class="legend"' in html and "<small>b</small>" in html  # two models: badges say which
    assert html.count(PALETTE[0]) and PALETTE[1] in html  # ORG and Peop get different palette colours


def test_palette_never_repeats_a_colour_for_different_labels():
    from gplinker.html import Colours

    c = Colours()
    colours = [c(f"L{k}") for k in range(40)] + [c("Lawsuit"), c("Resignation"), c("PER"), c("ORG")]
    assert len(set(colours)) == len(colours)


def test_serve_loads_and_runs_the_models_in_one_thread(tiny_encoder, tmp_path, monkeypatch):
    """Loading and every batch run in the same model thread, never in the event loop's: two threads
    running parallel torch code cost about 20% of throughput on 2 cores (OpenMP teams)."""
    import uvicorn

    from gplinker import cli, server
    from gplinker.cli import common

    docs = read("ner", DATA / "zh_train.jsonl")[:4]
    ex = Extractor.build(
        str(tiny_encoder), ner.NERTask.from_documents(docs), ModelSettings(head_size=16, max_length=32), "cpu", seed=1
    )
    ex.save_pretrained(tmp_path / "m")
    seen: dict[str, set] = {"load": set(), "batch": set()}
    real_load, real_run = common.load_extractor, server.MicroBatcher._run

    def load(*a, **k):
        seen["load"].add(threading.get_ident())
        return real_load(*a, **k)

    def run(self, batch):
        seen["batch"].add(threading.get_ident())
        return real_run(self, batch)

    apps = []
    monkeypatch.setattr(common, "load_extractor", load)
    monkeypatch.setattr(server.MicroBatcher, "_run", run)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: apps.append(app))
    assert cli.main(["serve", "--model", str(tmp_path / "m"), "--device", "cpu"]) == 0
    with TestClient(apps[0], base_url="http://127.0.0.1") as c:
        assert c.post("/extract", json={"texts": ["王芳在北京。", "李娜。"]}).status_code == 200
    assert len(seen["load"]) == 1 and seen["load"] == seen["batch"]
    assert threading.get_ident() not in seen["load"]


# ---- hostile traffic: bodies, queue, deadlines, gone clients, hosts, values --------------------------


def test_a_chunked_body_over_the_limit_is_refused_before_it_is_read_whole(pipeline):
    sent = []

    def body():  # no Content-Length: httpx sends it chunked
        for k in range(200):
            sent.append(k)
            yield b'{"texts": ["' + b"x" * 1000

    with TestClient(create_app(pipeline, ServeSettings(max_body_bytes=5000)), base_url="http://127.0.0.1") as c:
        r = c.post("/extract", content=body(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "over the limit of 5000 bytes" in r.json()["error"]
        assert c.post("/extract", json={"text": "李娜。"}).status_code == 200


def test_a_full_queue_answers_503_with_retry_after(pipeline):
    with TestClient(create_app(pipeline, ServeSettings(max_queue=2)), base_url="http://127.0.0.1") as c:
        r = c.post("/extract", json={"texts": ["李娜。"] * 3})
        assert r.status_code == 503 and r.headers["Retry-After"] == "1" and "busy" in r.json()["error"]
        assert c.post("/extract", json={"texts": ["李娜。"] * 2}).status_code == 200


def test_a_request_past_its_deadline_gets_504_and_its_waiting_texts_never_run(pipeline, monkeypatch):
    import time

    from gplinker import server

    ran = []
    real = server.MicroBatcher._run

    def slow(self, batch):
        ran.extend(j.doc.text for j in batch)
        if batch[0].doc.text == "first":
            time.sleep(0.4)
        return real(self, batch)

    monkeypatch.setattr(server.MicroBatcher, "_run", slow)
    app = create_app(pipeline, ServeSettings(timeout_s=0.2, max_batch=1, max_wait_ms=0))
    with TestClient(app, base_url="http://127.0.0.1") as c:
        r = c.post("/extract", json={"texts": ["first", "second", "third"]})
        assert r.status_code == 504 and "not answered within 0.2 s" in r.json()["error"]
        time.sleep(0.6)  # the batch in flight ends; the two texts behind it come off the queue
        assert c.post("/extract", json={"text": "李娜。"}).status_code == 200
        health = c.get("/health").json()["queue"]
    assert ran == ["first", "李娜。"] and health["dropped"] == 2 and health["waiting"] == 0


def test_jobs_of_a_client_gone_before_they_run_are_dropped(pipeline, monkeypatch):
    """The batcher itself: while the model is busy, a request's client goes; its texts are taken off
    the queue without running, and the request ends at once."""
    import asyncio
    import time

    from gplinker import server
    from gplinker.structures import Document

    ran = []
    monkeypatch.setattr(
        server.MicroBatcher,
        "_run",
        lambda self, batch: (ran.extend(j.doc.text for j in batch), time.sleep(0.3), [{} for _ in batch])[2],
    )

    async def scenario():
        batcher = server.MicroBatcher(pipeline, ServeSettings(max_batch=1, max_wait_ms=0))
        await batcher.start()
        busy = asyncio.ensure_future(batcher.submit([Document("busy")], 0.0, None))
        await asyncio.sleep(0.05)
        gone = asyncio.Event()
        t0 = time.perf_counter()
        watcher = asyncio.ensure_future(batcher.submit([Document("a"), Document("b")], 0.0, None, gone.wait))
        await asyncio.sleep(0.01)
        gone.set()  # the client disconnects
        with pytest.raises(server.Gone):
            await watcher
        ended = time.perf_counter() - t0
        await busy
        await asyncio.sleep(0.05)
        await batcher.stop()
        return batcher, ended

    batcher, ended = asyncio.run(scenario())
    assert ran == ["busy"] and batcher.dropped == 2 and batcher.ran_for_gone == 0 and ended < 0.25


@pytest.mark.parametrize(
    "host, status",
    [("evil.example", 400), ("evil.example:8000", 400), ("127.0.0.1:8000", 200), ("localhost:8000", 200), ("[::1]:8000", 200)],
)
def test_a_loopback_server_answers_only_loopback_host_names(pipeline, host, status):
    with TestClient(create_app(pipeline, ServeSettings()), base_url="http://127.0.0.1") as c:
        r = c.get("/info", headers={"Host": host})
        assert r.status_code == status
        if status == 400:
            assert "--allowed-host" in r.json()["error"]
    with TestClient(create_app(pipeline, ServeSettings(allowed_hosts=("*",))), base_url="http://127.0.0.1") as c:
        assert c.get("/info", headers={"Host": host}).status_code == 200
    with TestClient(create_app(pipeline, ServeSettings(host="0.0.0.0")), base_url="http://127.0.0.1") as c:
        assert c.get("/info", headers={"Host": host}).status_code == 200


def test_info_shows_no_local_paths(client, tiny_encoder):
    body = client.get("/info").text
    assert str(tiny_encoder) not in body and str(tiny_encoder.parent) not in body
    assert client.get("/info").json()["models"][0]["encoder"] == tiny_encoder.name


@pytest.mark.parametrize("threshold", ["0.9", True, 0, -1, 1.5, float("nan"), float("inf")])
def test_a_threshold_must_be_a_finite_number_in_range(client, threshold):
    import json

    r = client.post(
        "/extract", content=json.dumps({"text": "李娜。", "threshold": threshold}), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 422 and "threshold" in r.json()["error"]


def test_a_lone_surrogate_is_a_422_for_text_and_an_error_record_in_texts(client, pipeline):
    r = client.post("/extract", content=b'{"text": "bad \\ud800"}', headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "lone surrogate" in r.json()["error"] and r.json()["error"].startswith("text:")
    r = client.post(
        "/extract",
        content=b'{"texts": ["\\u674e\\u5a1c\\u3002", "bad \\ud800", "ok"]}',
        headers={"Content-Type": "application/json"},
    )
    recs = r.json()["records"]
    assert r.status_code == 200 and len(recs) == 3 and recs[1]["error"].startswith("texts[1]:")
    assert recs[0] == offline(pipeline, ["李娜。"])[0] and "error" not in recs[2]


@pytest.mark.parametrize("env, argv", [(None, ["--api-key", ""]), ("", []), (None, ["--api-key", "  "])])
def test_an_empty_api_key_is_refused_not_served_without_one(tiny_encoder, tmp_path, monkeypatch, capsys, env, argv):
    from gplinker import cli, server

    docs = read("ner", DATA / "zh_train.jsonl")[:4]
    Extractor.build(
        str(tiny_encoder), ner.NERTask.from_documents(docs), ModelSettings(head_size=16, max_length=32), "cpu"
    ).save_pretrained(tmp_path / "m")
    monkeypatch.delenv(server.API_KEY_ENV, raising=False)
    if env is not None:
        monkeypatch.setenv(server.API_KEY_ENV, env)
    monkeypatch.setattr(server, "serve", lambda *a, **k: pytest.fail("served"))
    assert cli.main(["serve", "--model", str(tmp_path / "m"), *argv]) == 2
    assert "empty (an unset variable?)" in capsys.readouterr().err
    with pytest.raises(ValueError, match="empty"):
        ServeSettings(api_key="")
