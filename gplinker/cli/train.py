"""``gplinker train``: a model on labelled data, the best on dev kept in OUTPUT/model."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

from gplinker.cli import options
from gplinker.cli.common import (
    UsageError,
    add_common,
    check_device,
    existing_file,
    model_path,
    output_folder,
    print_metrics,
    registry,
    setup_logging,
    table,
)
from gplinker.extractor import ModelSettings
from gplinker.training import TrainConfig

HELP = "train a model and keep the best one on dev"


def add_parser(sub, formatter, formats: str) -> argparse.ArgumentParser:
    t = sub.add_parser("train", help=HELP, formatter_class=formatter)
    add_data_arguments(t, formats, dev_required=False)
    t.add_argument(
        "--init-from",
        metavar="MODEL",
        help="fine-tune this saved model (its encoder, settings and heads) on "
        "the new data; labels are the model's plus any new ones in the data (new channels start fresh)",
    )
    t.add_argument("--output", required=True, help="output folder: model/, metrics.json, train_summary.json, train.log")
    t.add_argument(
        "--overwrite",
        action="store_true",
        help="start again in an --output that holds a model or a checkpoint (default: refuse); the old "
        "model stays until the new one is saved",
    )
    t.add_argument(
        "--seeds",
        type=options.positive_int,
        default=1,
        help="train N times with seeds SEED, SEED+1, ... (OUTPUT/seeds/seed-K/); report the mean and standard "
        "deviation of every dev level (OUTPUT/seeds.json); OUTPUT/model is the seed best on dev",
    )
    add_training_arguments(t)
    t.set_defaults(func=run)
    return t


def add_data_arguments(t: argparse.ArgumentParser, formats: str, dev_required: bool) -> None:
    """The task, the data and the encoder: what ``train`` and ``tune`` share."""
    t.add_argument("task", choices=registry().names(), help="what to extract")
    t.add_argument("--train", required=True, help="training file")
    t.add_argument("--dev", required=dev_required, help="dev file, evaluated after each epoch (best model kept)")
    t.add_argument("--format", default="auto", help=f"dataset format, auto detects ({formats})")
    t.add_argument(
        "--encoder",
        default="minilm-l6",
        help="Hugging Face name, local directory, or offline alias (minilm-l6: English; me5-small: multilingual)",
    )


def add_training_arguments(t: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """The training settings, the model settings, the tasks' options, vocabulary trimming and the
    common flags (``skip``: TrainConfig fields a command sets itself)."""
    options.add_options(t, TrainConfig, skip=skip)
    options.add_options(t, ModelSettings)
    options.add_task_options(t, registry())
    t.add_argument(
        "--trim-vocab",
        choices=["none", "train", "train+dev"],
        default="none",
        help="keep only the vocabulary pieces these texts use (much cheaper CPU training for "
        "multilingual encoders; the saved model keeps the trimmed vocabulary)",
    )
    t.add_argument("--max-train-docs", type=options.positive_int, default=None, help="use only the first N training documents")
    add_common(t)


def task_options(args: argparse.Namespace, entry) -> Any:
    """The task's typed options from the flags given; a flag of another task is an error."""
    given = options.given_task_options(args, registry())
    own = {f.name for f in dataclasses.fields(entry.task_class.options_class)}
    wrong = sorted(flag for name, (flag, _) in given.items() if name not in own)
    if wrong:
        flags = [flag for flag, users in options.task_option_fields(registry()).items() if any(u[0] == entry.name for u in users)]
        raise UsageError(
            f"{', '.join(wrong)} does not apply to {entry.name} training (its options: {', '.join(flags) or 'none'})"
        )
    for name, (flag, value) in given.items():
        spec = next(s for f, s in options.cli_fields(entry.task_class.options_class) if f.name == name)
        if spec.file:
            existing_file(value, flag)
    return entry.options(**{name: value for name, (_, value) in given.items()})


