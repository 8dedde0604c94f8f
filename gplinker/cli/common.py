"""What every command shares: user errors, checks of paths before any work, loading models,
prediction-time task options, and printing tables."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from gplinker.cli.options import given_task_options

EXIT_USAGE = 2
STDOUT = "-"  # an output path meaning standard output; the command's own messages then go to stderr


class UsageError(ValueError):
    """A mistake in the command line or its files; printed as one line, exit status 2."""


def registry():
    """The built-in tasks: the front ends are where the default registry is chosen."""
    from gplinker.tasks import default_registry

    return default_registry()


def setup_logging(log_file: Path | None = None, verbose: bool = False) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        handlers=handlers,
        force=True,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("transformers", "httpx", "urllib3", "filelock", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def table(rows: list[list[Any]], header: list[str], file=None) -> None:
    """Print ``rows`` as a right-aligned text table (floats with 4 decimals), the first column left."""
    cells = [[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[k]) for r in cells)) for k, h in enumerate(header)]

    def line(values) -> str:
        return " ".join(str(v).ljust(w) if k == 0 else str(v).rjust(w) for k, (v, w) in enumerate(zip(values, widths)))

    print(line(header), file=file)
    for r in cells:
        print(line(r), file=file)


def print_metrics(metrics: dict[str, Any], file=None) -> None:
    """A readable table per level: overall, then one row per label (to ``file``, default stdout)."""
    keys = ("precision", "recall", "f1", "n_gold", "n_pred")
    for level, m in metrics.items():
        if not isinstance(m, dict) or "f1" not in m:
            continue
        rows = [["ALL (micro)", *(m[k] for k in keys)]]
        rows += [[lab, *(v[k] for k in keys)] for lab, v in m.get("per_label", {}).items()]
        print(f"\n{level}", file=file)
        table(rows, ["label", "precision", "recall", "f1", "gold", "predicted"], file)


def existing_file(path: str, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{what} {path}: no such file — check the path")
    if p.is_dir():
        raise UsageError(f"{what} {path}: is a directory — pass one file")
    return p


def writable_file(path: str, what: str, inputs: tuple[Path, ...] = (), taken: dict[str, str] | None = None) -> Path:
    """An output file path checked before any work: not a directory, not one of the inputs, not
    inside a model directory, not another output of the same command (``taken``: resolved path ->
    option, filled in here), in a folder that exists or can be made and that we may write to.
    ``-`` is standard output; a device or FIFO (``/dev/null``) is written directly."""
    p = Path(path)
    if taken is not None:
        key = STDOUT if path == STDOUT else os.path.realpath(p)
        if key in taken:
            raise UsageError(f"{what} {path} is also {taken[key]}; one would overwrite the other — give each output its own path")
        taken[key] = what
    if path == STDOUT:
        return p
    if p.is_dir():
        raise UsageError(f"{what} {path}: is a directory — pass a file name, e.g. {Path(path) / 'out.jsonl'}")
    for src in inputs:
        if p.exists() and src.exists() and os.path.samefile(p, src):
            raise UsageError(
                f"{what} {path} is the input file {src}; writing it would destroy the input — choose another output path"
            )
    outside_models(Path(os.path.realpath(p)).parent, what, path)
    if p.exists() and not p.is_file():
        return p  # a device or a FIFO: written directly, never replaced
    writable_dir(p.parent if str(p.parent) else Path("."), what, path)
    return p


def output_folder(path: str, what: str, writes: str) -> Path:
    """An output folder checked before any work (not standard output, not a file, not in a model)."""
    out = Path(path)
    if path == STDOUT or (out.exists() and not out.is_dir()):
        raise UsageError(f"{what} {path}: is not a folder — {writes}")
    outside_models(Path(os.path.realpath(out)), what, path)
    writable_dir(out, what, path)
    return out


def outside_models(folder: Path, what: str, path: str) -> None:
    """Refuse an output in a model directory: gplinker.json, the weights or the tokenizer would be
    overwritten (``evaluate --output MODEL/gplinker.json`` once lost a model)."""
    from gplinker import model_dir

    for d in (folder, *folder.parents):
        if (d / model_dir.CONFIG_NAME).is_file():
            raise UsageError(
                f"{what} {path} is inside the model directory {d}; writing there could destroy the model — "
                "choose a path outside it"
            )


def writable_dir(folder: Path, what: str, path: str) -> None:
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"{what} {path}: {probe} is a file, not a folder — choose another output path")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {path}: cannot write in {probe} (permission denied) — choose a writable folder")


def check_io(args: argparse.Namespace) -> Path:
    """The input, the outputs (distinct, not the input, not in a model), the models and the device."""
    src = existing_file(args.input, "--input")
    taken: dict[str, str] = {}
    writable_file(args.output, "--output", (src,), taken)
    if getattr(args, "html", None):
        writable_file(args.html, "--html", (src,), taken)
    for m in args.model if isinstance(args.model, list) else [args.model]:
        model_path(m)
    check_device(args.device)
    return src


def messages(*outputs: str | None):
    """Where a command's own messages go: stderr when one of its outputs is standard output."""
    return sys.stderr if STDOUT in outputs else sys.stdout


