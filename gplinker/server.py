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
import math
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence

from gplinker import __version__
from gplinker.combine import Pipeline
from gplinker.extras import require
from gplinker.model_thread import model_thread
from gplinker.structures import Document, text_problem

logger = logging.getLogger(__name__)

API_KEY_ENV = "GPLINKER_API_KEY"


def _require():
    require(["fastapi", "uvicorn"], "serving needs FastAPI and uvicorn", "serve")


LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class ServeSettings:
    """Limits and behaviour of the server (the ``serve`` command's options)."""

    host: str = "127.0.0.1"  # the address it is bound to; decides the Host headers it answers by default
    port: int = 8000

    max_batch: int = 32  # most texts gathered into one model call
    max_wait_ms: float = 10.0  # how long the first text of a batch waits for others; 0 turns batching off
    max_chars: int = 100_000  # longest text accepted (413 beyond)
    max_texts: int = 256  # most texts in one request (413 beyond)
    threshold: float = 0.0  # default probability threshold
    api_key: str | None = None  # every endpoint but /health needs it when set
    batch_size: int = 32  # rows per forward pass; short windows are packed into rows (gplinker.packing)
    idle_gap_ms: float = 2.0  # stop gathering once no text arrived for this long
    max_body_bytes: int = field(default=0)  # 0: derived from max_chars and max_texts
    max_queue: int = 1024  # most texts waiting for the model; a request that would pass it gets 503 + Retry-After
    timeout_s: float = 60.0  # a request not answered by then gets 504 and its texts not yet run are dropped
    allowed_hosts: tuple[str, ...] | None = None  # Host headers answered (None: the bound host's names; "*": any)

    def __post_init__(self) -> None:
        if not self.max_body_bytes:
            self.max_body_bytes = 4 * self.max_chars * min(self.max_texts, 64) + 65536
        for name in ("max_batch", "max_chars", "max_texts", "batch_size", "max_body_bytes", "max_queue"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}")
        for name in ("max_wait_ms", "idle_gap_ms", "timeout_s", "threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number of at least 0, got {value!r}")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be above 0, got {self.timeout_s!r}")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("the API key is empty (an unset variable?); give a key, or none at all to serve without one")

    def host_names(self) -> frozenset[str] | None:
        """The Host header names (port left out, lower case) this server answers; None: any. A
        server bound to loopback answers only loopback names, so a page of another site cannot
        reach it through DNS rebinding."""
        if self.allowed_hosts is not None:
            names = frozenset(h.lower().strip("[]") for h in self.allowed_hosts)
            return None if "*" in names else names
        if self.host in ("0.0.0.0", "::", ""):
            return None
        if self.host in LOOPBACK:
            return frozenset(LOOPBACK)
        return frozenset({self.host.lower().strip("[]")})


