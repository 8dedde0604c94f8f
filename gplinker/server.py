"""gplinker over HTTP: FastAPI endpoints, dynamic micro-batching, and a page to try models in.

``create_app(pipeline, ServeSettings())`` builds the app (tests use it with FastAPI's TestClient);
``serve(args)`` is ``gplinker serve``. Predictions go through :class:`gplinker.combine.Pipeline`,
the code path of the ``pipeline`` command, so the server cannot disagree with it. Needs the
``serve`` extra (``pip install -e ".[serve]"``).
"""
# no "from __future__ import annotations": FastAPI reads the request model of the endpoints
# defined inside create_app from their live annotations
import asyncio
import base64
import hmac
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Sequence

from gplinker import __version__
from gplinker.combine import Pipeline
from gplinker.extras import require
from gplinker.model_thread import model_thread
from gplinker.structures import Document

logger = logging.getLogger(__name__)

API_KEY_ENV = "GPLINKER_API_KEY"


def _require():
    require(["fastapi", "uvicorn"], "serving needs FastAPI and uvicorn", "serve")


@dataclass
class ServeSettings:
    """Limits and behaviour of the server (the ``serve`` command's options)."""

    max_batch: int = 32  # most texts gathered into one model call
    max_wait_ms: float = 10.0  # how long the first text of a batch waits for others; 0 turns batching off
    max_chars: int = 100_000  # longest text accepted (413 beyond)
    max_texts: int = 256  # most texts in one request (413 beyond)
    threshold: float = 0.0  # default probability threshold
    api_key: str | None = None  # every endpoint but /health needs it when set
    batch_size: int = 32  # rows per forward pass; short windows are packed into rows (gplinker.packing)
    idle_gap_ms: float = 2.0  # stop gathering once no text arrived for this long
    max_body_bytes: int = field(default=0)  # 0: derived from max_chars and max_texts

    def __post_init__(self) -> None:
        if not self.max_body_bytes:
            self.max_body_bytes = 4 * self.max_chars * min(self.max_texts, 64) + 65536


@dataclass
class _Job:
    doc: Document
    threshold: float
    models: tuple[str, ...] | None
    future: asyncio.Future


