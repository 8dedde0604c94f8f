"""The gplinker command line: train, evaluate, predict, pipeline, serve, info, quickstart.

Installed as the ``gplinker`` command and ``python -m gplinker``; ``run.py`` in a checkout calls
the same :func:`main`. Every argument is checked before any data or model is loaded, and every
mistake a user can make is answered with one line naming the problem and the fix (exit status 2);
``--debug`` shows the traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from gplinker import __version__

ROOT = Path(__file__).resolve().parent.parent  # the checkout, when run from one (quickstart data)
EXIT_USAGE = 2
STDOUT = "-"  # an output path meaning standard output; the command's own messages then go to stderr


class UsageError(ValueError):
    """A mistake in the command line or its files; printed as one line, exit status 2."""


# ---- small helpers -------------------------------------------------------------------------------

def _setup_logging(log_file: Path | None = None, verbose: bool = False) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("transformers", "httpx", "urllib3", "filelock", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _registry():
    from gplinker.tasks import default_registry

    return default_registry()


def print_metrics(metrics: dict[str, Any], file=None) -> None:
    """A readable table per level: overall, then one row per label (to ``file``, default stdout)."""
    import pandas as pd

    for level, m in metrics.items():
        if not isinstance(m, dict) or "f1" not in m:
            continue
        rows = [{"label": "ALL (micro)", **{k: m[k] for k in ("precision", "recall", "f1", "n_gold", "n_pred")}}]
        for lab, v in m.get("per_label", {}).items():
            rows.append({"label": lab, **{k: v[k] for k in ("precision", "recall", "f1", "n_gold", "n_pred")}})
        df = pd.DataFrame(rows).rename(columns={"n_gold": "gold", "n_pred": "predicted"})
        print(f"\n{level}", file=file)
        print(df.to_string(index=False, float_format=lambda x: f"{x:.4f}"), file=file)


def _existing_file(path: str, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{what} {path}: no such file — check the path")
    if p.is_dir():
        raise UsageError(f"{what} {path}: is a directory — pass one file")
    return p


def _writable_file(path: str, what: str, inputs: tuple[Path, ...] = (), taken: dict[str, str] | None = None) -> Path:
    """An output file path checked before any work: not a directory, not one of the inputs, not
    inside a model directory, not another output of the same command (``taken``: resolved path ->
    option, filled in here), in a folder that exists or can be made and that we may write to.
    ``-`` is standard output; a device or FIFO (``/dev/null``) is written directly."""
    p = Path(path)
    if taken is not None:
        key = "-" if path == STDOUT else os.path.realpath(p)
        if key in taken:
            raise UsageError(f"{what} {path} is also {taken[key]}; one would overwrite the other — give each output "
                             "its own path")
        taken[key] = what
    if path == STDOUT:
        return p
    if p.is_dir():
        raise UsageError(f"{what} {path}: is a directory — pass a file name, e.g. {Path(path) / 'out.jsonl'}")
    for src in inputs:
        if p.exists() and src.exists() and os.path.samefile(p, src):
            raise UsageError(f"{what} {path} is the input file {src}; writing it would destroy the input — "
                             "choose another output path")
    _outside_models(Path(os.path.realpath(p)).parent, what, path)
    if p.exists() and not p.is_file():
        return p  # a device or a FIFO: written directly, never replaced
    _check_writable_dir(p.parent if str(p.parent) else Path("."), what, path)
    return p


def _outside_models(folder: Path, what: str, path: str) -> None:
    """Refuse an output in a model directory: gplinker.json, the weights or the tokenizer would be
    overwritten (``evaluate --output MODEL/gplinker.json`` once lost a model)."""
    from gplinker import model_dir

    for d in (folder, *folder.parents):
        if (d / model_dir.CONFIG_NAME).is_file():
            raise UsageError(f"{what} {path} is inside the model directory {d}; writing there could destroy the model — "
                             "choose a path outside it")


def _check_writable_dir(folder: Path, what: str, path: str) -> None:
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"{what} {path}: {probe} is a file, not a folder — choose another output path")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {path}: cannot write in {probe} (permission denied) — choose a writable folder")


def _model_dir(path: str) -> Path:
    from gplinker import model_dir

    try:
        return model_dir.resolve(path)
    except model_dir.ModelDirError as e:
        raise UsageError(str(e)) from e


def _check_device(device: str | None) -> None:
    from gplinker.extractor import resolve_device

    resolve_device(device)  # a ValueError naming the fix


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a probability in (0, 1]; items are kept when their probability "
                                         "is at least this (every decoded item has p > 0.5)")
    return value


def _number(kind: type, minimum: float, strict: bool, what: str) -> Callable[[str], Any]:
    """An argparse type: a ``kind`` number above (``strict``) or at least ``minimum``."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"{text} must be {'above' if strict else 'at least'} {minimum}")
        return value

    return parse


_positive_int = _number(int, 1, False, "a whole number")
_non_negative_int = _number(int, 0, False, "a whole number")
_positive_float = _number(float, 0.0, True, "a number")
_non_negative_float = _number(float, 0.0, False, "a number")


def _port(text: str) -> int:
    value = _non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port (0-65535)")
    return value


def _load_extractor(path: str, args: argparse.Namespace):
    """A saved model (validated), its encoder run by ONNX Runtime when ``--onnx`` is given."""
    from gplinker.extractor import Extractor

    extractor = Extractor.from_pretrained(_model_dir(path), "cpu" if args.onnx and args.device is None else args.device)
    if args.onnx:
        from gplinker.onnx_runtime import use_onnx

        use_onnx(extractor, path)
    return extractor


