"""``gplinker predict``: one model over plain text or JSONL, one record per input line; or over
many files and folders with Ray Data (``--engine ray``)."""

from __future__ import annotations

import argparse
import sys
import time

from gplinker.cli.common import (
    UsageError,
    add_common,
    add_model_options,
    apply_prediction_options,
    check_io,
    chunks,
    existing_file,
    load_extractor,
    messages,
    model_name,
    model_path,
    output_folder,
    registry,
    setup_logging,
)
from gplinker.cli.options import positive_int


def add_parser(sub, formatter, formats: str) -> argparse.ArgumentParser:
    r = sub.add_parser(
        "predict", help="extract from plain text (one per line) or JSONL with a text field", formatter_class=formatter
    )
    r.add_argument("--model", required=True, help="a model directory (DIR/model from train)")
    r.add_argument(
        "--input",
        required=True,
        nargs="+",
        help='plain text (one text a line) or JSONL with a "text" field; with --engine ray also several '
        "files, folders, and Parquet files with a text column",
    )
    r.add_argument(
        "--output",
        required=True,
        help="JSONL, one record per input line, in input order (-: standard output; --engine ray: a folder, "
        "one JSONL per input file)",
    )
    r.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local: this process, streamed in chunks; ray: Ray Data actors, locally or on a cluster (ray extra)",
    )
    r.add_argument("--actors", type=positive_int, default=1, help="ray: model replicas (each loads the model once)")
    r.add_argument("--gpus-per-actor", type=float, default=0.0, help="ray: GPUs for each actor (0: CPU)")
    r.add_argument("--threads-per-actor", type=positive_int, default=None, help="ray: torch threads (and CPUs) per actor")
    r.add_argument("--ray-address", default=None, help="ray: an existing cluster's address (default: start Ray locally)")
    r.add_argument(
        "--output-format",
        choices=["jsonl", "label-studio"],
        default="jsonl",
        help="jsonl: gplinker's records; label-studio: a task list with the predictions as pre-annotations "
        "(lines that fail are reported, not written)",
    )
    r.add_argument(
        "--label-config",
        help="label-studio: the project's labelling config (XML) to write predictions for (default: the one "
        "`gplinker info MODEL --label-studio-config` prints)",
    )
    r.add_argument("--chunk-size", type=positive_int, default=1000, help="input lines read, predicted and written at a time")
    add_model_options(r, input_format=True)
    add_common(r)
    r.set_defaults(func=run)
    return r


def run(args: argparse.Namespace) -> int:
    """One canonical record per input line, streamed in chunks; failures are recorded per line."""
    if args.engine == "ray":
        if args.output_format != "jsonl":
            raise UsageError("--engine ray writes gplinker JSONL; convert its output, or predict with --engine local")
        return run_ray(args)
    if len(args.input) != 1:
        raise UsageError(f"--input names {len(args.input)} paths; the local engine reads one file (--engine ray reads many)")
    args.input = args.input[0]
    src = check_io(args)
    given_config = read_label_config(args)
    setup_logging(None, args.verbose)
    from gplinker.combine import predict_records
    from gplinker.io import input_format, iter_inputs, write_jsonl

    extractor = load_extractor(args.model, args)
    apply_prediction_options([extractor], args)
    fmt = input_format(src, args.input_format)
    counts = {"records": 0, "predicted": 0, "failed": 0}
    failures: list[str] = []
    t0 = time.time()

    def records():
        for chunk in chunks(iter_inputs(src, fmt), args.chunk_size):
            for rec in predict_records(extractor, chunk, str(src), args.threshold or 0.0, args.batch_size):
                counts["records"] += 1
                counts["failed" if "error" in rec else "predicted"] += 1
                if "error" in rec:
                    failures.append(rec["error"])
                yield rec

    if args.output_format == "label-studio":
        write_tasks(args, extractor, records(), given_config)
        what = f"{counts['predicted']} Label Studio tasks with predictions"
    else:
        write_jsonl(args.output, records())
        what = f"{counts['records']} records"
    print(
        f"{what} written to {args.output} ({counts['predicted']} predicted in {time.time() - t0:.1f}s, "
        f"{counts['failed']} failed)",
        file=messages(args.output),
    )
    report_failures(failures, args.output)
    return 1 if counts["records"] and not counts["predicted"] else 0


def read_label_config(args: argparse.Namespace):
    """The project config of --label-config (None: none given), checked before any work."""
    if not args.label_config:
        return None
    if args.output_format != "label-studio":
        raise UsageError("--label-config is used with --output-format label-studio only")
    from gplinker.io import read_text
    from gplinker.label_studio import LabelConfig

    try:
        return LabelConfig.parse(read_text(existing_file(args.label_config, "--label-config")))
    except ValueError as e:
        raise UsageError(f"--label-config {args.label_config}: {e}") from None


def write_tasks(args: argparse.Namespace, extractor, records, config=None) -> None:
    """Predicted records as Label Studio tasks with predictions for ``config`` (default: the
    model's own); failed records stay out (reported on stderr with their lines)."""
    from gplinker import __version__
    from gplinker.io import write_json_array
    from gplinker.label_studio import LabelConfig, WriteReport, task_of
    from gplinker.structures import Document

    config = config or LabelConfig.for_schema(extractor.task.schema())
    report = WriteReport()
    version = f"{model_name(args.model)} (gplinker {__version__})"

    def tasks():
        for rec in records:
            if "error" not in rec:
                doc = Document.from_json({k: v for k, v in rec.items() if k != "line"})
                yield task_of(doc, config, report, as_predictions=version)

    write_json_array(args.output, tasks())
    for line in report.lines():
        print(f"  {line}", file=messages(args.output))


def report_failures(failures: list[str], output: str) -> None:
    for msg in failures[:20]:
        print(f"  {msg}", file=sys.stderr)
    if len(failures) > 20:
        print(f"  ... and {len(failures) - 20} more (each has an error record in {output})", file=sys.stderr)


def run_ray(args: argparse.Namespace) -> int:
    """predict --engine ray: Ray Data actors, one output JSONL per input file in the --output folder."""
    from gplinker import ray_engine

    try:
        files = ray_engine.input_files(args.input)
    except ValueError as e:
        raise UsageError(f"--input {e}") from None
    out = output_folder(args.output, "--output", "the Ray engine writes a folder (one JSONL per input file)")
    if any(out.resolve() == f.resolve().parent for f in files):
        raise UsageError(f"--output {args.output} is a folder of input files; outputs could overwrite inputs — choose another")
    model = model_path(args.model)
    setup_logging(None, args.verbose)
    t0 = time.time()
    counts = ray_engine.run(
        str(model),
        [str(f) for f in files],
        out,
        actors=args.actors,
        gpus_per_actor=args.gpus_per_actor,
        address=args.ray_address,
        input_format_name=args.input_format,
        threshold=args.threshold or 0.0,
        threads=args.threads_per_actor,
        forward_batch_size=args.batch_size,
        registry=registry(),
    )
    print(
        f"{counts['records']} records from {len(files)} file(s) written to {out}/ ({counts['predicted']} predicted, "
        f"{counts['failed']} failed) in {time.time() - t0:.1f}s on Ray with {args.actors} actor(s)"
    )
    return 1 if counts["records"] and not counts["predicted"] else 0
