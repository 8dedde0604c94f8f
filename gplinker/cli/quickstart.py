"""``gplinker quickstart``: demo models trained on the shipped examples, then the pipeline."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from gplinker.cli.common import UsageError, add_common, check_device

ROOT = Path(__file__).resolve().parents[2]  # the checkout, when run from one (quickstart data)


def add_parser(sub, formatter, formats: str) -> argparse.ArgumentParser:
    q = sub.add_parser(
        "quickstart", help="train demo models on the shipped examples, then run the pipeline", formatter_class=formatter
    )
    q.add_argument("--output", default="runs/quickstart", help="where the demo models and outputs go")
    q.add_argument("--encoder", default="minilm-l6", help="encoder of the demo models")
    q.add_argument("--retrain", action="store_true", help="train the demo models again")
    add_common(q)
    q.set_defaults(func=run)
    return q


def cli_main(argv: list[str]) -> int:
    from gplinker.cli import main

    return main(argv)


QUICKSTART = [  # task, train, dev, extra training arguments
    ("ner", "data/ner/en_train.jsonl", "data/ner/en_dev.jsonl", ["--epochs", "10", "--lr", "5e-5"]),
    ("relation", "data/relation/en_train.jsonl", "data/relation/en_dev.jsonl", ["--epochs", "30", "--lr", "1e-4"]),
    ("event", "data/event/en_train.jsonl", "data/event/en_dev.jsonl", ["--epochs", "30", "--lr", "1e-4"]),
]


DONE = """
quickstart done in {seconds:.0f}s: demo models in {out}/{{ner,relation,event}}/model, predictions in {out}/predictions.jsonl, report in {out}/report.html.
These are demo models trained on a few sentences; their dev scores say only that they learnt the examples.
Train a real English entity + relation model on the public CoNLL04 corpus (SpERT JSON; about 5 minutes on
2 CPU cores; dev triples F1 ~0.60 over three seeds):
  gplinker train relation --train CONLL04/train.json --dev CONLL04/dev.json --encoder minilm-l6 --output runs/conll04 --max-steps 400 --max-length 128 --lr 3e-4 --head-lr 1e-3 --link-rope
(CONLL04: the SpERT release of CoNLL04, https://github.com/lavis-nlp/spert, scripts/fetch_datasets.sh; "Bring your
own data" in docs/guide.md says more)
Serve models over HTTP with a page to try them: gplinker serve --model {out}/ner/model"""


def run(args: argparse.Namespace) -> int:
    """Train small demo models on the shipped examples (first run only), then run the pipeline on
    data/pipeline_demo.jsonl and write JSONL and HTML."""
    data = ROOT / "data"
    if not (data / "pipeline_demo.jsonl").is_file():
        raise UsageError(
            f"quickstart needs the example data of a gplinker checkout ({data} not found) — run it from a clone of the repository"
        )
    check_device(args.device)
    t0 = time.time()
    out = Path(args.output)
    print(
        "gplinker quickstart: trains DEMO models on ~30 hand-written example sentences per task, then runs them.\n"
        "They show the pipeline working end to end; they know little beyond the example names. A real model is one\n"
        "command away (printed at the end)."
    )
    dev = ["--device", args.device] if args.device else []
    for task, tr, dv, extra in QUICKSTART:
        if (out / task / "model" / "gplinker.json").is_file() and not args.retrain:
            print(f"using the {task} demo model already trained in {out / task} (--retrain to train again)")
            continue
        print(f"training the {task} demo model on {tr} ...")
        rc = cli_main(
            ["train", task, "--train", str(ROOT / tr), "--dev", str(ROOT / dv), "--encoder", args.encoder]
            + ["--output", str(out / task), "--batch-size", "8", "--head-lr", "2e-3", "--overwrite", *extra, *dev]
        )
        if rc:
            return rc
    models = [a for t, *_ in QUICKSTART for a in ("--model", str(out / t / "model"))]
    rc = cli_main(
        ["pipeline", *models, "--input", str(data / "pipeline_demo.jsonl"), "--output", str(out / "predictions.jsonl")]
        + ["--html", str(out / "report.html"), *dev]
    )
    print(DONE.format(seconds=time.time() - t0, out=out))
    return rc