def _apply_decode_options(extractors, args: argparse.Namespace) -> None:
    """Prediction-time overrides of the saved decoding: --decode for the NER models and
    --drop-triggerless for the event models among ``extractors``; an option none fits is a mistake."""
    options = [("--decode", "ner", "NER", getattr(args, "decode", None), lambda t: setattr(t, "decoding", args.decode)),
               ("--drop-triggerless", "event", "event", getattr(args, "drop_triggerless", False),
                lambda t: setattr(t, "keep_triggerless", False))]
    for flag, task_name, shown, given, apply in options:
        if not given:
            continue
        fits = [ex.task for ex in extractors if ex.task.name == task_name]
        if not fits:
            raise UsageError(f"{flag} is for {shown} models; none of the models given is one")
        for task in fits:
            apply(task)


# ---- train ---------------------------------------------------------------------------------------

def _task_options(args: argparse.Namespace, entry) -> Any:
    """The task's typed options from the flags given; a flag of another task is an error."""
    given = {"decode": args.decode, "entity_mode": args.entity_mode, "schema": args.schema,
             "keep_triggerless": False if args.drop_triggerless else None}
    flags = {"decode": "--decode", "entity_mode": "--entity-mode", "schema": "--schema", "keep_triggerless": "--drop-triggerless"}
    given = {k: v for k, v in given.items() if v is not None}
    try:
        return entry.options(**given)
    except ValueError:
        import dataclasses

        own = {f.name for f in dataclasses.fields(entry.task_class.options_class)}
        wrong = sorted(flags[k] for k in given if k not in own)
        raise UsageError(f"{', '.join(wrong)} does not apply to {entry.name} training "
                         f"(its options: {', '.join(flags[k] for k in sorted(own)) or 'none'})") from None


def _check_train_args(args: argparse.Namespace) -> None:
    """Everything about a training command that can be checked before loading data or models."""
    _existing_file(args.train, "--train")
    if args.dev:
        _existing_file(args.dev, "--dev")
    if args.schema:
        _existing_file(args.schema, "--schema")
    out = Path(args.output)
    if args.output == STDOUT or (out.exists() and not out.is_dir()):
        raise UsageError(f"--output {args.output}: is not a folder — training writes a folder (model/, metrics.json, train.log)")
    _outside_models(Path(os.path.realpath(out)), "--output", args.output)
    _check_writable_dir(out, "--output", args.output)
    _check_previous_run(args, out)
    if args.stride is None:
        from gplinker.offsets import default_stride

        args.stride = default_stride(args.max_length)
    if args.max_length < 8:
        raise UsageError(f"--max-length {args.max_length} is too short: windows need room for special tokens and text (use >= 8)")
    if not 0 <= args.stride <= args.max_length - 4:
        raise UsageError(f"--stride {args.stride} must be smaller than --max-length {args.max_length} minus the special "
                         f"tokens; it is how many tokens consecutive windows share (default: max length / 4, at most 64)")
    if args.head_size % 2:
        raise UsageError(f"--head-size {args.head_size} must be even (RoPE rotates pairs of dimensions)")
    if args.init_from:
        _model_dir(args.init_from)
        if args.trim_vocab != "none":
            raise UsageError("--trim-vocab cannot change the vocabulary of a model given to --init-from; drop one of them")
    _check_device(args.device)


def _check_previous_run(args: argparse.Namespace, out: Path) -> None:
    """A finished model or an unfinished run in ``--output`` is never replaced silently: it needs
    ``--resume`` (go on with the checkpoint) or ``--overwrite`` (start again)."""
    from gplinker import model_dir

    if args.resume and args.overwrite:
        raise UsageError("--resume continues the run in --output and --overwrite starts it again; choose one")
    if args.resume or args.overwrite:
        return
    if (out / "model").exists() or model_dir.recover_directory(out / "model") is not None:
        raise UsageError(f"--output {args.output} already holds a trained model ({out / 'model'}); choose another "
                         "--output, or pass --overwrite to replace it (it is kept until the new one is saved)")
    if (out / "checkpoint").exists():
        raise UsageError(f"--output {args.output} holds the checkpoint of an unfinished run; pass --resume to go on with "
                         "it or --overwrite to start again")


def cmd_train(args: argparse.Namespace) -> int:
    _check_train_args(args)
    registry = _registry()
    entry = registry[args.task]
    options = _task_options(args, entry)
    out = Path(args.output)
    from gplinker.atomic import OutputLock
    from gplinker.distributed import local_device

    args.device = local_device(args.device)
    main_rank = int(os.environ.get("RANK", "0")) == 0  # under torchrun, rank 0 alone locks, logs to file and prints
    if args.resume and not (out / "checkpoint" / "state.json").is_file():
        raise UsageError(f"--resume: {out / 'checkpoint'} holds no checkpoint — train with --save-every N first")
    with OutputLock(out) if main_rank else contextlib.nullcontext():
        _setup_logging(out / "train.log" if main_rank else None, args.verbose)
        if main_rank and args.overwrite and (out / "checkpoint").exists():
            import shutil

            logging.getLogger("gplinker").info("--overwrite: removing the checkpoint of the previous run in %s", out)
            shutil.rmtree(out / "checkpoint")
        if not main_rank:
            logging.getLogger().setLevel(logging.WARNING)
        return _train(args, entry, options, out, main_rank)