def check(args: argparse.Namespace) -> None:
    """Everything about a training command that can be checked before loading data or models."""
    existing_file(args.train, "--train")
    if args.dev:
        existing_file(args.dev, "--dev")
    out = output_folder(args.output, "--output", "training writes a folder (model/, metrics.json, train.log)")
    if args.seeds > 1 and (out / "seeds").exists() and not (args.overwrite or args.resume):
        raise UsageError(
            f"--output {args.output} holds the runs of an earlier --seeds command ({out / 'seeds'}); pass --resume "
            "to keep its finished seeds and go on with the rest, or --overwrite to train them all again"
        )
    check_previous_run(args, out)
    if args.stride is None:
        from gplinker.offsets import default_stride

        args.stride = default_stride(args.max_length)
    if args.max_length < 8:
        raise UsageError(f"--max-length {args.max_length} is too short: windows need room for special tokens and text (use >= 8)")
    if not 0 <= args.stride <= args.max_length - 4:
        raise UsageError(
            f"--stride {args.stride} must be smaller than --max-length {args.max_length} minus the special "
            f"tokens; it is how many tokens consecutive windows share (default: max length / 4, at most 64)"
        )
    if args.head_size % 2:
        raise UsageError(f"--head-size {args.head_size} must be even (RoPE rotates pairs of dimensions)")
    if args.init_from:
        model_path(args.init_from)
        if args.trim_vocab != "none":
            raise UsageError("--trim-vocab cannot change the vocabulary of a model given to --init-from; drop one of them")
    if args.report_to == "tensorboard":
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:
            raise UsageError("--report-to tensorboard needs the tensorboard package — pip install 'gplinker[tensorboard]'")
    check_device(args.device)


def check_previous_run(args: argparse.Namespace, out: Path) -> None:
    """A finished model or an unfinished run in ``--output`` is never replaced silently: it needs
    ``--resume`` (go on with the checkpoint) or ``--overwrite`` (start again)."""
    from gplinker import model_dir

    if args.resume and args.overwrite:
        raise UsageError("--resume continues the run in --output and --overwrite starts it again; choose one")
    if args.resume and args.seeds > 1:
        if not (out / "seeds").is_dir():
            raise UsageError(f"--resume: {out / 'seeds'} holds no runs of an earlier --seeds command to go on with")
        return
    if args.resume:
        if not (out / "checkpoint" / "state.json").is_file():
            raise UsageError(f"--resume: {out / 'checkpoint'} holds no checkpoint — train with --save-every N first")
        return
    if args.overwrite:
        return
    if (out / "model").exists() or model_dir.recover_directory(out / "model") is not None:
        raise UsageError(
            f"--output {args.output} already holds a trained model ({out / 'model'}); choose another "
            "--output, or pass --overwrite to replace it (it is kept until the new one is saved)"
        )
    if (out / "checkpoint").exists():
        raise UsageError(
            f"--output {args.output} holds the checkpoint of an unfinished run; pass --resume to go on with "
            "it or --overwrite to start again"
        )


def run(args: argparse.Namespace) -> int:
    check(args)
    entry = registry()[args.task]
    opts = task_options(args, entry)
    out = Path(args.output)
    from gplinker.atomic import OutputLock
    from gplinker.distributed import local_device

    args.device = local_device(args.device)
    main_rank = int(os.environ.get("RANK", "0")) == 0  # under torchrun, rank 0 alone locks, logs to file and prints
    with OutputLock(out) if main_rank else contextlib.nullcontext():
        setup_logging(out / "train.log" if main_rank else None, args.verbose)
        if main_rank and args.overwrite and (out / "checkpoint").exists():
            import shutil

            logging.getLogger("gplinker").info("--overwrite: removing the checkpoint of the previous run in %s", out)
            shutil.rmtree(out / "checkpoint")
        if not main_rank:
            logging.getLogger().setLevel(logging.WARNING)
        return train(args, entry, opts, out, main_rank)


def build_extractor(args: argparse.Namespace, entry, opts, train_docs, dev_docs, out: Path):
    """The model to train: a saved one extended with the data's labels (``--init-from``), or a new one."""
    from gplinker.extractor import Extractor

    if args.init_from:
        from gplinker.finetune import extend_extractor

        base = Extractor.from_pretrained(model_path(args.init_from), args.device, registry=registry())
        extractor = extend_extractor(base, entry.task_class.from_documents(train_docs, opts))
        extractor.info["init_from"] = str(args.init_from)
        return extractor
    task = entry.task_class.from_documents(train_docs, opts)
    encoder = trim_encoder(args, train_docs, dev_docs, out) if args.trim_vocab != "none" else args.encoder
    settings = ModelSettings(**options.values(args, ModelSettings))
    extractor = Extractor.build(encoder, task, settings, args.device, seed=args.seed)
    extractor.info["encoder"] = args.encoder
    if encoder != args.encoder:  # the trimmed copy is in memory now and will be saved with the model
        import shutil

        shutil.rmtree(encoder, ignore_errors=True)
    return extractor


