"""Batch extraction on Ray Data: the ``predict`` command spread over Ray actors, locally or on a cluster.

Input files (JSONL or plain text lines; Parquet with a ``text`` column) become a Ray dataset of
lines; ``map_batches`` runs :class:`Predictor`, a callable class that loads the model once per
actor and turns each line into the record ``predict`` writes (the same code,
:func:`gplinker.combine.predict_records`), errors per record; the records come back in input order
and are written as one JSONL file per input file. ``ray.init(address=...)`` runs it on an existing
cluster; without an address a local Ray starts. :func:`extract_dataset` is the step for a user's own
Ray pipeline. Needs the ``ray`` extra (``pip install -e ".[ray]"``).
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from gplinker.extras import require
from gplinker.io import dumps, input_format, input_record

logger = logging.getLogger(__name__)

SUFFIXES = (".jsonl", ".json", ".ndjson", ".txt", ".parquet")
LIGHT = 0.25  # logical CPUs asked by the reading and splitting tasks


def _require():
    require(["ray", "ray.data"], "the Ray engine needs Ray Data", "ray")


def input_files(inputs: Iterable[str | Path]) -> list[Path]:
    """Files named, and the data files of folders named (sorted), checked to exist."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in SUFFIXES)
            if not found:
                raise ValueError(f"{p}: no input files ({', '.join(SUFFIXES)}) in this folder")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise ValueError(f"{p}: no such file or folder — check the path")
    return out