def _train(args: argparse.Namespace, entry, options, out: Path, main_rank: bool = True) -> int:
    from gplinker.extractor import Extractor, ModelSettings
    from gplinker.io import write_json
    from gplinker.training import TrainConfig, train

    train_docs = entry.read(args.train, args.format)
    dev_docs = entry.read(args.dev, args.format) if args.dev else None
    if args.max_train_docs:
        train_docs = train_docs[: args.max_train_docs]
    if args.init_from:
        from gplinker.finetune import extend_extractor

        base = Extractor.from_pretrained(_model_dir(args.init_from), args.device)
        extractor = extend_extractor(base, entry.task_class.from_documents(train_docs, options))
        extractor.info["init_from"] = str(args.init_from)
    else:
        task = entry.task_class.from_documents(train_docs, options)
        encoder = args.encoder
        if args.trim_vocab != "none":
            encoder = _trim_encoder(args, train_docs, dev_docs, out)
        settings = ModelSettings(head_type=args.head, head_size=args.head_size, max_length=args.max_length,
                                 stride=args.stride, align=args.align, label_sharing=args.label_sharing)
        extractor = Extractor.build(encoder, task, settings, args.device, seed=args.seed)
        extractor.info["encoder"] = args.encoder
        if encoder != args.encoder:  # the trimmed copy is in memory now and will be saved with the model
            import shutil

            shutil.rmtree(encoder, ignore_errors=True)
    extractor.info.update(train_file=str(args.train), dev_file=str(args.dev) if args.dev else None, format=args.format)
    config = TrainConfig(epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr,
                         head_lr=args.head_lr, seed=args.seed, freeze_embeddings=args.freeze_embeddings,
                         precision=args.precision, grad_accum=args.grad_accum, eval_every=args.eval_every,
                         patience=args.patience, save_every=args.save_every, resume=args.resume,
                         tune_link_threshold=args.tune_link_threshold)
    if dev_docs:
        _warn_label_overlap(extractor.task, dev_docs)
    summary = train(extractor, train_docs, dev_docs, config, out)
    if not main_rank:
        return 0
    best = summary["best"]
    metrics = best["metrics"] or {}
    write_json(out / "metrics.json", metrics)
    print(f"trained {summary['steps']} steps in {summary['seconds']:.0f}s; model saved to {out / 'model'}")
    if metrics:
        print(f"best dev scores (epoch {best['epoch']}, step {best['step']}):")
        print_metrics(metrics)
    return 0


def _warn_label_overlap(task, docs) -> None:
    """Say so when the model's labels and the data's labels have nothing in common (F1 is then 0)."""
    if task.name == "ner":
        known, data = set(task.labels), {s.label for d in docs for s in d.entities}
    elif task.name == "relation":
        known, data = set(task.predicates), {r.label for d in docs for r in d.relations}
    else:
        known, data = {t for t, _ in task.labels}, {e.label for d in docs for e in d.events}
    if data and known and not (known & data):
        logging.getLogger("gplinker").warning(
            "none of the labels in the data (%s) is a label of the model (%s): every score will be 0",
            ", ".join(sorted(data)[:8]), ", ".join(sorted(known)[:8]))


def _trim_encoder(args: argparse.Namespace, train_docs, dev_docs, out: Path) -> str:
    """Trim the encoder's vocabulary to the pieces of the training (and dev) texts; log what the
    dev texts lose when they were not part of the trimming."""
    from transformers import AutoTokenizer

    from gplinker.encoders import resolve_encoder, tokenization_changes, trim_vocabulary
    from gplinker.io import write_json

    texts = [d.text for d in train_docs]
    if args.trim_vocab == "train+dev" and dev_docs:
        texts += [d.text for d in dev_docs]
    path = trim_vocabulary(args.encoder, texts, out / "trimmed_encoder")
    if dev_docs and args.trim_vocab == "train":
        original = AutoTokenizer.from_pretrained(resolve_encoder(args.encoder), use_fast=True, trust_remote_code=False)
        trimmed = AutoTokenizer.from_pretrained(path, use_fast=True, local_files_only=True, trust_remote_code=False)
        c = tokenization_changes(original, trimmed, [d.text for d in dev_docs])
        logging.getLogger("gplinker").info(
            "vocabulary trimmed to the training texts: %d of %d dev texts tokenize differently, "
            "%d new unknown tokens among %d", c["texts_changed"], c["texts"], c["new_unknown_tokens"], c["tokens"])
        write_json(out / "trim_report.json", c)
    return str(path)


# ---- evaluate, predict, pipeline -------------------------------------------------------------------

def cmd_evaluate(args: argparse.Namespace) -> int:
    data = _existing_file(args.data, "--data")
    _model_dir(args.model)
    if args.output:
        _writable_file(args.output, "--output", (data,))
    _check_device(args.device)
    _setup_logging(None, args.verbose)
    from gplinker.io import write_json

    say = _messages(args.output)

    extractor = _load_extractor(args.model, args)
    _apply_decode_options([extractor], args)
    entry = _registry()[extractor.task.name]
    gold = entry.read(data, args.format)
    _warn_label_overlap(extractor.task, gold)
    t0 = time.time()
    pred = extractor.predict(gold, args.batch_size, progress=True)
    metrics = extractor.task.evaluate(gold, pred)
    print_metrics(metrics, say)
    print(f"\n{len(gold)} documents in {time.time() - t0:.1f}s", file=say)
    if args.output:
        write_json(args.output, metrics)
    return 0


def _messages(*outputs: str | None):
    """Where a command's own messages go: stderr when one of its outputs is standard output."""
    return sys.stderr if STDOUT in outputs else sys.stdout


def _check_io_args(args: argparse.Namespace) -> Path:
    src = _existing_file(args.input, "--input")
    taken: dict[str, str] = {}
    _writable_file(args.output, "--output", (src,), taken)
    if getattr(args, "html", None):
        _writable_file(args.html, "--html", (src,), taken)
    for m in args.model if isinstance(args.model, list) else [args.model]:
        _model_dir(m)
    _check_device(args.device)
    return src