class MicroBatcher:
    """Gathers the texts of concurrent requests for up to ``max_wait_ms`` or ``max_batch`` texts and
    runs them as one batch (length-sorted inside the extractor), one model call at a time, in a
    worker thread so the event loop keeps accepting requests. Each text gets its own record; a
    text that fails gets an ``error`` without touching the others of its batch."""

    def __init__(self, pipeline: Pipeline, settings: ServeSettings, executor: ThreadPoolExecutor | None = None) -> None:
        self.pipeline, self.settings = pipeline, settings
        self.queue: asyncio.Queue[_Job] | None = None
        self.executor = executor or model_thread()
        self.task: asyncio.Task | None = None
        self.batches = 0
        self.texts = 0
        self.busy_s = 0.0  # time the model thread spent on batches

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self.task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        self.executor.shutdown(wait=True)

    async def submit(self, docs: Sequence[Document], threshold: float, models: tuple[str, ...] | None) -> list[dict[str, Any]]:
        assert self.queue is not None, "the batcher is not started"
        loop = asyncio.get_running_loop()
        jobs = [_Job(d, threshold, models, loop.create_future()) for d in docs]
        for j in jobs:
            self.queue.put_nowait(j)
        return list(await asyncio.gather(*(j.future for j in jobs)))

    async def _loop(self) -> None:
        assert self.queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            # Gather until max_batch texts, max_wait_ms after the first one, or a pause in arrivals of
            # idle_gap_ms (a lone client is not kept waiting for company that is not coming).
            deadline = loop.time() + self.settings.max_wait_ms / 1000.0
            gap = min(self.settings.idle_gap_ms, self.settings.max_wait_ms) / 1000.0
            while len(batch) < self.settings.max_batch:
                try:
                    batch.append(self.queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                remaining = min(deadline - loop.time(), gap)
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            try:
                records = await loop.run_in_executor(self.executor, self._run, batch)
            except Exception as e:  # noqa: BLE001 - a batch that fails as a whole answers each text with the error
                logger.exception("batch of %d texts failed", len(batch))
                records = [{"text": j.doc.text, "entities": [], "relations": [], "events": [],
                            "error": f"{type(e).__name__}: {e}"} for j in batch]
            for j, rec in zip(batch, records):
                if not j.future.done():
                    j.future.set_result(rec)

    def _run(self, batch: list[_Job]) -> list[dict[str, Any]]:
        """One model call per model for the whole batch (the pipeline command's code path)."""
        t0 = time.perf_counter()
        wanted = sorted({m for j in batch for m in (j.models or self.pipeline.names())})
        predictions = self.pipeline.predict([j.doc for j in batch], self.settings.batch_size, wanted)
        records = [Pipeline.combine(j.doc, predictions, k, j.threshold, j.models) for k, j in enumerate(batch)]
        self.batches += 1
        self.texts += len(batch)
        self.busy_s += time.perf_counter() - t0
        return records


def _authorised(header: str | None, key: str) -> bool:
    """``Authorization: Bearer KEY`` (clients) or HTTP Basic with KEY as the password (the page in a
    browser, which then sends it with every request of the page)."""
    if not header:
        return False
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return hmac.compare_digest(value.strip().encode(), key.encode())
    if scheme.lower() == "basic":
        try:
            _, _, password = base64.b64decode(value.strip()).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return hmac.compare_digest(password.encode(), key.encode())
    return False


def create_app(pipeline: Pipeline, settings: ServeSettings | None = None, executor: ThreadPoolExecutor | None = None):
    """The FastAPI app serving ``pipeline``; ``executor``: the :func:`model_thread` that loaded it
    (default: a new one)."""
    _require()
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from pydantic import BaseModel, ConfigDict, Field, StrictStr

    from gplinker import html as html_render

    settings = settings or ServeSettings()
    batcher = MicroBatcher(pipeline, settings, executor)
    state = {"ready": False, "started": time.time()}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        state["ready"] = True
        yield
        state["ready"] = False
        await batcher.stop()

    app = FastAPI(title="gplinker", version=__version__, lifespan=lifespan,
                  description="Joint information extraction with GlobalPointer / GPLinker: entities, relation triples, events. "
                              "Offsets are characters, end exclusive; scores are calibrated probabilities.")
    app.state.batcher = batcher

    class ExtractRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        text: StrictStr | None = Field(None, description="one text")
        texts: list[StrictStr] | None = Field(None, description="several texts (one record each, in order)")
        threshold: float | None = Field(None, gt=0.0, le=1.0, description="keep items with probability >= this")
        models: list[StrictStr] | None = Field(None, description="only these models (names from /info)")

    def problem(status: int, message: str, **extra: Any) -> JSONResponse:
        return JSONResponse({"error": message, **extra}, status_code=status)

    class Guard:
        """API key and body-size checks before anything else, as a plain ASGI middleware (Starlette's
        BaseHTTPMiddleware costs a task and a stream per request)."""

        def __init__(self, inner) -> None:
            self.inner = inner

        async def __call__(self, scope, receive, send) -> None:
            if scope["type"] != "http":
                return await self.inner(scope, receive, send)
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            path = scope.get("path", "")
            if settings.api_key and path != "/health" and not _authorised(headers.get("authorization"), settings.api_key):
                page = path == "/" and scope.get("method") == "GET"
                response = JSONResponse({"error": "missing or wrong API key; send 'Authorization: Bearer KEY'"}, status_code=401,
                                        headers={"WWW-Authenticate": 'Basic realm="gplinker"' if page else "Bearer"})
                return await response(scope, receive, send)
            length = headers.get("content-length", "")
            if length.isdigit() and int(length) > settings.max_body_bytes:
                response = problem(413, f"request body of {int(length)} bytes is over the limit of {settings.max_body_bytes} "
                                        "bytes; send fewer or shorter texts per request")
                return await response(scope, receive, send)
            await self.inner(scope, receive, send)

    app.add_middleware(Guard)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        details = []
        for err in exc.errors():
            where = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
            details.append(f"{where}: {err.get('msg')}")
        return problem(422, "invalid request: " + "; ".join(details) + ' — send JSON like {"text": "..."} or '
                            '{"texts": ["...", "..."]}, optionally with "threshold" in (0, 1] and "models": [names]')

    def validated(req: ExtractRequest) -> tuple[list[str], float, tuple[str, ...] | None] | JSONResponse:
        if (req.text is None) == (req.texts is None):
            return problem(422, 'send exactly one of "text" (a string) or "texts" (a list of strings)')
        texts = [req.text] if req.text is not None else list(req.texts or [])
        if not texts:
            return problem(422, '"texts" is empty — send at least one text')
        if len(texts) > settings.max_texts:
            return problem(413, f"{len(texts)} texts is over the limit of {settings.max_texts} per request; split the request")
        long = [k for k, t in enumerate(texts) if len(t) > settings.max_chars]
        if long:
            return problem(413, f"text {long[0]} has {len(texts[long[0]])} characters, over the limit of {settings.max_chars}; "
                                "split it (longer texts up to the limit are windowed)")
        models = tuple(req.models) if req.models else None
        unknown = sorted(set(models or ()) - set(pipeline.names()))
        if unknown:
            return problem(404, f"unknown model(s) {', '.join(unknown)}; this server has {', '.join(pipeline.names())}")
        return texts, (req.threshold if req.threshold is not None else settings.threshold), models

    async def extract_records(req: ExtractRequest) -> list[dict[str, Any]] | JSONResponse:
        checked = validated(req)
        if isinstance(checked, JSONResponse):
            return checked
        texts, threshold, models = checked
        return await batcher.submit([Document(text=t) for t in texts], threshold, models)

    @app.get("/health", summary="liveness and readiness")
    async def health():
        return {"status": "ok" if state["ready"] else "starting", "ready": state["ready"], "models": pipeline.names(),
                "uptime_s": round(time.time() - state["started"], 1),
                "batches": batcher.batches, "texts": batcher.texts, "model_busy_s": round(batcher.busy_s, 3)}

    @app.get("/info", summary="each model's task, labels, limits and version")
    async def info():
        models = []
        for ex, name in pipeline.models:
            models.append({"name": name, "task": ex.task.name, **ex.task.labels_summary(),
                           **{k: v for k, v in ex.task.config().items() if not isinstance(v, list)},
                           "max_length": ex.settings.max_length, "stride": ex.settings.stride,
                           "encoder": ex.info.get("encoder"), "dev_scores": ex.info.get("dev_scores")})
        return {"version": __version__, "models": models,
                "limits": {"max_chars": settings.max_chars, "max_texts": settings.max_texts, "max_batch": settings.max_batch,
                           "max_wait_ms": settings.max_wait_ms, "max_body_bytes": settings.max_body_bytes},
                "threshold": settings.threshold}

    @app.post("/extract", summary="entities, triples and events of one text or several",
              description="One combined record per text, as `gplinker pipeline` writes them.")
    async def extract(req: ExtractRequest):
        records = await extract_records(req)
        if isinstance(records, JSONResponse):
            return records
        return JSONResponse({"records": records})  # plain JSON: no per-field re-encoding of the records

    @app.post("/render", summary="like /extract, plus the records rendered as HTML (the page uses it)")
    async def render(req: ExtractRequest):
        records = await extract_records(req)
        if isinstance(records, JSONResponse):
            return records
        return JSONResponse({"records": records, "html": html_render.fragment(records, numbered=len(records) > 1)})

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(PAGE.replace("/*CSS*/", html_render.CSS).replace("__VERSION__", __version__))

    return app


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>gplinker</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>/*CSS*/
textarea{width:100%;box-sizing:border-box;font:inherit;font-size:1.05em;padding:.5em;border:1px solid #bbb;border-radius:6px}
.bar{display:flex;gap:1em;align-items:center;margin:.5em 0;flex-wrap:wrap} button{font:inherit;padding:.35em 1.2em;border-radius:6px;
border:1px solid #4e79a7;background:#4e79a7;color:#fff;cursor:pointer} button:disabled{opacity:.5}
#models label{margin-right:.8em} pre{background:#f6f6f6;padding:.6em;border-radius:6px;overflow:auto;font-size:.85em}
#status{color:#777;font-size:.9em}
</style></head><body>
<h1>gplinker <span class="meta">__VERSION__</span></h1>
<p class="meta">Entities, relation triples and events from text. Offsets are characters; scores are probabilities.</p>
<textarea id="text" rows="5" placeholder="Type or paste a text, then Extract (Ctrl+Enter)."></textarea>
<div class="bar"><button id="go" type="button">Extract</button>
<span id="models"></span>
<label>threshold <input id="threshold" type="number" min="0.5" max="1" step="0.05" value="" placeholder="0.5" style="width:5em"></label>
<span id="status"></span></div>
<div id="result"></div>
<details id="raw" hidden><summary>raw JSON</summary><pre id="json"></pre></details>
<script>
"use strict";
const $ = id => document.getElementById(id);
async function loadInfo() {
  const r = await fetch("info");
  if (!r.ok) { $("status").textContent = "could not load /info (" + r.status + ")"; return; }
  const info = await r.json();
  for (const m of info.models) {
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox"; box.checked = true; box.value = m.name; box.className = "model";
    label.append(box, " " + m.name + " (" + m.task + ")");
    $("models").append(label);
  }
}
async function extract() {
  const text = $("text").value;
  if (!text.trim()) { $("status").textContent = "type a text first"; return; }
  const body = {text};
  const models = [...document.querySelectorAll("input.model")].filter(b => b.checked).map(b => b.value);
  if (models.length) body.models = models;
  const t = parseFloat($("threshold").value);
  if (!isNaN(t)) body.threshold = t;
  $("go").disabled = true; $("status").textContent = "extracting...";
  const t0 = performance.now();
  try {
    const r = await fetch("render", {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
    const data = await r.json();
    if (!r.ok) { $("status").textContent = data.error || ("error " + r.status); return; }
    $("result").innerHTML = data.html;  // rendered and escaped by the server, as the static report
    $("json").textContent = JSON.stringify(data.records, null, 2);
    $("raw").hidden = false;
    $("status").textContent = "done in " + Math.round(performance.now() - t0) + " ms";
  } catch (e) {
    $("status").textContent = "request failed: " + e;
  } finally { $("go").disabled = false; }
}
$("go").addEventListener("click", extract);
$("text").addEventListener("keydown", e => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) extract(); });
loadInfo();
</script></body></html>
"""


def serve(args) -> int:
    """``gplinker serve``: load the models, then run uvicorn until interrupted (graceful shutdown
    lets requests in flight finish)."""
    _require()
    import uvicorn

    from gplinker.cli import _apply_decode_options, _load_extractor, _model_name

    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    if args.host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        logger.warning("serving on %s without an API key: anyone who can reach this address can use the models", args.host)
    executor = model_thread()  # every torch call of this process runs in it, loading included

    def load() -> Pipeline:
        pipeline = Pipeline([(_load_extractor(m, args), _model_name(m)) for m in args.model])
        _apply_decode_options([ex for ex, _ in pipeline.models], args)
        return pipeline

    try:
        pipeline = executor.submit(load).result()
    except BaseException:
        executor.shutdown(wait=False)
        raise
    settings = ServeSettings(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_chars=args.max_chars,
                             max_texts=args.max_texts, threshold=args.threshold or 0.0, api_key=api_key,
                             batch_size=args.batch_size)
    app = create_app(pipeline, settings, executor)
    logger.info("serving %s on http://%s:%d (page at /, API docs at /docs)", ", ".join(pipeline.names()), args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=args.access_log, timeout_graceful_shutdown=30)
    return 0