def host_name(header: str) -> str:
    """The name of a Host header: ``[::1]:8000`` -> ``::1``, ``Example.org:80`` -> ``example.org``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class QueueFull(Exception):
    """More texts are waiting than ``max_queue``: the request is answered 503 with Retry-After."""


class Gone(Exception):
    """The request's client disconnected or its deadline passed before its texts were answered."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # "disconnected" or "deadline"


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
        self.pending = 0  # texts queued, not yet taken for a batch
        self.peak_pending = 0
        self.dropped = 0  # texts of gone requests taken off the queue without running
        self.ran_for_gone = 0  # texts run although their request was gone by the time the batch ended

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

    async def submit(self, docs: Sequence[Document], threshold: float, models: tuple[str, ...] | None,
                     gone: Callable[[], Awaitable[Any]] | None = None) -> list[dict[str, Any]]:
        """The records of ``docs`` once the model has run them. :class:`QueueFull` when they would
        pass ``max_queue``; :class:`Gone` when ``gone`` (awaits the client's disconnect) returns or
        ``timeout_s`` passes first -- their texts not yet run are then dropped, never run."""
        assert self.queue is not None, "the batcher is not started"
        if self.pending + len(docs) > self.settings.max_queue:
            raise QueueFull(f"{self.pending} texts are waiting (limit {self.settings.max_queue})")
        loop = asyncio.get_running_loop()
        jobs = [_Job(d, threshold, models, loop.create_future()) for d in docs]
        for j in jobs:
            self.queue.put_nowait(j)
        self.pending += len(jobs)
        self.peak_pending = max(self.peak_pending, self.pending)
        answered = asyncio.gather(*(j.future for j in jobs))
        watcher = asyncio.ensure_future(gone()) if gone is not None else None
        try:
            done, _ = await asyncio.wait([answered] + ([watcher] if watcher else []), timeout=self.settings.timeout_s,
                                         return_when=asyncio.FIRST_COMPLETED)
            if answered in done:
                return list(answered.result())
            raise Gone("disconnected" if watcher is not None and watcher in done else "deadline")
        finally:
            if watcher is not None:
                watcher.cancel()
            for j in jobs:
                if not j.future.done():
                    j.future.cancel()  # the loop drops it when it comes off the queue
            if not answered.done():
                answered.cancel()

    def _take(self, job: _Job, batch: list[_Job]) -> None:
        """Add a job taken off the queue to ``batch``, unless its request is gone."""
        self.pending -= 1
        if job.future.done():
            self.dropped += 1
        else:
            batch.append(job)

    async def _loop(self) -> None:
        assert self.queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch: list[_Job] = []
            self._take(await self.queue.get(), batch)
            if not batch:
                continue
            # Gather until max_batch texts, max_wait_ms after the first one, or a pause in arrivals of
            # idle_gap_ms (a lone client is not kept waiting for company that is not coming).
            deadline = loop.time() + self.settings.max_wait_ms / 1000.0
            gap = min(self.settings.idle_gap_ms, self.settings.max_wait_ms) / 1000.0
            while len(batch) < self.settings.max_batch:
                try:
                    self._take(self.queue.get_nowait(), batch)
                    continue
                except asyncio.QueueEmpty:
                    pass
                remaining = min(deadline - loop.time(), gap)
                if remaining <= 0:
                    break
                try:
                    self._take(await asyncio.wait_for(self.queue.get(), remaining), batch)
                except asyncio.TimeoutError:
                    break
            gone = [j for j in batch if j.future.done()]  # requests that went while the batch gathered
            if gone:
                self.dropped += len(gone)
                batch = [j for j in batch if not j.future.done()]
                if not batch:
                    continue
            try:
                records = await loop.run_in_executor(self.executor, self._run, batch)
            except Exception as e:  # noqa: BLE001 - a batch that fails as a whole answers each text with the error
                logger.exception("batch of %d texts failed", len(batch))
                records = [{"text": j.doc.text, "entities": [], "relations": [], "events": [],
                            "error": f"{type(e).__name__}: {e}"} for j in batch]
            for j, rec in zip(batch, records):
                if j.future.done():
                    self.ran_for_gone += 1
                else:
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


RETRY_AFTER_S = 1
LINGER_S = 2.0  # after a 413, how long the rest of a body is read and thrown away (nginx's lingering close)


async def too_large(message: str, receive, send) -> None:
    """Answer 413 without reading the body, the response whole but held open while the rest of
    the body is read and thrown away (:func:`linger`): closing with unread data makes the kernel
    reset the connection and the client loses the answer, and once a response is complete the
    server no longer hands the app what the client sends."""
    import json

    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body, "more_body": True})
    await linger(receive)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def linger(receive, seconds: float = LINGER_S, most: int = 64 << 20) -> None:
    """Read and discard what a client still sends after its request was refused, for a bounded
    time and size: closing with unread data makes the kernel reset the connection, and the client
    would lose the 413 it was sent. Nothing read is kept."""
    loop = asyncio.get_running_loop()
    end, read = loop.time() + seconds, 0
    while read < most:
        remaining = end - loop.time()
        if remaining <= 0:
            return
        try:
            message = await asyncio.wait_for(receive(), remaining)
        except asyncio.TimeoutError:
            return
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        read += len(message.get("body", b""))