def read_data(args: argparse.Namespace, entry) -> tuple[list, list | None]:
    """The training and dev documents (the first ``--max-train-docs`` of training)."""
    train_docs = entry.read(args.train, args.format)
    dev_docs = entry.read(args.dev, args.format) if args.dev else None
    if args.max_train_docs:
        train_docs = train_docs[: args.max_train_docs]
    return train_docs, dev_docs


def fit(args: argparse.Namespace, entry, opts, train_docs, dev_docs, out: Path, on_epoch=None) -> dict[str, Any]:
    """One training run as the flags say: the model built, trained, the best saved to OUT/model and
    its dev metrics to OUT/metrics.json. Returns the training summary."""
    from gplinker.io import write_json
    from gplinker.training import train as train_loop

    extractor = build_extractor(args, entry, opts, train_docs, dev_docs, out)
    extractor.info.update(train_file=str(args.train), dev_file=str(args.dev) if args.dev else None, format=args.format)
    if getattr(args, "argv", None):
        import shlex

        extractor.info["command"] = "gplinker " + shlex.join(args.argv)
    config = TrainConfig(**options.values(args, TrainConfig))
    if dev_docs:
        warn_label_overlap(extractor.task, dev_docs)
    summary = train_loop(extractor, train_docs, dev_docs, config, out, on_epoch=on_epoch)
    if int(os.environ.get("RANK", "0")) == 0:
        write_json(out / "metrics.json", summary["best"]["metrics"] or {})
    return summary


def train(args: argparse.Namespace, entry, opts, out: Path, main_rank: bool = True) -> int:
    train_docs, dev_docs = read_data(args, entry)
    if args.seeds > 1:
        return train_seeds(args, entry, opts, train_docs, dev_docs, out)
    summary = fit(args, entry, opts, train_docs, dev_docs, out)
    if not main_rank:
        return 0
    best = summary["best"]
    metrics = best["metrics"] or {}
    print(f"trained {summary['steps']} steps in {summary['seconds']:.0f}s; model saved to {out / 'model'}")
    if (out / "curves.png").is_file():
        print(f"training curves: {out / 'curves.png'} (values in {out / 'history.jsonl'})")
    if metrics:
        print(f"best dev scores (epoch {best['epoch']}, step {best['step']}):")
        print_metrics(metrics)
    return 0


def train_seeds(args: argparse.Namespace, entry, opts, train_docs, dev_docs, out: Path) -> int:
    """``--seeds N``: the same command with seeds SEED .. SEED+N-1, each in OUT/seeds/seed-K; the
    mean and standard deviation of every dev level in OUT/seeds.json; the seed best on dev (main
    level) copied to OUT/model."""
    import copy

    from gplinker.atomic import copy_directory
    from gplinker.io import write_json
    from gplinker.metrics import over_seeds
    from gplinker.training import main_f1

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UsageError("--seeds runs the seeds one after another; run it without torchrun")
    runs: list[dict[str, Any]] = []
    seeds = range(args.seed, args.seed + args.seeds)
    # under --resume, the seeds that finished are kept: all checked before anything trains
    kept = {}
    if args.resume:
        task = {} if args.init_from else entry.task_class.from_documents(train_docs, opts).config()
        ours = recipe(args, task)
        kept = {seed: finished_seed(ours, out / "seeds" / f"seed-{seed}") for seed in seeds}
    for seed in seeds:
        one = copy.copy(args)
        one.seed, one.seeds = seed, 1
        where = out / "seeds" / f"seed-{seed}"
        summary = kept.get(seed)
        if summary is not None:
            print(f"seed {seed}: finished by the earlier command, kept ({where})")
        else:  # under --resume, an unfinished seed goes on from its checkpoint if it wrote one, else starts again
            one.resume = args.resume and (where / "checkpoint" / "state.json").is_file()
            summary = fit(one, entry, opts, train_docs, dev_docs, where)
            print(f"seed {seed}: trained {summary['steps']} steps in {summary['seconds']:.0f}s")
        runs.append({"seed": seed, "metrics": summary["best"]["metrics"] or {}, "seconds": summary["seconds"]})
    summary = over_seeds([r["metrics"] for r in runs])
    main = entry.task_class.main_level
    best = max(runs, key=lambda r: main_f1(r["metrics"], main) if r["metrics"] else -1.0)
    write_json(
        out / "seeds.json", {"seeds": [r["seed"] for r in runs], "summary": summary, "runs": runs, "best_seed": best["seed"]}
    )
    write_json(out / "metrics.json", best["metrics"])
    copy_directory(out / "seeds" / f"seed-{best['seed']}" / "model", out / "model")
    print(f"\ndev scores over {len(runs)} seeds ({', '.join(str(r['seed']) for r in runs)}), mean ± standard deviation:")
    rows = [
        [level, *(f"{m[k]['mean']:.4f} ± {m[k]['std']:.4f}" for k in ("precision", "recall", "f1"))]
        for level, m in summary.items()
    ]
    table(rows, ["level", "precision", "recall", "f1"])
    print(f"model of seed {best['seed']} (best on dev {main}) copied to {out / 'model'}; per seed: {out / 'seeds.json'}")
    return 0