class Predictor:
    """Ray Data callable class: loads the model once per actor; each batch of input lines ->
    the records ``predict`` writes for them (as JSON strings, so nested records travel intact)."""

    def __init__(
        self,
        model: str,
        threshold: float = 0.0,
        batch_size: int = 32,
        device: str | None = None,
        threads: int | None = None,
        registry=None,
    ) -> None:
        from gplinker.model_thread import model_thread

        # Ray Data calls __init__ on the actor's main thread and __call__ from a thread pool: both run
        # their torch work in this one thread instead (see gplinker.model_thread).
        self.thread = model_thread()
        self.extractor = self.thread.submit(self._load, model, device, threads, registry).result()
        self.threshold, self.batch_size = threshold, batch_size

    @staticmethod
    def _load(model: str, device: str | None, threads: int | None, registry):
        import torch

        from gplinker.extractor import Extractor

        if threads:
            torch.set_num_threads(threads)
        return Extractor.from_pretrained(model, device, registry=registry)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.thread.submit(self._predict, batch).result()

    def _predict(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from gplinker.combine import predict_records

        sources = [str(s) for s in batch["source"]]
        inputs = [
            input_record(src, int(line), raw if isinstance(raw, bytes) else bytes(raw), str(fmt))
            for src, line, raw, fmt in zip(sources, batch["line"], batch["raw"], batch["format"])
        ]
        records: list = [None] * len(inputs)
        for src in dict.fromkeys(sources):  # one source at a time, so error messages name their file
            rows = [k for k, s in enumerate(sources) if s == src]
            for k, rec in zip(
                rows, predict_records(self.extractor, [inputs[k] for k in rows], src, self.threshold, self.batch_size)
            ):
                records[k] = rec
        out = {k: batch[k] for k in ("source", "line")}
        out["record"] = np.array([dumps(r) for r in records], dtype=object)  # as predict writes them
        return out


def _split_lines(row: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per line of a file read as bytes (``\\n`` only, as ``predict`` reads)."""
    data: bytes = row["bytes"]
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    path = str(row["path"])
    return [{"source": path, "line": k, "raw": raw, "format": row["format"]} for k, raw in enumerate(lines, start=1)]


def lines_dataset(files: list[Path], input_format_name: str = "auto"):
    """A Ray dataset of input lines ``{source, line, raw, format}`` in input order."""
    import ray

    text_files = [f for f in files if f.suffix.lower() != ".parquet"]
    parts = []
    if text_files:
        formats = {str(f): input_format(f, input_format_name) for f in text_files}
        # reading and splitting are light: a quarter CPU each, so they still run beside actors that hold the CPUs
        ds = ray.data.read_binary_files([str(f) for f in text_files], include_paths=True, ray_remote_args={"num_cpus": LIGHT})
        parts.append(ds.map(lambda r: {**r, "format": formats[r["path"]]}, num_cpus=LIGHT).flat_map(_split_lines, num_cpus=LIGHT))
    for f in files:
        if f.suffix.lower() == ".parquet":
            pq = ray.data.read_parquet(str(f))

            def to_line(batch, source=str(f)):
                n = len(batch["text"])
                raws = [
                    json.dumps(
                        {k: (v.item() if hasattr(v, "item") else v) for k, v in zip(batch.keys(), vals)}, ensure_ascii=False
                    ).encode("utf-8")
                    for vals in zip(*batch.values())
                ]
                return {
                    "source": np.array([source] * n, dtype=object),
                    "line": np.arange(1, n + 1),
                    "raw": np.array(raws, dtype=object),
                    "format": np.array(["jsonl"] * n, dtype=object),
                }

            parts.append(pq.map_batches(to_line, batch_format="numpy", num_cpus=LIGHT))
    ds = parts[0]
    for other in parts[1:]:
        ds = ds.union(other)
    return ds


def extract_dataset(
    ds,
    model: str,
    *,
    actors: int = 1,
    gpus_per_actor: float = 0.0,
    batch_size: int = 512,
    threshold: float = 0.0,
    threads: int | None = None,
    actor_cpus: float | None = None,
    forward_batch_size: int = 32,
    registry=None,
):
    """The extraction step for a Ray pipeline: rows ``{source, line, raw, format}`` (see
    :func:`lines_dataset`) -> rows ``{source, line, record}``, ``record`` the JSON of ``predict``'s record.
    ``batch_size``: rows per Ray batch; ``forward_batch_size``: windows per forward pass (``predict
    --batch-size``); ``actor_cpus``: logical CPUs each actor reserves (default: ``threads`` or 1)."""
    return ds.map_batches(
        Predictor,
        fn_constructor_kwargs={
            "model": str(model),
            "threshold": threshold,
            "batch_size": forward_batch_size,
            "registry": registry,
            "device": "cuda" if gpus_per_actor else "cpu",
            "threads": threads,
        },
        batch_size=batch_size,
        concurrency=actors,
        num_gpus=gpus_per_actor or None,
        num_cpus=actor_cpus or threads or 1,
        batch_format="numpy",
    )


def run(
    model: str,
    inputs: list[str],
    output_dir: str | Path,
    *,
    actors: int = 1,
    gpus_per_actor: float = 0.0,
    address: str | None = None,
    input_format_name: str = "auto",
    threshold: float = 0.0,
    batch_size: int = 512,
    threads: int | None = None,
    forward_batch_size: int = 32,
    registry=None,
) -> dict[str, int]:
    """``predict --engine ray``: extract from every input file into ``output_dir/<file stem>.jsonl``
    (one record per input line, in order). Returns counts of records, predicted and failed."""
    _require()
    import ray

    files = [f.resolve() for f in input_files(inputs)]
    stems = [f.stem for f in files]
    if len(set(stems)) != len(stems):
        raise ValueError("two input files share a name; their outputs would collide — rename one")
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--output {out}: is a file; the Ray engine writes a folder (one JSONL per input file)")
    started = False
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        started = True
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # records come back in input order
        ctx.enable_progress_bars = True
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        # actors must leave room for the reading tasks, or they wait on each other forever
        actor_cpus = min(float(threads or 1), max(LIGHT, (cpus - 2 * LIGHT) / actors))
        ds = extract_dataset(
            lines_dataset(files, input_format_name),
            model,
            actors=actors,
            gpus_per_actor=gpus_per_actor,
            batch_size=batch_size,
            threshold=threshold,
            threads=threads,
            actor_cpus=actor_cpus,
            forward_batch_size=forward_batch_size,
            registry=registry,
        )
        return write_outputs(ds, files, out, batch_size)
    finally:
        if started:
            ray.shutdown()


def write_outputs(ds, files: list[Path], out: Path, batch_size: int) -> dict[str, int]:
    """The records of ``ds`` written to ``out/<input stem>.jsonl`` as they stream in, one atomic
    file per input (an input with no lines still gets its empty file); counts of records,
    predicted and failed."""
    from gplinker import atomic

    counts = {"records": 0, "predicted": 0, "failed": 0}
    writers: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:  # on an error every partial output is removed, earlier outputs kept
        for batch in ds.iter_batches(batch_size=batch_size, batch_format="numpy"):
            for src, rec in zip(batch["source"], batch["record"]):
                src = str(src)
                if src not in writers:
                    writers[src] = stack.enter_context(atomic.atomic_open(out / f"{Path(src).stem}.jsonl", "w"))
                writers[src].write(rec + "\n")
                counts["records"] += 1
                counts["failed" if '"error"' in rec and "error" in json.loads(rec) else "predicted"] += 1
    for f in files:
        if str(f) not in writers:
            atomic.write_text(out / f"{f.stem}.jsonl", "")
    return counts
