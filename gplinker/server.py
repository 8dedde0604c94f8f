"""gplinker over HTTP: FastAPI endpoints over a loaded :class:`gplinker.combine.Pipeline`, a page
to try models in, and the limits that keep it up.

``create_app(pipeline, ServeSettings())`` builds the app (tests use it with FastAPI's TestClient);
:func:`serve` runs it with uvicorn. Predictions go through the ``pipeline`` command's code path,
so the server cannot disagree with it; texts are micro-batched (:mod:`gplinker.batcher`) behind
the gate of :mod:`gplinker.guard`. Label Studio's ML-backend protocol is served under
``/label-studio`` (:mod:`gplinker.label_studio_backend`). Needs the ``serve`` extra (``pip install -e ".[serve]"``).
"""

# no "from __future__ import annotations": FastAPI reads the request model of the endpoints
# defined inside create_app from their live annotations
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from gplinker import __version__
from gplinker.batcher import Gone, MicroBatcher, QueueFull  # noqa: F401 - part of the server's interface
from gplinker.combine import Pipeline
from gplinker.extras import require
from gplinker.guard import Guard, host_name, problem  # noqa: F401 - host_name: part of the server's interface
from gplinker.settings import API_KEY_ENV, LOOPBACK, ServeSettings  # noqa: F401 - API_KEY_ENV: where it was
from gplinker.structures import Document, text_problem

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 1
DESCRIPTION = (
    "Joint information extraction with GlobalPointer / GPLinker: entities, relation triples, events. Offsets "
    "are characters, end exclusive; scores are probabilities (σ of the logit, temperature-scaled when "
    "`gplinker calibrate --apply` was run)."
)


def require_extra() -> None:
    require(["fastapi", "uvicorn"], "serving needs FastAPI and uvicorn", "serve")


class Refused(Exception):
    """A request answered with an error status instead of records."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers

    def response(self):
        return problem(self.status, self.message, self.headers)


def page_text() -> str:
    """The page to try models in (``gplinker/static/page.html``) with the report's CSS and the version."""
    from importlib.resources import files

    from gplinker import html as html_render

    text = files("gplinker").joinpath("static/page.html").read_text(encoding="utf-8")
    return text.replace("/*CSS*/", html_render.CSS).replace("__VERSION__", __version__)


def public_name(encoder: Any) -> str | None:
    """An encoder as /info may show it: a hub name or alias as is, a local path by its last part
    only (the training machine's folders are nobody's business)."""
    if not isinstance(encoder, str):
        return None
    looks_local = encoder.startswith(("/", ".", "~")) or "\\" in encoder or encoder.count("/") > 1 or Path(encoder).is_absolute()
    return Path(encoder.replace("\\", "/")).name if looks_local else encoder


def request_model():
    """The body of /extract and /render, as pydantic checks it (strict types: no "0.9" strings,
    no booleans for numbers, no NaN)."""
    from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

    class ExtractRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        text: StrictStr | None = Field(None, description="one text")
        texts: list[StrictStr] | None = Field(None, description="several texts (one record each, in order)")
        threshold: StrictFloat | StrictInt | None = Field(
            None, gt=0.0, le=1.0, allow_inf_nan=False, description="keep items with probability >= this, in (0, 1]"
        )
        models: list[StrictStr] | None = Field(None, description="only these models (names from /info)")

    return ExtractRequest


def validated(req, settings: ServeSettings, names: list[str]) -> tuple[list[str], float, tuple[str, ...] | None]:
    """(texts, threshold, models) of a request, or :class:`Refused` saying what to send."""
    if (req.text is None) == (req.texts is None):
        raise Refused(422, 'send exactly one of "text" (a string) or "texts" (a list of strings)')
    if req.text is not None and (problem := text_problem(req.text)):
        raise Refused(422, f"text: {problem}")
    texts = [req.text] if req.text is not None else list(req.texts or [])
    if not texts:
        raise Refused(422, '"texts" is empty — send at least one text')
    if len(texts) > settings.max_texts:
        raise Refused(413, f"{len(texts)} texts is over the limit of {settings.max_texts} per request; split the request")
    long = [k for k, t in enumerate(texts) if len(t) > settings.max_chars]
    if long:
        raise Refused(
            413,
            f"text {long[0]} has {len(texts[long[0]])} characters, over the limit of {settings.max_chars}; "
            "split it (longer texts up to the limit are windowed)",
        )
    models = tuple(req.models) if req.models else None
    unknown = sorted(set(models or ()) - set(names))
    if unknown:
        raise Refused(404, f"unknown model(s) {', '.join(unknown)}; this server has {', '.join(names)}")
    return texts, (req.threshold if req.threshold is not None else settings.threshold), models


async def extract_records(req, request, batcher: MicroBatcher, settings: ServeSettings) -> list[dict[str, Any]]:
    """One record per text of the request (a text that is no text -- a lone surrogate -- gets an
    error record, the others are answered), or :class:`Refused`."""
    texts, threshold, models = validated(req, settings, batcher.pipeline.names())
    problems = [text_problem(t) for t in texts]
    bad = {k: f"texts[{k}]: {p}" for k, p in enumerate(problems) if p}
    docs = [Document(text=t) for k, t in enumerate(texts) if k not in bad]

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    try:
        records = iter(await batcher.submit(docs, threshold, models, disconnected) if docs else [])
    except QueueFull as e:
        raise Refused(503, f"the server is busy ({e}); retry later", {"Retry-After": str(RETRY_AFTER_S)}) from None
    except Gone as e:
        if e.reason == "deadline":
            raise Refused(
                504, f"not answered within {settings.timeout_s:g} s; send fewer or shorter texts, or retry later"
            ) from None
        raise Refused(499, "the client disconnected") from None  # nobody reads it
    return [
        {"error": bad[k], "entities": [], "relations": [], "events": []} if k in bad else next(records) for k in range(len(texts))
    ]