def cmd_predict(args: argparse.Namespace) -> int:
    """One canonical record per input line, streamed in chunks; failures are recorded per line."""
    if args.engine == "ray":
        return _predict_ray(args)
    if len(args.input) != 1:
        raise UsageError(f"--input names {len(args.input)} paths; the local engine reads one file (--engine ray reads many)")
    args.input = args.input[0]
    src = _check_io_args(args)
    _setup_logging(None, args.verbose)
    from gplinker.combine import predict_records
    from gplinker.io import input_format, iter_inputs, write_jsonl

    extractor = _load_extractor(args.model, args)
    _apply_decode_options([extractor], args)
    fmt = input_format(src, args.input_format)
    counts = {"records": 0, "predicted": 0, "failed": 0}
    failures: list[str] = []
    t0 = time.time()

    def records():
        for chunk in _chunks(iter_inputs(src, fmt), args.chunk_size):
            for rec in predict_records(extractor, chunk, str(src), args.threshold or 0.0, args.batch_size):
                counts["records"] += 1
                if "error" in rec:
                    counts["failed"] += 1
                    failures.append(rec["error"])
                else:
                    counts["predicted"] += 1
                yield rec

    write_jsonl(args.output, records())
    print(f"{counts['records']} records written to {args.output} ({counts['predicted']} predicted in "
          f"{time.time() - t0:.1f}s, {counts['failed']} failed)", file=_messages(args.output))
    for msg in failures[:20]:
        print(f"  {msg}", file=sys.stderr)
    if len(failures) > 20:
        print(f"  ... and {len(failures) - 20} more (each has an error record in {args.output})", file=sys.stderr)
    return 1 if counts["records"] and not counts["predicted"] else 0


def _predict_ray(args: argparse.Namespace) -> int:
    """predict --engine ray: Ray Data actors, one output JSONL per input file in the --output folder."""
    from gplinker import ray_engine

    try:
        files = ray_engine.input_files(args.input)
    except ValueError as e:
        raise UsageError(f"--input {e}") from None
    out = Path(args.output)
    if args.output == STDOUT or (out.exists() and not out.is_dir()):
        raise UsageError(f"--output {args.output}: is not a folder; the Ray engine writes a folder (one JSONL per input file)")
    _outside_models(Path(os.path.realpath(out)), "--output", args.output)
    _check_writable_dir(out, "--output", args.output)
    if any(out.resolve() == f.resolve().parent for f in files):
        raise UsageError(f"--output {args.output} is a folder of input files; outputs could overwrite inputs — choose another")
    model = _model_dir(args.model)
    _setup_logging(None, args.verbose)
    t0 = time.time()
    counts = ray_engine.run(str(model), [str(f) for f in files], out, actors=args.actors,
                            gpus_per_actor=args.gpus_per_actor, address=args.ray_address, input_format_name=args.input_format,
                            threshold=args.threshold or 0.0, threads=args.threads_per_actor,
                            forward_batch_size=args.batch_size)
    print(f"{counts['records']} records from {len(files)} file(s) written to {out}/ ({counts['predicted']} predicted, "
          f"{counts['failed']} failed) in {time.time() - t0:.1f}s on Ray with {args.actors} actor(s)")
    return 1 if counts["records"] and not counts["predicted"] else 0


def _chunks(items, size: int):
    chunk = []
    for x in items:
        chunk.append(x)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _model_name(path: str) -> str:
    p = Path(path).resolve()
    return p.parent.name if p.name == "model" else p.name


def cmd_pipeline(args: argparse.Namespace) -> int:
    src = _check_io_args(args)
    _setup_logging(None, args.verbose)
    import pandas as pd

    from gplinker.html import render
    from gplinker.io import input_format, iter_inputs, write_jsonl
    from gplinker.combine import Pipeline

    pipeline = Pipeline([(_load_extractor(m, args), _model_name(m)) for m in args.model])
    _apply_decode_options([ex for ex, _ in pipeline.models], args)
    fmt = input_format(src, args.input_format)
    t0 = time.time()
    out: list[dict[str, Any]] = []
    n_texts = 0
    for chunk in _chunks(iter_inputs(src, fmt), args.chunk_size):
        n_texts += sum(r.doc is not None for r in chunk)
        out += pipeline.records(chunk, args.threshold or 0.0, args.batch_size)
    seconds = time.time() - t0
    write_jsonl(args.output, out)
    if args.html:
        from gplinker.atomic import write_text

        write_text(args.html, render(out, f"gplinker: {Path(args.input).name}"), errors="backslashreplace")
    rows = [(x.get("task"), kind, x["label"]) for rec in out for kind in ("entities", "relations", "events") for x in rec.get(kind, [])]
    failed = [rec for rec in out if "error" in rec]
    say = _messages(args.output, args.html)
    print(f"{len(out)} records -> {args.output}" + (f" and {args.html}" if args.html else ""), file=say)
    if rows:
        table = pd.DataFrame(rows, columns=["task", "kind", "label"]).value_counts().rename("count").reset_index()
        print(table.sort_values(["kind", "count"], ascending=[True, False]).to_string(index=False), file=say)
    print(f"{n_texts} texts through {len(pipeline.models)} model(s) in {seconds:.1f}s "
          f"({n_texts / max(seconds, 1e-9):.1f} texts/s); {len(failed)} records with errors", file=say)
    for rec in failed[:20]:
        print(f"  line {rec['line']}: {rec['error']}", file=sys.stderr)
    return 1 if out and len(failed) == len(out) else 0


# ---- info, serve, quickstart ----------------------------------------------------------------------