def public_name(encoder: Any) -> str | None:
    """An encoder as /info may show it: a hub name or alias as is, a local path by its last part
    only (the training machine's folders are nobody's business)."""
    if not isinstance(encoder, str):
        return None
    looks_local = encoder.startswith(("/", ".", "~")) or "\\" in encoder or encoder.count("/") > 1 or Path(encoder).is_absolute()
    return Path(encoder.replace("\\", "/")).name if looks_local else encoder


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
    from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

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
                              "Offsets are characters, end exclusive; scores are probabilities (σ of the logit, "
                              "temperature-scaled when `gplinker calibrate --apply` was run).")
    app.state.batcher = batcher

    class ExtractRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        text: StrictStr | None = Field(None, description="one text")
        texts: list[StrictStr] | None = Field(None, description="several texts (one record each, in order)")
        threshold: StrictFloat | StrictInt | None = Field(None, gt=0.0, le=1.0, allow_inf_nan=False,
                                                          description="keep items with probability >= this, in (0, 1]")
        models: list[StrictStr] | None = Field(None, description="only these models (names from /info)")

    def problem(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    hosts = settings.host_names()

    class Guard:
        """Host, API key and body-size checks before anything else, as a plain ASGI middleware
        (Starlette's BaseHTTPMiddleware costs a task and a stream per request). The body is read
        here, counting bytes, so a body without Content-Length (chunked) is refused with 413 as
        soon as it passes the limit, never held whole."""

        def __init__(self, inner) -> None:
            self.inner = inner

        async def __call__(self, scope, receive, send) -> None:
            if scope["type"] != "http":
                return await self.inner(scope, receive, send)
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            refused = self.refusal(scope, headers)
            if isinstance(refused, str):
                return await too_large(refused, receive, send)
            if refused is not None:
                return await refused(scope, receive, send)
            body: list[bytes] = []
            size = 0
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return  # the client went before sending its request: nothing to answer
                size += len(message.get("body", b""))
                if size > settings.max_body_bytes:
                    return await too_large(f"request body over the limit of {settings.max_body_bytes} bytes; send fewer "
                                           "or shorter texts per request", receive, send)
                body.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            replayed = False

            async def replay():
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": b"".join(body), "more_body": False}
                return await receive()  # after the body: waits for the client's disconnect

            await self.inner(scope, replay, send)

        @staticmethod
        def refusal(scope, headers: dict[str, str]):
            """The response refusing a request before its body is read (a string: the message of a
            413), or None."""
            host = headers.get("host")
            if hosts is not None and host is not None and host_name(host) not in hosts:
                return problem(400, f"this server does not answer to the host name {host_name(host)!r}; reach it as "
                                    f"{' or '.join(sorted(hosts))}, or start it with --allowed-host NAME")
            path = scope.get("path", "")
            if settings.api_key and path != "/health" and not _authorised(headers.get("authorization"), settings.api_key):
                page = path == "/" and scope.get("method") == "GET"
                return JSONResponse({"error": "missing or wrong API key; send 'Authorization: Bearer KEY'"}, status_code=401,
                                    headers={"WWW-Authenticate": 'Basic realm="gplinker"' if page else "Bearer"})
            length = headers.get("content-length", "")
            if length.isdigit() and int(length) > settings.max_body_bytes:
                return (f"request body of {int(length)} bytes is over the limit of {settings.max_body_bytes} bytes; send "
                        "fewer or shorter texts per request")  # a 413, sent by too_large
            return None

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
        if req.text is not None and text_problem(req.text):
            return problem(422, f"text: {text_problem(req.text)}")
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

    async def extract_records(req: ExtractRequest, request: Request) -> list[dict[str, Any]] | JSONResponse:
        checked = validated(req)
        if isinstance(checked, JSONResponse):
            return checked
        texts, threshold, models = checked
        bad = {k: f"texts[{k}]: {text_problem(t)}" for k, t in enumerate(texts) if text_problem(t)}
        docs = [Document(text=t) for k, t in enumerate(texts) if k not in bad]

        async def disconnected() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass

        try:
            records = iter(await batcher.submit(docs, threshold, models, disconnected) if docs else [])
        except QueueFull as e:
            return problem(503, f"the server is busy ({e}); retry later", headers={"Retry-After": str(RETRY_AFTER_S)})
        except Gone as e:
            if e.reason == "deadline":
                return problem(504, f"not answered within {settings.timeout_s:g} s; send fewer or shorter texts, or retry later")
            return problem(499, "the client disconnected")  # nobody reads it
        return [{"error": bad[k], "entities": [], "relations": [], "events": []} if k in bad else next(records)
                for k in range(len(texts))]

    @app.get("/health", summary="liveness and readiness")
    async def health():
        return {"status": "ok" if state["ready"] else "starting", "ready": state["ready"], "models": pipeline.names(),
                "uptime_s": round(time.time() - state["started"], 1),
                "batches": batcher.batches, "texts": batcher.texts, "model_busy_s": round(batcher.busy_s, 3),
                "queue": {"waiting": batcher.pending, "peak": batcher.peak_pending, "limit": settings.max_queue,
                          "dropped": batcher.dropped, "ran_for_gone": batcher.ran_for_gone}}

    @app.get("/info", summary="each model's task, labels, limits and version")
    async def info():
        models = []
        for ex, name in pipeline.models:
            models.append({"name": name, "task": ex.task.name, **ex.task.labels_summary(),
                           **{k: v for k, v in ex.task.config().items() if not isinstance(v, list)},
                           "max_length": ex.settings.max_length, "stride": ex.settings.stride,
                           "encoder": public_name(ex.info.get("encoder")), "dev_scores": ex.info.get("dev_scores")})
        return {"version": __version__, "models": models,
                "limits": {"max_chars": settings.max_chars, "max_texts": settings.max_texts, "max_batch": settings.max_batch,
                           "max_wait_ms": settings.max_wait_ms, "max_body_bytes": settings.max_body_bytes,
                           "max_queue": settings.max_queue, "timeout_s": settings.timeout_s},
                "threshold": settings.threshold}

    @app.post("/extract", summary="entities, triples and events of one text or several",
              description="One combined record per text, as `gplinker pipeline` writes them.")
    async def extract(req: ExtractRequest, request: Request):
        records = await extract_records(req, request)
        if isinstance(records, JSONResponse):
            return records
        return JSONResponse({"records": records})  # plain JSON: no per-field re-encoding of the records

    @app.post("/render", summary="like /extract, plus the records rendered as HTML (the page uses it)")
    async def render(req: ExtractRequest, request: Request):
        records = await extract_records(req, request)
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


def serve(load: Callable[[], Pipeline], settings: ServeSettings, access_log: bool = False) -> int:
    """Load the models with ``load`` in the model thread, then serve them with uvicorn until
    interrupted (graceful shutdown lets requests in flight finish)."""
    _require()
    import uvicorn

    if settings.host not in LOOPBACK and not settings.api_key:
        logger.warning("serving on %s without an API key: anyone who can reach this address can use the models", settings.host)
    executor = model_thread()  # every torch call of this process runs in it, loading included
    try:
        pipeline = executor.submit(load).result()
    except BaseException:
        executor.shutdown(wait=False)
        raise
    app = create_app(pipeline, settings, executor)
    logger.info("serving %s on http://%s:%d (page at /, API docs at /docs)", ", ".join(pipeline.names()), settings.host,
                settings.port)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", access_log=access_log,
                timeout_graceful_shutdown=30)
    return 0
