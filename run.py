#!/usr/bin/env python
"""gplinker command line: train, evaluate and predict.

    python run.py train {ner,relation,event} --train FILE --dev FILE --encoder NAME_OR_PATH --output DIR
    python run.py evaluate --model DIR --data FILE [--output metrics.json]
    python run.py predict --model DIR --input FILE --output FILE.jsonl
    python run.py pipeline --model DIR [--model DIR ...] --input FILE --output FILE.jsonl [--html FILE]
    python run.py quickstart            # train on the shipped examples, then run the pipeline
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

TASKS = {"ner": "tasks.ner", "relation": "tasks.relation", "event": "tasks.event"}


def _task_module(name: str):
    return importlib.import_module(TASKS[name])


def _setup_logging(log_file: Path | None = None, verbose: bool = False) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("transformers", "httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def print_metrics(metrics: dict[str, Any]) -> None:
    """A readable table per level: overall, then one row per label."""
    import pandas as pd

    for level, m in metrics.items():
        if not isinstance(m, dict) or "f1" not in m:
            continue
        rows = [{"label": "ALL (micro)", **{k: m[k] for k in ("precision", "recall", "f1", "n_gold", "n_pred")}}]
        for lab, v in m.get("per_label", {}).items():
            rows.append({"label": lab, **{k: v[k] for k in ("precision", "recall", "f1", "n_gold", "n_pred")}})
        df = pd.DataFrame(rows).rename(columns={"n_gold": "gold", "n_pred": "predicted"})
        print(f"\n{level}")
        print(df.to_string(index=False, float_format=lambda x: f"{x:.4f}"))


def cmd_train(args: argparse.Namespace) -> int:
    out = Path(args.output)
    _setup_logging(out / "train.log", args.verbose)
    from gplinker.pipeline import Extractor, ModelSettings
    from gplinker.training import TrainConfig, train

    module = _task_module(args.task)
    train_docs = module.read(args.train, args.format)
    dev_docs = module.read(args.dev, args.format) if args.dev else None
    if args.max_train_docs:
        train_docs = train_docs[: args.max_train_docs]
    task_cls = next(v for k, v in vars(module).items() if k.endswith("Task") and getattr(v, "name", "") == args.task)
    task = task_cls.from_documents(train_docs, entity_mode=args.entity_mode, schema=args.schema,
                                   keep_triggerless=not args.drop_triggerless)
    encoder = args.encoder
    if args.trim_vocab != "none":
        encoder = _trim_encoder(args, train_docs, dev_docs, out)
    settings = ModelSettings(head_type=args.head, head_size=args.head_size, max_length=args.max_length,
                             stride=args.stride, align=args.align)
    extractor = Extractor.build(encoder, task, settings, args.device)
    if encoder != args.encoder:  # the trimmed copy is in memory now and will be saved with the model
        import shutil

        shutil.rmtree(encoder, ignore_errors=True)
    config = TrainConfig(epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr,
                         head_lr=args.head_lr, seed=args.seed, freeze_embeddings=args.freeze_embeddings)
    summary = train(extractor, train_docs, dev_docs, config, out)
    best = summary["best"]
    metrics = best["metrics"] or {}
    (out / "metrics.json").write_text(json.dumps(metrics, ensure_ascii=False, indent=2), encoding="utf-8")
    print(f"trained {summary['steps']} steps in {summary['seconds']:.0f}s; model saved to {out / 'model'}")
    if metrics:
        print(f"best dev scores (epoch {best['epoch']}, step {best['step']}):")
        print_metrics(metrics)
    return 0


def _trim_encoder(args: argparse.Namespace, train_docs, dev_docs, out: Path) -> str:
    """Trim the encoder's vocabulary to the pieces of the training (and dev) texts; log what the
    dev texts lose when they were not part of the trimming."""
    from transformers import AutoTokenizer

    from gplinker.encoders import resolve_encoder, tokenization_changes, trim_vocabulary

    texts = [d.text for d in train_docs]
    if args.trim_vocab == "train+dev" and dev_docs:
        texts += [d.text for d in dev_docs]
    path = trim_vocabulary(args.encoder, texts, out / "trimmed_encoder")
    if dev_docs and args.trim_vocab == "train":
        original = AutoTokenizer.from_pretrained(resolve_encoder(args.encoder), use_fast=True)
        trimmed = AutoTokenizer.from_pretrained(path, use_fast=True)
        c = tokenization_changes(original, trimmed, [d.text for d in dev_docs])
        logging.getLogger("run").info(
            "vocabulary trimmed to the training texts: %d of %d dev texts tokenize differently, "
            "%d new unknown tokens among %d", c["texts_changed"], c["texts"], c["new_unknown_tokens"], c["tokens"])
        (out / "trim_report.json").write_text(json.dumps(c, indent=2), encoding="utf-8")
    return str(path)


def _load_extractor(path: str, args: argparse.Namespace):
    """A saved model, its encoder run by ONNX Runtime when ``--onnx`` is given."""
    from gplinker.pipeline import Extractor

    extractor = Extractor.from_pretrained(path, "cpu" if args.onnx and args.device is None else args.device)
    if args.onnx:
        from gplinker.onnx_runtime import use_onnx

        use_onnx(extractor, path)
    return extractor


def cmd_evaluate(args: argparse.Namespace) -> int:
    _setup_logging(None, args.verbose)
    extractor = _load_extractor(args.model, args)
    module = importlib.import_module(type(extractor.task).__module__)
    gold = module.read(args.data, args.format)
    t0 = time.time()
    pred = extractor.predict(gold, args.batch_size, progress=True)
    metrics = extractor.task.evaluate(gold, pred)
    print_metrics(metrics)
    print(f"\n{len(gold)} documents in {time.time() - t0:.1f}s")
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(metrics, ensure_ascii=False, indent=2), encoding="utf-8")
    return 0


def read_predict_input(path: str) -> list[dict[str, Any]]:
    """One record per input line: ``{"text": ...}`` or ``{"error": ...}``; plain text or JSONL."""
    from gplinker.structures import Document

    raw_lines = Path(path).read_bytes().split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    first = next((ln.strip() for ln in raw_lines if ln.strip()), b"")
    is_jsonl = first.startswith(b"{")
    records: list[dict[str, Any]] = []
    for no, raw in enumerate(raw_lines, start=1):
        raw = raw.rstrip(b"\r")
        try:
            line = raw.decode("utf-8-sig" if no == 1 else "utf-8")
        except UnicodeDecodeError as e:
            records.append({"line": no, "error": f"{path}, line {no}: byte {raw[e.start]:#x} is not valid UTF-8; save the file as UTF-8"})
            continue
        if not is_jsonl:
            records.append({"line": no, "doc": Document(text=line)})
            continue
        if not line.strip():
            records.append({"line": no, "error": f"{path}, line {no}: empty line in a JSONL file"})
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise ValueError('no string field "text"')
            meta = {k: v for k, v in obj.items() if k not in ("text", "id", "entities", "relations", "events")}
            records.append({"line": no, "doc": Document(text=obj["text"], id=None if obj.get("id") is None else str(obj["id"]), meta=meta)})
        except (ValueError, TypeError) as e:
            records.append({"line": no, "error": f"{path}, line {no}: {e}; each line must be a JSON object with a \"text\" string"})
    return records


def cmd_predict(args: argparse.Namespace) -> int:
    _setup_logging(None, args.verbose)
    from gplinker.io import write_jsonl

    extractor = _load_extractor(args.model, args)
    records = read_predict_input(args.input)
    ok = [r for r in records if "doc" in r]
    t0 = time.time()
    preds = extractor.predict([r["doc"] for r in ok], args.batch_size, progress=True)
    for r, p in zip(ok, preds):
        r["pred"] = p
    out = []
    for r in records:
        out.append(r["pred"].to_json() if "pred" in r else {"line": r["line"], "error": r["error"]})
    write_jsonl(args.output, out)
    failed = [r for r in records if "error" in r]
    print(f"{len(out)} records written to {args.output} ({len(ok)} predicted in {time.time() - t0:.1f}s, {len(failed)} failed)")
    for r in failed[:20]:
        print(f"  {r['error']}", file=sys.stderr)
    return 0


def _model_name(path: str) -> str:
    p = Path(path).resolve()
    return p.parent.name if p.name == "model" else p.name


def cmd_pipeline(args: argparse.Namespace) -> int:
    _setup_logging(None, args.verbose)
    import pandas as pd

    from gplinker.io import write_jsonl
    from gplinker.merge import merge_record, predict_robust
    from gplinker.report import render

    models = [(_load_extractor(m, args), _model_name(m)) for m in args.model]
    records = read_predict_input(args.input)
    ok = [r for r in records if "doc" in r]
    docs = [r["doc"] for r in ok]
    t0 = time.time()
    per_model = [(ex.task.name, name, predict_robust(ex, docs, args.batch_size, progress=True)) for ex, name in models]
    seconds = time.time() - t0
    out = []
    k = 0
    for r in records:
        if "doc" not in r:
            out.append({"line": r["line"], "error": r["error"]})
            continue
        rec = merge_record(r["doc"], [(task, name, preds[k]) for task, name, preds in per_model], args.threshold)
        out.append({"line": r["line"], **rec})
        k += 1
    write_jsonl(args.output, out)
    if args.html:
        Path(args.html).parent.mkdir(parents=True, exist_ok=True)
        Path(args.html).write_text(render(out, f"gplinker: {Path(args.input).name}"), encoding="utf-8")
    rows = [(x.get("task"), kind, x["label"]) for rec in out for kind in ("entities", "relations", "events") for x in rec.get(kind, [])]
    failed = [rec for rec in out if "error" in rec]
    print(f"{len(out)} records -> {args.output}" + (f" and {args.html}" if args.html else ""))
    if rows:
        table = pd.DataFrame(rows, columns=["task", "kind", "label"]).value_counts().rename("count").reset_index()
        print(table.sort_values(["kind", "count"], ascending=[True, False]).to_string(index=False))
    print(f"{len(docs)} texts through {len(models)} model(s) in {seconds:.1f}s ({len(docs) / max(seconds, 1e-9):.1f} texts/s); "
          f"{len(failed)} records with errors")
    for rec in failed[:20]:
        print(f"  line {rec['line']}: {rec['error']}", file=sys.stderr)
    return 0


QUICKSTART = [  # task, train, dev, extra training arguments
    ("ner", "data/ner/en_train.jsonl", "data/ner/en_dev.jsonl", ["--epochs", "10", "--lr", "5e-5"]),
    ("relation", "data/relation/en_train.jsonl", "data/relation/en_dev.jsonl", ["--epochs", "30", "--lr", "1e-4"]),
    ("event", "data/event/en_train.jsonl", "data/event/en_dev.jsonl", ["--epochs", "30", "--lr", "1e-4"]),
]


def cmd_quickstart(args: argparse.Namespace) -> int:
    """Train small NER, relation and event models on the shipped examples (first run only), then
    run the pipeline on data/pipeline_demo.jsonl and write JSONL and HTML."""
    root = Path(__file__).resolve().parent
    out = Path(args.output)
    for task, tr, dv, extra in QUICKSTART:
        if (out / task / "model" / "gplinker.json").is_file() and not args.retrain:
            print(f"using the {task} model already trained in {out / task} (--retrain to train again)")
            continue
        print(f"training the {task} model on {tr} ...")
        rc = main(["train", task, "--train", str(root / tr), "--dev", str(root / dv), "--encoder", args.encoder,
                   "--output", str(out / task), "--batch-size", "8", "--head-lr", "2e-3", *extra,
                   *(["--device", args.device] if args.device else [])])
        if rc:
            return rc
    return main(["pipeline", *[a for t, *_ in QUICKSTART for a in ("--model", str(out / t / "model"))],
                 "--input", str(root / "data" / "pipeline_demo.jsonl"), "--output", str(out / "predictions.jsonl"),
                 "--html", str(out / "report.html"), *(["--device", args.device] if args.device else [])])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run.py", description="gplinker: GlobalPointer / GPLinker information extraction")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model and keep the best one on dev")
    t.add_argument("task", choices=sorted(TASKS))
    t.add_argument("--train", required=True, help="training file")
    t.add_argument("--dev", help="dev file, evaluated after each epoch (best checkpoint kept)")
    t.add_argument("--format", default="auto", help="dataset format (default: detect)")
    t.add_argument("--encoder", required=True, help="Hugging Face name, local directory, or alias (minilm-l6)")
    t.add_argument("--output", required=True, help="output directory: model/, metrics.json, train.log")
    t.add_argument("--epochs", type=int, default=3)
    t.add_argument("--max-steps", type=int, default=None, help="train this many steps (overrides --epochs)")
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--lr", type=float, default=2e-5, help="encoder learning rate")
    t.add_argument("--head-lr", type=float, default=1e-3, help="learning rate of the GlobalPointer heads")
    t.add_argument("--max-length", type=int, default=256, help="tokens per window, special tokens included")
    t.add_argument("--stride", type=int, default=64, help="tokens shared by consecutive windows of a long text")
    t.add_argument("--head", choices=["efficient", "standard"], default="efficient")
    t.add_argument("--head-size", type=int, default=64)
    t.add_argument("--align", choices=["expand", "strict", "contract"], default="expand",
                   help="how gold spans off token boundaries are placed on tokens (they are counted in the log)")
    t.add_argument("--entity-mode", choices=["auto", "typed", "subject-object"], default="auto",
                   help="relation: typed entity channels (when the data has types) or subject/object channels")
    t.add_argument("--schema", help="event: schema file (DuEE schema JSONL or {type: [roles]}); default: from --train")
    t.add_argument("--drop-triggerless", action="store_true", help="event: drop predicted events without a trigger")
    t.add_argument("--freeze-embeddings", action="store_true", help="do not train the word-embedding matrix")
    t.add_argument("--trim-vocab", choices=["none", "train", "train+dev"], default="none",
                   help="keep only the vocabulary pieces these texts use (much cheaper CPU training for "
                        "multilingual encoders; the saved model keeps the trimmed vocabulary)")
    t.add_argument("--max-train-docs", type=int, default=None, help="use only the first N training documents")
    t.add_argument("--seed", type=int, default=42)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="score a saved model on a labelled file")
    e.add_argument("--model", required=True, help="a model directory (DIR/model from train)")
    e.add_argument("--data", required=True)
    e.add_argument("--format", default="auto")
    e.add_argument("--output", help="write the metrics as JSON here")
    e.add_argument("--batch-size", type=int, default=32)
    e.set_defaults(func=cmd_evaluate)

    r = sub.add_parser("predict", help="extract from plain text (one per line) or JSONL with a text field")
    r.add_argument("--model", required=True)
    r.add_argument("--input", required=True)
    r.add_argument("--output", required=True, help="JSONL, one record per input record")
    r.add_argument("--batch-size", type=int, default=32)
    r.set_defaults(func=cmd_predict)

    pl = sub.add_parser("pipeline", help="run several models (NER, relation, event) over texts; one merged record each")
    pl.add_argument("--model", action="append", required=True, help="a model directory; repeat for several")
    pl.add_argument("--input", required=True, help="plain text (one per line) or JSONL with a text field")
    pl.add_argument("--output", required=True, help="JSONL, one merged record per input record")
    pl.add_argument("--html", help="also write a self-contained HTML report here")
    pl.add_argument("--threshold", type=float, default=0.0,
                    help="leave out items whose probability is below this (predictions already have p > 0.5)")
    pl.add_argument("--batch-size", type=int, default=32)
    pl.set_defaults(func=cmd_pipeline)

    q = sub.add_parser("quickstart", help="train small models on the shipped examples, then run the pipeline")
    q.add_argument("--output", default="runs/quickstart")
    q.add_argument("--encoder", default="minilm-l6")
    q.add_argument("--retrain", action="store_true")
    q.set_defaults(func=cmd_quickstart)

    for s in (e, r, pl):
        s.add_argument("--onnx", action="store_true",
                       help="run the encoder with ONNX Runtime on CPU (exported once to MODEL/encoder.onnx; "
                            "needs the onnx extra)")
    for s in (t, e, r, pl, q):
        s.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
        s.add_argument("--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as e:  # bad input: DataError and friends carry file, line and fix
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