def cmd_info(args: argparse.Namespace) -> int:
    """What a saved model is, from its gplinker.json (no weights loaded)."""
    from gplinker import model_dir

    path = _model_dir(args.model)
    config = model_dir.read_config(path, _registry().names())
    task = _registry().task_from_config(config["task"], config["task_config"])
    info = config.get("info") or {}
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    report = {"model": str(path), "task": config["task"], **task.labels_summary(),
              **{k: v for k, v in task.config().items() if not isinstance(v, list)},
              "encoder": info.get("encoder"), "max_length": config.get("max_length"), "stride": config.get("stride"),
              "head_type": config.get("head_type"), "head_size": config.get("head_size"),
              "label_sharing": bool(config.get("label_sharing", False)) if task.name == "event" else None,
              "link_threshold": config.get("link_threshold") if task.name != "ner" else None,
              "temperature": config.get("temperature"),
              "train_file": info.get("train_file"), "train_documents": info.get("train_documents"),
              "dev_file": info.get("dev_file"), "dev_scores": info.get("dev_scores"),
              "best_epoch": info.get("best_epoch"), "best_step": info.get("best_step"),
              "init_from": info.get("init_from"), "size_mb": round(size / 2**20, 1),
              "gplinker_version": config.get("gplinker_version")}
    report = {k: v for k, v in report.items() if v is not None}
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return 0
    for k, v in report.items():
        if k == "dev_scores":
            print("dev scores:")
            for level, s in v.items():
                print(f"  {level:<18} P {s['precision']:.4f}  R {s['recall']:.4f}  F1 {s['f1']:.4f}")
        elif isinstance(v, (list, dict)):
            shown = json.dumps(v, ensure_ascii=False)
            print(f"{k}: {shown if len(shown) < 400 else shown[:400] + ' ...'}")
        else:
            print(f"{k}: {v}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Reliability of the model's scores on labelled data; a temperature fitted there, saved with --apply."""
    data = _existing_file(args.data, "--data")
    path = _model_dir(args.model)
    taken: dict[str, str] = {}
    for option in ("plot", "output"):
        if getattr(args, option):
            _writable_file(getattr(args, option), f"--{option}", (data,), taken)
    _check_device(args.device)
    _setup_logging(None, args.verbose)
    say = _messages(args.plot, args.output)
    from gplinker import calibration, model_dir
    from gplinker.atomic import write_text
    from gplinker.extractor import Extractor
    from gplinker.io import write_json

    ex = Extractor.from_pretrained(path, args.device)
    gold = _registry()[ex.task.name].read(data, args.format)
    # T is fitted on one half of the documents and judged on the other; --apply saves T fitted on all
    fit_half = calibration.cell_outcomes(ex, gold[0::2], args.floor, args.batch_size)
    held_out = calibration.cell_outcomes(ex, gold[1::2], args.floor, args.batch_size)
    t = calibration.fit_temperature(fit_half)
    t_all = calibration.fit_temperature(fit_half + held_out)
    report = {"temperature_fitted_on_half": t, "temperature": t_all, "saved_temperature": ex.settings.temperature,
              "floor": args.floor, "heads": {}}
    print(f"cells with logit > {args.floor} per head, scored σ(2·logit / T). T fitted on half of the documents: {t:.3f}; "
          f"judged on the other half below. T fitted on all: {t_all:.3f} (saved with the model: {ex.settings.temperature:.3f})", file=say)
    print(f"{'head':<12} {'cells':>7} {'right':>7} {'gold':>7} {'ECE T=1':>9} {'ECE T=fit':>10}   (held-out half)", file=say)
    curves = {}
    for o in held_out:
        p1, pt = calibration.probabilities(o.logits), calibration.probabilities(o.logits, t)
        e1, et = calibration.ece(p1, o.correct), calibration.ece(pt, o.correct)
        report["heads"][o.head] = {"cells": int(len(o.logits)), "right": int(o.correct.sum()), "gold": o.n_gold,
                                   "ece": e1, "ece_fitted": et, "reliability": calibration.reliability(p1, o.correct),
                                   "reliability_fitted": calibration.reliability(pt, o.correct)}
        print(f"{o.head:<12} {len(o.logits):>7} {int(o.correct.sum()):>7} {o.n_gold:>7} {e1:>9.4f} {et:>10.4f}", file=say)
        if len(o.logits):
            curves[f"{o.head}, T=1"] = (p1, o.correct)
            curves[f"{o.head}, T={t:.2f}"] = (pt, o.correct)
    if args.plot:
        calibration.plot(args.plot, curves, f"{_model_name(str(path))}: {Path(args.data).name}, held-out half")
        print(f"reliability diagram: {args.plot}", file=say)
    if args.output:
        write_json(args.output, report)
    if args.apply:
        cfg_file = path / model_dir.CONFIG_NAME
        config = json.loads(cfg_file.read_text(encoding="utf-8"))
        config["temperature"] = t_all
        write_text(cfg_file, json.dumps(config, ensure_ascii=False, indent=2))
        print(f"temperature {t_all:.3f} saved in {cfg_file}: scores are now σ(2·logit / {t_all:.3f})", file=say)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    for m in args.model:
        _model_dir(m)
    _check_device(args.device)
    from gplinker.server import API_KEY_ENV, ServeSettings, serve

    api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV)
    if api_key is not None and not api_key.strip():
        where = "--api-key" if args.api_key is not None else f"${API_KEY_ENV}"
        raise UsageError(f"{where} is empty (an unset variable?), so the server would run without a key — give the key, "
                         f"or leave out {where} to serve without one")
    try:
        settings = ServeSettings(host=args.host, port=args.port, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                                 max_chars=args.max_chars, max_texts=args.max_texts, threshold=args.threshold or 0.0,
                                 api_key=api_key, batch_size=args.batch_size, max_queue=args.max_queue,
                                 timeout_s=args.timeout, allowed_hosts=tuple(args.allowed_host) if args.allowed_host else None)
    except ValueError as e:
        raise UsageError(str(e)) from None
    _setup_logging(None, args.verbose)

    def load():
        from gplinker.combine import Pipeline

        pipeline = Pipeline([(_load_extractor(m, args), _model_name(m)) for m in args.model])
        _apply_decode_options([ex for ex, _ in pipeline.models], args)
        return pipeline

    return serve(load, settings, access_log=args.access_log)


