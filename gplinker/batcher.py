"""Dynamic micro-batching for the server: texts of concurrent requests gathered into one model
call, with a bounded queue, deadlines, and jobs of gone clients dropped before they run."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Sequence

from gplinker.combine import Pipeline
from gplinker.model_thread import model_thread
from gplinker.settings import ServeSettings
from gplinker.structures import Document

logger = logging.getLogger(__name__)


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

    async def submit(
        self,
        docs: Sequence[Document],
        threshold: float,
        models: tuple[str, ...] | None,
        gone: Callable[[], Awaitable[Any]] | None = None,
    ) -> list[dict[str, Any]]:
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
            done, _ = await asyncio.wait(
                [answered] + ([watcher] if watcher else []), timeout=self.settings.timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
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
                records = [
                    {"text": j.doc.text, "entities": [], "relations": [], "events": [], "error": f"{type(e).__name__}: {e}"}
                    for j in batch
                ]
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
