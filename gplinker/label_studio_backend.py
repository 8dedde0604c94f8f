"""Label Studio's ML-backend protocol on the server, under ``/label-studio``: a project whose
"Model" setting points at ``http://HOST:PORT/label-studio`` gets gplinker's entities, relations and
events as pre-annotations.

Label Studio sends ``GET /health``, ``POST /setup`` (the project's labelling config, when the
backend is connected) and ``POST /predict`` (tasks and the labelling config; one prediction per
task answered, in order). Predictions are written for the project's own config: items whose
labels the config lacks are left out and counted, and the config's labels that the models do
not know are reported by ``/setup`` and logged -- nothing is guessed. Training from Label
Studio's webhooks is not offered: export the project and run ``gplinker train`` on the export.
"""

# no "from __future__ import annotations": FastAPI reads the endpoints' live annotations
import logging
from typing import Any

from gplinker import __version__, label_studio
from gplinker.batcher import Gone, MicroBatcher, QueueFull
from gplinker.combine import Pipeline
from gplinker.guard import problem
from gplinker.settings import ServeSettings
from gplinker.structures import Document, text_problem
from gplinker.task import Schema

logger = logging.getLogger(__name__)

PREFIX = "/label-studio"


def model_schema(pipeline: Pipeline) -> Schema:
    """The labels of every model of the pipeline."""
    schema = Schema()
    for ex, _ in pipeline.models:
        schema = schema.merged(ex.task.schema())
    return schema


def model_version(pipeline: Pipeline) -> str:
    return f"{'+'.join(pipeline.names())} (gplinker {__version__})"


def task_text(task: Any, config: label_studio.LabelConfig, settings: ServeSettings) -> tuple[str | None, str | None]:
    """(text, None) of a task, or (None, why it gets no prediction)."""
    data = task.get("data") if isinstance(task, dict) else None
    if not isinstance(data, dict):
        return None, 'the task has no "data" object'
    text = data.get(config.data_key)
    if not isinstance(text, str):
        return None, f"the task's data has no string field {config.data_key!r} (the config's <Text value=...>)"
    if len(text) > settings.max_chars:
        return None, f"the text has {len(text)} characters, over the server's --max-chars {settings.max_chars}"
    return text, text_problem(text)


def as_document(record: dict[str, Any]) -> Document:
    """A combined record (every model's items) as one document."""
    return Document.from_json({k: record.get(k, []) for k in ("text", "entities", "relations", "events")})


class Backend:
    """The protocol's state: the pipeline, the batcher it shares with /extract, and counts."""

    def __init__(self, pipeline: Pipeline, batcher: MicroBatcher, settings: ServeSettings) -> None:
        self.pipeline, self.batcher, self.settings = pipeline, batcher, settings
        self.schema, self.version = model_schema(pipeline), model_version(pipeline)
        self.counts = {"setups": 0, "tasks": 0, "predicted": 0, "skipped": 0}
        self.dropped: dict[str, int] = {}

    def config(self, body: dict[str, Any], key: str) -> label_studio.LabelConfig:
        xml = body.get(key)
        if xml is None:
            return label_studio.LabelConfig.for_schema(self.schema)
        return label_studio.LabelConfig.parse(xml)

    def setup(self, body: dict[str, Any]) -> dict[str, Any]:
        config = self.config(body, "schema")
        unknown = config.unknown_to(self.schema)
        self.counts["setups"] += 1
        for kind, labels in unknown.items():
            logger.warning("label studio project %s: %s the models do not know: %s", body.get("project"), kind, ", ".join(labels))
        return {"model_version": self.version, "unknown_labels": unknown}

    async def predict(self, body: dict[str, Any], gone) -> dict[str, Any]:
        config = self.config(body, "label_config")
        tasks = body.get("tasks")
        if not isinstance(tasks, list):
            raise ValueError('"tasks" is not a list')
        texts = [task_text(t, config, self.settings) for t in tasks]
        docs = [Document(text=t) for t, why in texts if why is None]
        records = []
        for k in range(0, len(docs), self.settings.max_texts):
            records += await self.batcher.submit(docs[k : k + self.settings.max_texts], self.settings.threshold, None, gone)
        report, it, results = label_studio.WriteReport(), iter(records), []
        for task, (_, why) in zip(tasks, texts):
            rec = None if why is not None else next(it)
            problem_text = why or (rec or {}).get("error")
            if problem_text:
                logger.warning(
                    "label studio task %s: no prediction (%s)", task.get("id") if isinstance(task, dict) else "?", problem_text
                )
                self.counts["skipped"] += 1
                results.append({"model_version": self.version, "result": [], "score": 0.0})
                continue
            results.append(label_studio.prediction(as_document(rec), config, report, self.version))
            self.counts["predicted"] += 1
        self.counts["tasks"] += len(tasks)
        for why, n in report.dropped.items():
            self.dropped[why] = self.dropped.get(why, 0) + n
        return {"results": results}

    def health(self) -> dict[str, Any]:
        return {
            "status": "UP",
            "model_class": "gplinker",
            "model_version": self.version,
            **self.counts,
            "left_out": self.dropped,
        }


def add_routes(app, pipeline: Pipeline, batcher: MicroBatcher, settings: ServeSettings) -> Backend:
    """The protocol's routes on ``app`` under :data:`PREFIX`."""
    from fastapi import Request

    backend = Backend(pipeline, batcher, settings)

    async def body_of(request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise _Bad("the body is not a JSON object")
        return body

    @app.get(PREFIX, include_in_schema=False)
    @app.get(PREFIX + "/", include_in_schema=False)
    @app.get(PREFIX + "/health", summary="Label Studio ML backend: health")
    async def ls_health():
        return backend.health()

    @app.post(PREFIX + "/setup", summary="Label Studio ML backend: a project connects (its labelling config)")
    async def ls_setup(request: Request):
        body = await body_of(request)
        try:
            return backend.setup(body)
        except ValueError as e:
            return problem(422, f"setup: {e}")

    @app.post(PREFIX + "/predict", summary="Label Studio ML backend: pre-annotations of tasks")
    async def ls_predict(request: Request):
        body = await body_of(request)

        async def disconnected() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass

        try:
            return await backend.predict(body, disconnected)
        except ValueError as e:
            return problem(422, f"predict: {e}")
        except QueueFull as e:
            return problem(503, f"the server is busy ({e}); retry later", {"Retry-After": "1"})
        except Gone:
            return problem(504, f"not answered within {settings.timeout_s:g} s")

    @app.post(PREFIX + "/webhook", include_in_schema=False)
    async def ls_webhook():
        return {"status": "ignored", "detail": "gplinker does not train from webhooks: export the project and run gplinker train"}

    @app.get(PREFIX + "/metrics", include_in_schema=False)
    async def ls_metrics():
        return {}

    app.add_exception_handler(_Bad, lambda request, exc: problem(422, str(exc)))
    return backend


class _Bad(ValueError):
    """A request body that is not what the protocol sends."""