QUICKSTART = [  # task, train, dev, extra training arguments
    ("ner", "data/ner/en_train.jsonl", "data/ner/en_dev.jsonl", ["--epochs", "10", "--lr", "5e-5"]),
    ("relation", "data/relation/en_train.jsonl", "data/relation/en_dev.jsonl", ["--epochs", "30", "--lr", "1e-4"]),
    ("event", "data/event/en_train.jsonl", "data/event/en_dev.jsonl", ["--epochs", "30", "--lr", "1e-4"]),
]


def cmd_quickstart(args: argparse.Namespace) -> int:
    """Train small demo models on the shipped examples (first run only), then run the pipeline on
    data/pipeline_demo.jsonl and write JSONL and HTML."""
    data = ROOT / "data"
    if not (data / "pipeline_demo.jsonl").is_file():
        raise UsageError(f"quickstart needs the example data of a gplinker checkout ({data} not found) — run it from a "
                         "clone of the repository")
    _check_device(args.device)
    t0 = time.time()
    out = Path(args.output)
    print("gplinker quickstart: trains DEMO models on ~30 hand-written example sentences per task, then runs them.\n"
          "They show the pipeline working end to end; they know little beyond the example names. A real model is one\n"
          "command away (printed at the end).")
    dev = ["--device", args.device] if args.device else []
    for task, tr, dv, extra in QUICKSTART:
        if (out / task / "model" / "gplinker.json").is_file() and not args.retrain:
            print(f"using the {task} demo model already trained in {out / task} (--retrain to train again)")
            continue
        print(f"training the {task} demo model on {tr} ...")
        rc = main(["train", task, "--train", str(ROOT / tr), "--dev", str(ROOT / dv), "--encoder", args.encoder,
                   "--output", str(out / task), "--batch-size", "8", "--head-lr", "2e-3", "--overwrite", *extra, *dev])
        if rc:
            return rc
    rc = main(["pipeline", *[a for t, *_ in QUICKSTART for a in ("--model", str(out / t / "model"))],
               "--input", str(data / "pipeline_demo.jsonl"), "--output", str(out / "predictions.jsonl"),
               "--html", str(out / "report.html"), *dev])
    print(f"\nquickstart done in {time.time() - t0:.0f}s: demo models in {out}/{{ner,relation,event}}/model, "
          f"predictions in {out / 'predictions.jsonl'}, report in {out / 'report.html'}.\n"
          "These are demo models trained on a few sentences; their dev scores say only that they learnt the examples.\n"
          "Train a real English entity + relation model on the public CoNLL04 corpus (SpERT JSON; about 2-3 minutes on\n"
          "2 CPU cores; dev triples F1 ~0.56, entities ~0.79):\n"
          "  gplinker train relation --train CONLL04/train.json --dev CONLL04/dev.json --encoder minilm-l6 "
          "--output runs/conll04 --max-steps 400 --max-length 128 --lr 1e-4 --head-lr 1e-3\n"
          "(CONLL04: the SpERT release of CoNLL04, https://github.com/lavis-nlp/spert, scripts/fetch_datasets.sh; the\n"
          "README's 'Bring your own data' says more)\n"
          "Serve models over HTTP with a page to try them: gplinker serve --model runs/quickstart/ner/model")
    return rc


# ---- parser ----------------------------------------------------------------------------------------