def model_path(path: str) -> Path:
    """A model folder, or a hub repository id (``org/name[@revision]``) as its cached folder."""
    from gplinker import hub, model_dir

    try:
        return model_dir.resolve(path)
    except (model_dir.ModelDirError, hub.HubError) as e:
        raise UsageError(str(e)) from e


def check_device(device: str | None) -> None:
    from gplinker.extractor import resolve_device

    resolve_device(device)  # a ValueError naming the fix


def model_name(path: str) -> str:
    """A model's short name: its folder (the run's folder for DIR/model), or a hub id's NAME."""
    from gplinker import hub

    if hub.is_repo_id(path):
        return hub.split_revision(path)[0].split("/", 1)[1]
    p = Path(path).resolve()
    return p.parent.name if p.name == "model" else p.name


def load_extractor(path: str, args: argparse.Namespace):
    """A saved model (validated), its encoder run by ONNX Runtime when ``--onnx`` is given."""
    from gplinker.extractor import Extractor

    folder = model_path(path)  # a hub id: its folder in the Hugging Face cache
    extractor = Extractor.from_pretrained(
        folder, "cpu" if args.onnx and args.device is None else args.device, registry=registry()
    )
    extractor.set_precision(getattr(args, "precision", "fp32"))
    if args.onnx:
        from gplinker.onnx_runtime import use_onnx

        use_onnx(extractor, folder)
    return extractor


def apply_prediction_options(extractors, args: argparse.Namespace) -> None:
    """Prediction-time overrides of the saved task options (``--decode``, ``--drop-triggerless``)
    for the models among ``extractors`` whose task declares them; an option none fits is a mistake."""
    import dataclasses

    reg = registry()
    for name, (flag, value) in given_task_options(args, reg).items():
        fits = [ex.task for ex in extractors if any(f.name == name for f in dataclasses.fields(ex.task.options_class))]
        if not fits:
            owners = [n for n in reg.names() if any(f.name == name for f in dataclasses.fields(reg[n].task_class.options_class))]
            raise UsageError(f"{flag} is for {' or '.join(owners)} models; none of the models given is one")
        for task in fits:
            task.override(name, value)


def chunks(items, size: int):
    chunk = []
    for x in items:
        chunk.append(x)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


BATCH_HELP = "most windows per forward pass (length-sorted windows are cut where padding would cost more than another call)"


def add_model_options(p: argparse.ArgumentParser, threshold: bool = True, input_format: bool = False, batch: bool = True) -> None:
    """The options of every command that runs saved models: the encoder on ONNX Runtime, the
    prediction-time task options, a probability threshold, the input format, the forward batch."""
    from gplinker.cli.options import add_task_options, positive_int, probability

    if batch:
        p.add_argument("--batch-size", type=positive_int, default=32, help=BATCH_HELP)
    p.add_argument(
        "--precision",
        choices=["fp32", "bf16", "fp16"],
        default="fp32",
        help="autocast of the forward passes (bf16/fp16: faster on GPUs that have them; scores move by about 1e-2)",
    )
    p.add_argument(
        "--onnx",
        action="store_true",
        help="run the encoder with ONNX Runtime on CPU (exported once to MODEL/encoder.onnx; needs the onnx extra)",
    )
    if input_format:
        p.add_argument(
            "--input-format",
            choices=["auto", "text", "jsonl"],
            default="auto",
            help="auto: by extension (.jsonl/.json, .txt), else JSONL when the first line is a JSON object",
        )
    if threshold:
        p.add_argument(
            "--threshold",
            type=probability,
            default=None,
            help="keep only items whose score is at least this, in (0, 1] (decoded spans score > 0.5)",
        )
    add_task_options(p, registry(), at_prediction=True)


def add_common(p: argparse.ArgumentParser, device: bool = True) -> None:
    """--device, --verbose and --debug."""
    if device:
        p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