# the settings chosen on dev after training, not given by the command
CHOSEN_ON_DEV = {"link_threshold", "temperature"}
NOT_RECIPE = {"seed", "resume", "save_every", "log_every", "report_to"}


def recipe(args: argparse.Namespace, task_config: dict[str, Any]) -> dict[str, Any]:
    """What a run of this command is made of, seed aside: training and model settings, the task's
    config (labels and options, as the model would save them), the encoder and the data files."""
    model = {k: v for k, v in options.values(args, ModelSettings).items() if k not in CHOSEN_ON_DEV}
    return {
        **dataclasses.asdict(TrainConfig(**options.values(args, TrainConfig))),
        **model,
        **task_config,
        "encoder": args.encoder,
        "train_file": str(args.train),
        "dev_file": str(args.dev) if args.dev else None,
    }


def finished_seed(ours: dict[str, Any], where: Path) -> dict[str, Any] | None:
    """The summary of a seed's run that finished (``train_summary.json`` is written last), or None.
    A finished run of another recipe (:func:`recipe`) is an error, not a silent mix in the mean."""
    import json

    path = where / "train_summary.json"
    if not path.is_file():
        return None
    summary = json.loads(path.read_text(encoding="utf-8"))
    saved = json.loads((where / "model" / "gplinker.json").read_text(encoding="utf-8"))
    info = saved.get("info", {})
    theirs = {
        **summary.get("config", {}),
        **{f.name: saved[f.name] for f in dataclasses.fields(ModelSettings) if f.name in saved},
        **saved.get("task_config", {}),
        **{k: info[k] for k in ("encoder", "train_file", "dev_file") if k in info},
    }
    changed = sorted(k for k in ours if k not in NOT_RECIPE and k in theirs and theirs[k] != ours[k])
    if changed:
        said = ", ".join(f"{k} {theirs[k]!r} there, {ours[k]!r} now" for k in changed)
        raise UsageError(f"--resume: {where} was trained with other settings ({said}); use the same flags or --overwrite")
    return summary


def warn_label_overlap(task, docs) -> None:
    """Say so when the model's labels and the data's labels have nothing in common (F1 is then 0)."""
    known, data = task.top_labels(), {lab for d in docs for lab in task.labels_in(d)}
    if data and known and not (known & data):
        logging.getLogger("gplinker").warning(
            "none of the labels in the data (%s) is a label of the model (%s): every score will be 0",
            ", ".join(sorted(data)[:8]),
            ", ".join(sorted(known)[:8]),
        )


def trim_encoder(args: argparse.Namespace, train_docs, dev_docs, out: Path) -> str:
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
            "vocabulary trimmed to the training texts: %d of %d dev texts tokenize differently, %d new unknown tokens among %d",
            c["texts_changed"],
            c["texts"],
            c["new_unknown_tokens"],
            c["tokens"],
        )
        write_json(out / "trim_report.json", c)
    return str(path)