def health(batcher: MicroBatcher, settings: ServeSettings, state: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": "ok" if state["ready"] else "starting",
        "ready": state["ready"],
        "models": batcher.pipeline.names(),
        "uptime_s": round(time.time() - state["started"], 1),
        "batches": batcher.batches,
        "texts": batcher.texts,
        "model_busy_s": round(batcher.busy_s, 3),
        "queue": {
            "waiting": batcher.pending,
            "peak": batcher.peak_pending,
            "limit": settings.max_queue,
            "dropped": batcher.dropped,
            "ran_for_gone": batcher.ran_for_gone,
        },
    }


def info(pipeline: Pipeline, settings: ServeSettings) -> dict[str, Any]:
    models = [
        {
            "name": name,
            "task": ex.task.name,
            **ex.task.labels_summary(),
            **{k: v for k, v in ex.task.config().items() if not isinstance(v, list)},
            "max_length": ex.settings.max_length,
            "stride": ex.settings.stride,
            "encoder": public_name(ex.info.get("encoder")),
            "dev_scores": ex.info.get("dev_scores"),
        }
        for ex, name in pipeline.models
    ]
    return {
        "version": __version__,
        "models": models,
        "limits": {
            "max_chars": settings.max_chars,
            "max_texts": settings.max_texts,
            "max_batch": settings.max_batch,
            "max_wait_ms": settings.max_wait_ms,
            "max_body_bytes": settings.max_body_bytes,
            "max_queue": settings.max_queue,
            "timeout_s": settings.timeout_s,
        },
        "threshold": settings.threshold,
    }


def invalid_request(exc) -> Any:
    """A 422 naming each field pydantic refused and what to send instead."""
    details = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
        details.append(f"{where}: {err.get('msg')}")
    return problem(
        422,
        "invalid request: " + "; ".join(details) + ' — send JSON like {"text": "..."} or '
        '{"texts": ["...", "..."]}, optionally with "threshold" in (0, 1] and "models": [names]',
    )


def add_error_handlers(app) -> None:
    """422 naming what pydantic refused; :class:`Refused` as its status and message."""
    from fastapi.exceptions import RequestValidationError

    async def invalid(request, exc: RequestValidationError):
        return invalid_request(exc)

    async def refused(request, exc: Refused):
        return exc.response()

    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Refused, refused)


def create_app(pipeline: Pipeline, settings: ServeSettings | None = None, executor: ThreadPoolExecutor | None = None):
    """The FastAPI app serving ``pipeline``; ``executor``: the :func:`model_thread` that loaded it
    (default: a new one)."""
    require_extra()
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse

    from gplinker import html as html_render
    from gplinker import label_studio_backend

    settings = settings or ServeSettings()
    batcher = MicroBatcher(pipeline, settings, executor)
    page_html, state = page_text(), {"ready": False, "started": time.time()}
    ExtractRequest = request_model()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        state["ready"] = True
        yield
        state["ready"] = False
        await batcher.stop()

    app = FastAPI(title="gplinker", version=__version__, lifespan=lifespan, description=DESCRIPTION)
    app.state.batcher = batcher
    app.add_middleware(Guard, settings=settings)
    add_error_handlers(app)

    @app.get("/health", summary="liveness and readiness")
    async def health_route():
        return health(batcher, settings, state)

    @app.get("/info", summary="each model's task, labels, limits and version")
    async def info_route():
        return info(pipeline, settings)

    @app.post(
        "/extract",
        summary="entities, triples and events of one text or several",
        description="One combined record per text, as `gplinker pipeline` writes them.",
    )
    async def extract(req: ExtractRequest, request: Request):
        return JSONResponse({"records": await extract_records(req, request, batcher, settings)})  # no per-field re-encoding

    @app.post("/render", summary="like /extract, plus the records rendered as HTML (the page uses it)")
    async def render(req: ExtractRequest, request: Request):
        records = await extract_records(req, request, batcher, settings)
        return JSONResponse({"records": records, "html": html_render.fragment(records, numbered=len(records) > 1)})

    app.state.label_studio = label_studio_backend.add_routes(app, pipeline, batcher, settings)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(page_html)

    return app


def serve(
    pipeline: Pipeline, settings: ServeSettings, executor: ThreadPoolExecutor | None = None, access_log: bool = False
) -> int:
    """Serve ``pipeline`` with uvicorn until interrupted (graceful shutdown lets requests in flight
    finish). ``executor``: the :func:`model_thread` that loaded the models, which runs every batch."""
    require_extra()
    import uvicorn

    if settings.host not in LOOPBACK and not settings.api_key:
        logger.warning("serving on %s without an API key: anyone who can reach this address can use the models", settings.host)
    app = create_app(pipeline, settings, executor)
    logger.info(
        "serving %s on http://%s:%d (page at /, API docs at /docs)", ", ".join(pipeline.names()), settings.host, settings.port
    )
    uvicorn.run(
        app, host=settings.host, port=settings.port, log_level="info", access_log=access_log, timeout_graceful_shutdown=30
    )
    return 0