class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def _formats_help() -> str:
    reg = _registry()
    return "; ".join(f"{n}: {', '.join(reg[n].formats)}" for n in reg.names())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gplinker", formatter_class=_Formatter,
                                description="GlobalPointer / GPLinker information extraction: NER, relation triples, events.")
    p.add_argument("--version", action="version", version=f"gplinker {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    formats = _formats_help()

    t = sub.add_parser("train", help="train a model and keep the best one on dev", formatter_class=_Formatter)
    t.add_argument("task", choices=sorted(_registry().names()), help="what to extract")
    t.add_argument("--train", required=True, help="training file")
    t.add_argument("--dev", help="dev file, evaluated after each epoch (best model kept)")
    t.add_argument("--format", default="auto", help=f"dataset format, auto detects ({formats})")
    t.add_argument("--encoder", default="minilm-l6",
                   help="Hugging Face name, local directory, or offline alias (minilm-l6: English; me5-small: multilingual)")
    t.add_argument("--init-from", metavar="MODEL", help="fine-tune this saved model (its encoder, settings and heads) on "
                   "the new data; labels are the model's plus any new ones in the data (new channels start fresh)")
    t.add_argument("--output", required=True, help="output folder: model/, metrics.json, train_summary.json, train.log")
    t.add_argument("--epochs", type=_positive_int, default=3, help="passes over the training data")
    t.add_argument("--max-steps", type=_positive_int, default=None, help="train exactly this many steps (overrides --epochs)")
    t.add_argument("--batch-size", type=_positive_int, default=16, help="windows per optimizer step")
    t.add_argument("--lr", type=_positive_float, default=2e-5, help="encoder learning rate")
    t.add_argument("--head-lr", type=_positive_float, default=1e-3, help="learning rate of the GlobalPointer heads")
    t.add_argument("--max-length", type=_positive_int, default=256, help="tokens per window, special tokens included")
    t.add_argument("--stride", type=_non_negative_int, default=None,
                   help="tokens shared by consecutive windows of a long text (default: max length / 4, at most 64)")
    t.add_argument("--head", choices=["efficient", "standard"], default="efficient",
                   help="Efficient GlobalPointer (shared projection, factorised loss) or the original GlobalPointer")
    t.add_argument("--head-size", type=_positive_int, default=64, help="dimension of the heads' queries and keys")
    t.add_argument("--no-label-sharing", dest="label_sharing", action="store_false",
                   help="give every label its own bias only (default: event argument labels also share one with "
                        "their event type's labels and one with their role's labels)")
    t.add_argument("--align", choices=["expand", "strict", "contract"], default="expand",
                   help="how gold spans off token boundaries are placed on tokens (they are counted in the log)")
    t.add_argument("--decode", choices=["auto", "flat", "nested"], default=None,
                   help="ner: flat (best non-overlapping spans) or nested; auto (default) is flat unless gold spans overlap")
    t.add_argument("--entity-mode", choices=["auto", "typed", "subject-object"], default=None,
                   help="relation: typed entity channels (default when the data has types) or subject/object channels")
    t.add_argument("--schema", help="event: schema file (DuEE schema JSONL or {type: [roles]}); default: from --train")
    t.add_argument("--drop-triggerless", action="store_true", help="event: drop predicted events without a trigger")
    t.add_argument("--freeze-embeddings", action="store_true", help="do not train the word-embedding matrix")
    t.add_argument("--trim-vocab", choices=["none", "train", "train+dev"], default="none",
                   help="keep only the vocabulary pieces these texts use (much cheaper CPU training for "
                        "multilingual encoders; the saved model keeps the trimmed vocabulary)")
    t.add_argument("--max-train-docs", type=_positive_int, default=None, help="use only the first N training documents")
    t.add_argument("--seed", type=int, default=42, help="random seed (initialisation, batch order)")
    t.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                   help="autocast for the encoder and heads (fp16 with a gradient scaler; the loss is computed in fp32/fp64)")
    t.add_argument("--grad-accum", type=_positive_int, default=1,
                   help="batches per optimizer step; the effective batch is batch size x this x processes (torchrun)")
    t.add_argument("--eval-every", type=_positive_int, default=None, help="evaluate every N steps (default: after each epoch)")
    t.add_argument("--patience", type=_positive_int, default=None,
                   help="stop when dev F1 has not improved for this many evaluations (default: never)")
    t.add_argument("--save-every", type=_positive_int, default=None,
                   help="write a resumable checkpoint to OUTPUT/checkpoint every N steps (atomically)")
    t.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoint (same command otherwise)")
    t.add_argument("--overwrite", action="store_true",
                   help="start again in an --output that holds a model or a checkpoint (default: refuse); the old "
                        "model stays until the new one is saved")
    t.add_argument("--no-tune-link-threshold", dest="tune_link_threshold", action="store_false",
                   help="relation, event: keep the link heads' threshold at 0 instead of choosing it on --dev after training")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="score a saved model on a labelled file", formatter_class=_Formatter)
    e.add_argument("--model", required=True, help="a model directory (DIR/model from train)")
    e.add_argument("--data", required=True, help="a labelled file")
    e.add_argument("--format", default="auto", help=f"dataset format, auto detects ({formats})")
    e.add_argument("--output", help="write the metrics as JSON here")
    e.add_argument("--batch-size", type=_positive_int, default=32, help="most windows per forward pass (length-sorted windows are cut where padding would cost more than another call)")
    e.set_defaults(func=cmd_evaluate)

    r = sub.add_parser("predict", help="extract from plain text (one per line) or JSONL with a text field",
                       formatter_class=_Formatter)
    r.add_argument("--model", required=True, help="a model directory (DIR/model from train)")
    r.add_argument("--input", required=True, nargs="+",
                   help="plain text (one text a line) or JSONL with a \"text\" field; with --engine ray also several "
                        "files, folders, and Parquet files with a text column")
    r.add_argument("--output", required=True,
                   help="JSONL, one record per input line, in input order (--engine ray: a folder, one JSONL per input file)")
    r.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: this process, streamed in chunks; ray: Ray Data actors, locally or on a cluster (ray extra)")
    r.add_argument("--actors", type=_positive_int, default=1, help="ray: model replicas (each loads the model once)")
    r.add_argument("--gpus-per-actor", type=float, default=0.0, help="ray: GPUs for each actor (0: CPU)")
    r.add_argument("--threads-per-actor", type=_positive_int, default=None, help="ray: torch threads (and CPUs) per actor")
    r.add_argument("--ray-address", default=None, help="ray: an existing cluster's address (default: start Ray locally)")
    r.add_argument("--batch-size", type=_positive_int, default=32, help="most windows per forward pass (length-sorted windows are cut where padding would cost more than another call)")
    r.add_argument("--chunk-size", type=_positive_int, default=1000, help="input lines read, predicted and written at a time")
    r.set_defaults(func=cmd_predict)

    pl = sub.add_parser("pipeline", help="run several models (NER, relation, event) over texts; one combined record each",
                        formatter_class=_Formatter)
    pl.add_argument("--model", action="append", required=True, help="a model directory; repeat for several")
    pl.add_argument("--input", required=True, help="plain text (one text a line) or JSONL with a \"text\" field")
    pl.add_argument("--output", required=True, help="JSONL, one combined record per input line")
    pl.add_argument("--html", help="also write a self-contained HTML report here")
    pl.add_argument("--batch-size", type=_positive_int, default=32, help="most windows per forward pass (length-sorted windows are cut where padding would cost more than another call)")
    pl.add_argument("--chunk-size", type=_positive_int, default=1000, help="input lines read and predicted at a time")
    pl.set_defaults(func=cmd_pipeline)

    s = sub.add_parser("serve", help="serve models over HTTP with an interactive page (needs the serve extra)",
                       formatter_class=_Formatter)
    s.add_argument("--model", action="append", required=True, help="a model directory; repeat for several")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1: this machine only)")
    s.add_argument("--port", type=_port, default=8000, help="port to listen on")
    s.add_argument("--max-batch", type=_positive_int, default=32, help="most texts gathered into one model call")
    s.add_argument("--max-wait-ms", type=_non_negative_float, default=10.0,
                   help="how long a request waits for others to batch with")
    s.add_argument("--max-chars", type=_positive_int, default=100_000, help="longest text accepted (413 beyond)")
    s.add_argument("--max-texts", type=_positive_int, default=256, help="most texts in one request (413 beyond)")
    s.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' (default: $GPLINKER_API_KEY, "
                   "none when unset)")
    s.add_argument("--access-log", action="store_true", help="log one line per request (costs CPU under load)")
    s.add_argument("--max-queue", type=_positive_int, default=1024,
                   help="most texts waiting for the model; beyond it requests get 503 with Retry-After")
    s.add_argument("--timeout", type=_positive_float, default=60.0,
                   help="seconds a request may take; then 504, and its texts not yet run are dropped")
    s.add_argument("--allowed-host", action="append", metavar="NAME",
                   help="a Host name the server answers (repeat; '*' for any). Default: the names of --host "
                        "(127.0.0.1: 127.0.0.1, localhost, ::1), any when bound to 0.0.0.0")
    s.add_argument("--batch-size", type=_positive_int, default=32,
                   help="most rows per forward pass (a row: one window, or several short ones packed); a gathered "
                        "batch runs as length-sorted forwards of at most this size, cut where padding would cost "
                        "more than another call")
    s.set_defaults(func=cmd_serve)

    for x in (e, r, pl, s):
        x.add_argument("--onnx", action="store_true",
                       help="run the encoder with ONNX Runtime on CPU (exported once to MODEL/encoder.onnx; needs the onnx extra)")
    for x in (r, pl):
        x.add_argument("--input-format", choices=["auto", "text", "jsonl"], default="auto",
                       help="auto: by extension (.jsonl/.json, .txt), else JSONL when the first line is a JSON object")
    for x in (r, pl, s):
        x.add_argument("--threshold", type=_probability, default=None,
                       help="keep only items whose score is at least this, in (0, 1] (decoded spans score > 0.5)")
    for x in (e, r, pl, s):
        x.add_argument("--decode", choices=["flat", "nested"], default=None, help="ner: override the model's saved decoding")
        x.add_argument("--drop-triggerless", action="store_true", help="event: drop predicted events without a trigger")

    c = sub.add_parser("calibrate", help="measure how well scores match accuracy on labelled data; fit a temperature",
                       formatter_class=_Formatter)
    c.add_argument("--model", required=True, help="a model directory")
    c.add_argument("--data", required=True, help="a labelled dev file (not the test set)")
    c.add_argument("--format", default="auto", help="dataset format, auto detects")
    c.add_argument("--floor", type=float, default=-3.0, help="cells down to this logit are measured (near-misses included)")
    c.add_argument("--plot", help="write a reliability diagram (PNG; needs matplotlib) here")
    c.add_argument("--output", help="write the measurements as JSON here")
    c.add_argument("--apply", action="store_true", help="save the fitted temperature with the model")
    c.add_argument("--batch-size", type=_positive_int, default=32, help="most windows per forward pass (length-sorted windows are cut where padding would cost more than another call)")
    c.set_defaults(func=cmd_calibrate)

    i = sub.add_parser("info", help="what a saved model is: task, labels, encoder, training data, dev scores",
                       formatter_class=_Formatter)
    i.add_argument("model", help="a model directory")
    i.add_argument("--json", action="store_true", help="print JSON")
    i.set_defaults(func=cmd_info)

    q = sub.add_parser("quickstart", help="train demo models on the shipped examples, then run the pipeline",
                       formatter_class=_Formatter)
    q.add_argument("--output", default="runs/quickstart", help="where the demo models and outputs go")
    q.add_argument("--encoder", default="minilm-l6", help="encoder of the demo models")
    q.add_argument("--retrain", action="store_true", help="train the demo models again")
    q.set_defaults(func=cmd_quickstart)

    for x in (t, e, r, pl, s, q, c):
        x.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    for x in (t, e, r, pl, s, i, q, c):
        x.add_argument("--verbose", action="store_true", help="debug logging")
        x.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return p


def _is_user_error(e: BaseException) -> bool:
    from gplinker.io import DataError

    return isinstance(e, (UsageError, DataError, ValueError, FileNotFoundError, IsADirectoryError, PermissionError))


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (2: a mistake in the command or its input)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse has printed its message (or --help / --version)
        return int(e.code or 0)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the one place errors become messages
        if args.debug:
            traceback.print_exc()
        if _is_user_error(e):
            print(f"error: {e}", file=sys.stderr)
            return EXIT_USAGE
        from gplinker.atomic import SaveError

        if isinstance(e, SaveError):
            print(f"error: {e}", file=sys.stderr)
            return 1
        if isinstance(e, OSError):
            print(f"error: {e.strerror or e} ({getattr(e, 'filename', '') or ''}) — check the disk and the paths", file=sys.stderr)
            return 1
        print(f"error: internal error ({type(e).__name__}: {e}); rerun with --debug for the traceback and please report it",
              file=sys.stderr)
        return 1
