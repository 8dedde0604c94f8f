"""``gplinker tune``: a budgeted search for the training recipe, the best trained into OUTPUT/model."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
from pathlib import Path
from typing import Any

from gplinker.cli import options
from gplinker.cli.common import UsageError, existing_file, output_folder, registry, setup_logging, table
from gplinker.cli.train import (
    add_data_arguments,
    add_training_arguments,
    check,
    fit,
    read_data,
    task_options,
    trim_encoder,
)
from gplinker.extractor import ModelSettings
from gplinker.training import TrainConfig, main_f1

HELP = "search the training settings on dev within a step budget; the best recipe's model in OUTPUT/model"
EVALUATIONS = 4  # dev evaluations per trial: the points at which a poor trial can be stopped
FIXED = ("resume", "save_every", "max_steps", "epochs", "eval_every", "report_to")  # set by the search


def add_parser(sub, formatter, formats: str) -> argparse.ArgumentParser:
    t = sub.add_parser("tune", help=HELP, formatter_class=formatter)
    add_data_arguments(t, formats, dev_required=True)
    t.add_argument("--output", required=True, help="search folder: trials.csv, tune.png, best.json, trials/, model/")
    t.add_argument("--budget", type=options.positive_int, required=True, help="optimizer steps of one trial (at most)")
    t.add_argument(
        "--trials", type=options.positive_int, default=20, help="trials in the search (a resumed search counts those done)"
    )
    t.add_argument(
        "--space",
        metavar="FILE",
        help='JSON search space, e.g. {"lr": {"low": 1e-5, "high": 1e-3, "log": true}, "head_type": {"choices": '
        '["efficient", "standard"]}} (default: learning rates, head type, batch size, warm-up, steps; relation: --link-rope on and off)',
    )
    t.add_argument("--backend", choices=("optuna", "ray"), default="optuna", help="Optuna here, or Ray Tune across a Ray cluster")
    t.add_argument("--concurrency", type=options.positive_int, default=1, help="trials run at once (Ray: across the cluster)")
    add_training_arguments(t, skip=FIXED)
    t.set_defaults(func=run, init_from=None, overwrite=True, resume=False, seeds=1, save_every=None, report_to="none")
    return t


def searchable(entry) -> set[str]:
    """The settings a search space may name: those of training, the model and the task that have a flag."""
    classes = (TrainConfig, ModelSettings, entry.task_class.options_class)
    names = {f.name for cls in classes for f, _ in options.cli_fields(cls)}
    return names - {"resume", "save_every", "report_to", "seed", "eval_every", "epochs", "log_every", "precision"}


def check_tune(args: argparse.Namespace, entry) -> Any:
    """Checks before any data is read; returns the search space."""
    from gplinker.tuning import SearchSpace

    args.max_steps, args.epochs, args.eval_every = args.budget, 1, None
    args.output = str(output_folder(args.output, "--output", "tune writes a folder (trials.csv, trials/, model/)"))
    check(args)
    import importlib.util

    if args.backend == "ray" and (importlib.util.find_spec("ray") is None or importlib.util.find_spec("ray.tune") is None):
        raise UsageError("--backend ray needs Ray Tune — pip install 'gplinker[ray]' (or 'ray[tune]')")
    if importlib.util.find_spec("optuna") is None:  # Ray Tune's search runs Optuna's sampler too
        raise UsageError("gplinker tune needs Optuna — pip install 'gplinker[tune]'")
    if args.space:
        space = SearchSpace.from_file(existing_file(args.space, "--space"), searchable(entry))
    else:
        space = SearchSpace.default(args.budget, entry.task_class.searched)
    steps = [p for p in space.params if p.name == "max_steps"]
    if steps and any(int(c) > args.budget for c in steps[0].choices or (steps[0].high,)):
        raise UsageError(f"--space: max_steps goes above --budget {args.budget}; the budget is the most a trial may train")
    return space


def run(args: argparse.Namespace) -> int:
    from gplinker.atomic import OutputLock

    entry = registry()[args.task]
    space = check_tune(args, entry)
    opts = task_options(args, entry)
    out = Path(args.output)
    with OutputLock(out):
        setup_logging(out / "tune.log", args.verbose)
        return search(args, entry, opts, space, out)


def search(args: argparse.Namespace, entry, opts, space, out: Path) -> int:
    from gplinker import tuning

    train_docs, dev_docs = read_data(args, entry)
    base = copy.copy(args)
    if args.trim_vocab != "none":  # trimmed once, shared by every trial
        base.encoder, base.trim_vocab = trim_encoder(args, train_docs, dev_docs, out), "none"
    main = entry.task_class.main_level
    logging.getLogger("gplinker").info(
        "searching %s over %s: %d trials of at most %d steps, %s",
        main,
        ", ".join(space.names()),
        args.trials,
        args.budget,
        args.backend,
    )

    def objective(params: dict[str, Any], trial_dir: Path, report) -> float:
        one = copy.copy(base)
        own = {f.name for f in dataclasses.fields(entry.task_class.options_class)}
        for name, value in params.items():
            setattr(one, f"task_{name}" if name in own else name, value)  # task options live as task_NAME
        one.eval_every = max(1, int(one.max_steps) // EVALUATIONS)
        one.argv = recipe_argv(args, params, entry)  # the saved model records the train command of its recipe
        trial_opts = task_options(one, entry) if own & params.keys() else opts

        def on_eval(epoch: int, entry_: dict) -> None:
            if entry_.get("dev") and main in entry_["dev"]:
                report(int(entry_["step"]), float(entry_["dev"][main]["f1"]))

        summary = fit(one, entry, trial_opts, train_docs, dev_docs, trial_dir, on_epoch=on_eval)
        return main_f1(summary["best"]["metrics"] or {}, main)

    result = tuning.tune(objective, space, args.trials, out, args.backend, args.seed, args.concurrency)
    return print_result(result, out, main)


TUNE_ONLY = {"--budget": 1, "--trials": 1, "--space": 1, "--backend": 1, "--concurrency": 1, "--output": 1}


def recipe_argv(args: argparse.Namespace, params: dict[str, Any], entry) -> list[str]:
    """The ``gplinker train`` arguments of one trial's recipe: the tune command's own settings,
    the search's flags dropped, the trial's settings and the budget written as flags."""
    classes = (TrainConfig, ModelSettings, entry.task_class.options_class)
    specs = {f.name: spec for cls in classes for f, spec in options.cli_fields(cls)}
    given = list(getattr(args, "argv", None) or [])[1:]
    kept, k = [], 0
    while k < len(given):
        if given[k] in TUNE_ONLY or given[k].split("=", 1)[0] in TUNE_ONLY:
            k += 1 + (TUNE_ONLY.get(given[k], 0) if "=" not in given[k] else 0)
            continue
        kept.append(given[k])
        k += 1
    chosen = {"max_steps": args.budget, **params}
    extra = []
    for name, value in chosen.items():
        spec = specs[name]
        if isinstance(value, bool):  # a switch: its flag when it turns the default around
            extra += [spec.negate] if spec.negate and not value else [spec.flag] if spec.flag and value else []
        else:
            extra += [spec.flag, str(value)]
    return ["train", *kept, *extra, "--output", "OUTPUT"]


def print_result(result, out: Path, main: str) -> int:
    states = [r.state for r in result.trials]
    print(
        f"searched {len(states)} trials in {result.seconds:.0f}s: {states.count('complete')} complete, "
        f"{states.count('pruned')} stopped early, {states.count('failed')} failed"
    )
    done = sorted((r for r in result.trials if r.score is not None), key=lambda r: -r.score)[:10]
    if done:
        names = sorted({k for r in done for k in r.params})
        rows = [[r.number, r.score, *(_short(r.params.get(k)) for k in names)] for r in done]
        table(rows, ["trial", f"dev {main} F1", *names])
    if result.best is None:
        print(f"no trial finished; see {out / 'trials.csv'} and {out / 'tune.log'}")
        return 1
    print(f"best: trial {result.best.number}, dev {main} F1 {result.best.score:.4f}; model in {result.model}")
    print(f"table: {out / 'trials.csv'}; plot: {out / 'tune.png'}; recipe: {out / 'best.json'}")
    return 0


def _short(value: Any) -> Any:
    return f"{value:.3g}" if isinstance(value, float) else value
