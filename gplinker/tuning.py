"""A budgeted search for a training recipe (``gplinker tune``): Optuna on one machine, or Ray Tune
across a cluster, through one interface.

:func:`tune` takes an *objective* -- ``objective(params, trial_dir, report) -> dev score`` that
trains one model with ``params`` in ``trial_dir`` and calls ``report(step, score)`` after each dev
evaluation -- a :class:`SearchSpace`, a number of trials and an output folder. Poor trials stop
early (Optuna's median pruner, Ray's ASHA scheduler: a trial whose dev score at a step is below
the median of earlier trials at that step is stopped). The study is kept in the output folder, so
a search killed half way goes on from where it stopped when run again (the trial that was running
is run again from its start). It writes a table of the trials (``trials.csv``), a plot of the dev
score against trial and against each setting (``tune.png``) and the best recipe (``best.json``);
only the best trial keeps its model (``trials/NNNN/model``), the others' are removed as the search
goes, so a 40-trial search holds one model on disk.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from gplinker.atomic import atomic_open, copy_directory
from gplinker.io import DataError, read_text, write_json

logger = logging.getLogger(__name__)

Report = Callable[[int, float], None]
Objective = Callable[[dict[str, Any], Path, Report], float]
BACKENDS = ("optuna", "ray")
STUDY = "study.journal"  # Optuna's append-only journal: the search's state, read back on resume
TRIALS_DIR = "trials"
MODEL = "model"
INTERRUPTED = "interrupted; run again"


class Pruned(Exception):
    """Raised by ``report`` when the search stops a poor trial early."""


@dataclass(frozen=True)
class Param:
    """One searched setting: ``float``/``int`` between ``low`` and ``high`` (``log``: on a log
    scale) or ``categorical`` among ``choices``."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple = ()

    def suggest(self, trial: Any) -> Any:
        """The value an Optuna trial (or Ray's define-by-run space) draws."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)


@dataclass(frozen=True)
class SearchSpace:
    params: tuple[Param, ...]

    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Every setting's value for one trial (Optuna's define-by-run; Ray Tune pickles it)."""
        return {p.name: p.suggest(trial) for p in self.params}

    def to_json(self) -> dict[str, Any]:
        return {p.name: {k: v for k, v in asdict(p).items() if k != "name" and v not in (None, (), False)} for p in self.params}

    @classmethod
    def default(cls, budget: int, switches: Sequence[str] = ()) -> "SearchSpace":
        """The settings that moved dev scores most in docs/results.md: both learning rates (on a
        log scale), the head type, the batch size, the warm-up, half or all of the step budget,
        and each of the task's ``switches`` on and off (a relation model's ``link_rope``). The
        link threshold needs no trial: every trial of a relation or event model chooses it on dev
        from a grid after training."""
        steps = sorted({max(1, budget // 2), budget})
        return cls(
            (
                Param("lr", "float", 2e-5, 5e-4, log=True),
                Param("head_lr", "float", 3e-4, 1e-2, log=True),
                Param("head_type", "categorical", choices=("efficient", "standard")),
                Param("batch_size", "categorical", choices=(8, 16, 32)),
                Param("warmup_ratio", "categorical", choices=(0.0, 0.06, 0.1)),
                Param("max_steps", "categorical", choices=tuple(steps)),
                *(Param(name, "categorical", choices=(False, True)) for name in switches),
            )
        )

    @classmethod
    def from_file(cls, path: str | Path, allowed: Iterable[str]) -> "SearchSpace":
        """A space from JSON: ``{"lr": {"low": 1e-5, "high": 1e-3, "log": true}, "head_type":
        {"choices": ["efficient", "standard"]}, "batch_size": {"low": 8, "high": 32, "type": "int"}}``.
        Names are the training settings (those of ``allowed``); a mistake names the file and key."""
        try:
            raw = json.loads(read_text(path))
        except json.JSONDecodeError as e:
            raise DataError(path, e.lineno, f"not valid JSON ({e.msg})", "the search space is a JSON object") from e
        if not isinstance(raw, dict) or not raw:
            raise DataError(path, None, "the search space must be a non-empty JSON object of setting -> range")
        allowed = set(allowed)
        return cls(tuple(_param(path, name, spec, allowed) for name, spec in raw.items()))


def _param(path: str | Path, name: str, spec: Any, allowed: set[str]) -> Param:
    def error(problem: str) -> DataError:
        return DataError(path, None, f"key {name!r}: {problem}")

    if name not in allowed:
        raise error(f"not a training setting; use one of {', '.join(sorted(allowed))}")
    if not isinstance(spec, dict):
        raise error('give a range {"low": A, "high": B} or {"choices": [...]}')
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise error("choices must be a non-empty list")
        return Param(name, "categorical", choices=tuple(choices))
    low, high = spec.get("low"), spec.get("high")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high)):
        raise error('give numbers "low" and "high" (or "choices")')
    kind = spec.get("type", "int" if isinstance(low, int) and isinstance(high, int) else "float")
    log = bool(spec.get("log", False))
    if kind not in ("int", "float") or low >= high or (log and low <= 0):
        raise error("need low < high (above 0 on a log scale) and type int or float")
    return Param(name, kind, low, high, log)


@dataclass
class TrialRecord:
    """One trial as the table shows it."""

    number: int
    state: str  # complete, pruned, failed
    params: dict[str, Any]
    score: float | None
    seconds: float | None
    reported: dict[int, float] = field(default_factory=dict)  # dev score by step
    error: str | None = None


@dataclass
class TuneResult:
    trials: list[TrialRecord]
    best: TrialRecord | None
    seconds: float
    model: Path | None  # the best trial's model, copied to OUTPUT/model


def tune(
    objective: Objective,
    space: SearchSpace,
    trials: int,
    out: str | Path,
    backend: str = "optuna",
    seed: int = 42,
    concurrency: int = 1,
) -> TuneResult:
    """Run (or go on with) a search of ``trials`` trials in ``out``; see the module docstring."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if backend not in BACKENDS:
        raise ValueError(f"unknown search backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    write_json(out / "space.json", space.to_json())
    clock = _Clock(_earlier_seconds(out))
    run = _run_optuna if backend == "optuna" else _run_ray
    records = run(objective, space, trials, out, seed, concurrency, clock)
    best = _best(records)
    seconds = clock.total()
    write_trials(out, records, best, seconds)
    model = None
    if best is not None and (out / TRIALS_DIR / f"{best.number:04d}" / MODEL).is_dir():
        model = out / MODEL
        copy_directory(out / TRIALS_DIR / f"{best.number:04d}" / MODEL, model)
    return TuneResult(records, best, seconds, model)


class _Clock:
    """Seconds the search has run, earlier runs of a resumed search included."""

    def __init__(self, before: float) -> None:
        self.before, self.t0 = before, time.time()

    def total(self) -> float:
        return round(self.before + time.time() - self.t0, 1)


def _earlier_seconds(out: Path) -> float:
    """Seconds spent by earlier runs of a resumed search (kept in best.json)."""
    try:
        return float(json.loads((out / "best.json").read_text(encoding="utf-8")).get("search_seconds", 0))
    except (OSError, ValueError, AttributeError, TypeError):
        return 0.0


def _best(records: Sequence[TrialRecord]) -> TrialRecord | None:
    done = [r for r in records if r.state == "complete" and r.score is not None]
    return max(done, key=lambda r: (r.score, -r.number)) if done else None


def _keep_best_model(out: Path, records: Sequence[TrialRecord]) -> None:
    """Remove the model of every trial but the best finished one (disk: one model, not one per trial)."""
    best = _best(records)
    for d in sorted((out / TRIALS_DIR).glob("*/")):
        if (d / MODEL).is_dir() and (best is None or d.name != f"{best.number:04d}"):
            if any(r.number == int(d.name) and r.state != "running" for r in records):
                shutil.rmtree(d / MODEL, ignore_errors=True)


# --- Optuna -------------------------------------------------------------------------------------


def _run_optuna(
    objective: Objective, space: SearchSpace, trials: int, out: Path, seed: int, concurrency: int, clock: _Clock
) -> list[TrialRecord]:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(out / STUDY)))
    study = optuna.create_study(
        study_name="gplinker",
        storage=storage,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(10, trials // 4))),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0),
        load_if_exists=True,
    )
    _recover_interrupted(study, storage)
    finished = _counted(study)
    remaining = max(0, trials - finished)
    if study.trials:
        logger.info("resuming the search in %s: %d of %d trials done", out, finished, trials)

    def run_trial(trial: Any) -> float:
        params = space.suggest(trial)
        t0 = time.time()

        def report(step: int, score: float) -> None:
            trial.report(score, step)
            if trial.should_prune():
                raise Pruned(f"dev score {score:.4f} at step {step} is below the median of earlier trials")

        try:
            return objective(params, out / TRIALS_DIR / f"{trial.number:04d}", report)
        except Pruned as e:
            raise optuna.TrialPruned(str(e)) from e
        except Exception as e:
            trial.set_user_attr("error", f"{type(e).__name__}: {e}")
            raise
        finally:
            trial.set_user_attr("seconds", round(time.time() - t0, 1))

    def after(study: Any, trial: Any) -> None:
        records = _optuna_records(study)
        _keep_best_model(out, records)
        write_trials(out, records, _best(records), clock.total())

    study.optimize(run_trial, n_trials=remaining, catch=(Exception,), callbacks=[after], n_jobs=concurrency)
    return _optuna_records(study)


def _interrupted(t: Any) -> bool:
    """A trial stopped by a kill or Ctrl-C, not by an error of its own (those record the error)."""
    import optuna

    return t.state == optuna.trial.TrialState.FAIL and t.user_attrs.get("error") in (None, INTERRUPTED)


def _recover_interrupted(study: Any, storage: Any) -> None:
    """Trials a killed or interrupted search left behind (still marked running, or failed without
    an error of their own): marked failed, their settings queued once to run again first."""
    import optuna

    requeued = set(study.user_attrs.get("requeued", []))
    for t in study.get_trials(deepcopy=False):
        if t.state == optuna.trial.TrialState.RUNNING:  # the process was killed during this trial
            storage.set_trial_user_attr(t._trial_id, "error", INTERRUPTED)
            storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
        elif not _interrupted(t):
            continue
        if t.number not in requeued and t.params:
            study.enqueue_trial(t.params, skip_if_exists=False)
            requeued.add(t.number)
    study.set_user_attr("requeued", sorted(requeued))


def _counted(study: Any) -> int:
    """Trials that count against the budget: finished, except those interrupted (run again)."""
    return sum(t.state.is_finished() and not _interrupted(t) for t in study.get_trials(deepcopy=False))


def _optuna_records(study: Any) -> list[TrialRecord]:
    import optuna

    states = {optuna.trial.TrialState.COMPLETE: "complete", optuna.trial.TrialState.PRUNED: "pruned"}
    records = []
    for t in study.get_trials(deepcopy=False):
        state = "running" if t.state == optuna.trial.TrialState.RUNNING else states.get(t.state, "failed")
        if t.state == optuna.trial.TrialState.WAITING:
            continue
        records.append(
            TrialRecord(
                number=t.number,
                state=state,
                params=dict(t.params),
                score=t.value if state == "complete" else None,  # Optuna gives a pruned trial its last report
                seconds=t.user_attrs.get("seconds"),
                reported={int(k): float(v) for k, v in t.intermediate_values.items()},
                error=t.user_attrs.get("error"),
            )
        )
    return records


# --- Ray Tune -----------------------------------------------------------------------------------


def _run_ray(
    objective: Objective, space: SearchSpace, trials: int, out: Path, seed: int, concurrency: int, clock: _Clock
) -> list[TrialRecord]:
    """The same search on Ray Tune: Optuna's sampler (``OptunaSearch`` over the same space), the
    ASHA scheduler for early stopping, ``concurrency`` trials at once on the cluster's CPUs (or one
    GPU each when there are GPUs). The experiment lives in ``OUT/ray`` and is restored from there."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    storage = (out / "ray").resolve()
    trainable = tune.with_parameters(_ray_trainable, objective=objective, out=str(out.resolve()))
    trainable = tune.with_resources(trainable, _ray_resources(concurrency))
    if tune.Tuner.can_restore(storage / "gplinker"):
        logger.info("resuming the Ray Tune search in %s", storage)
        tuner = tune.Tuner.restore(str(storage / "gplinker"), trainable, resume_errored=True, restart_errored=False)
    else:
        searcher = OptunaSearch(
            space=space.suggest,
            metric="score",
            mode="max",
            seed=seed,
        )
        scheduler = ASHAScheduler(  # rungs count dev evaluations; a trial is never cut for running long
            time_attr="evaluation", metric="score", mode="max", grace_period=1, reduction_factor=2, max_t=1_000_000
        )
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=ConcurrencyLimiter(searcher, max_concurrent=concurrency),
                scheduler=scheduler,
                num_samples=trials,
            ),
            run_config=tune.RunConfig(name="gplinker", storage_path=str(storage), verbose=0),
        )
    grid = tuner.fit()
    records = _ray_records(grid, space)
    _keep_best_model(out, records)
    return records


def _ray_resources(concurrency: int) -> dict[str, float]:
    import ray

    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    total = ray.cluster_resources()
    if total.get("GPU", 0) >= 1:
        return {"cpu": 1, "gpu": 1}
    return {"cpu": max(1, int(total.get("CPU", 1)) // max(1, concurrency))}


def _ray_trainable(config: dict[str, Any], objective: Objective, out: str) -> None:
    from ray import tune

    ctx = tune.get_context()
    suffix = str(ctx.get_trial_id() or "0").rsplit("_", 1)[-1]
    number = int(suffix) if suffix.isdigit() else 0
    last = {"step": 0, "evaluation": 0}

    def report(step: int, score: float) -> None:
        last["step"], last["evaluation"] = step, last["evaluation"] + 1
        tune.report({"score": score, "step": step, "evaluation": last["evaluation"], "number": number})

    score = objective(dict(config), Path(out) / TRIALS_DIR / f"{number:04d}", report)
    tune.report({"score": score, "step": last["step"], "evaluation": last["evaluation"] + 1, "number": number, "final": True})


def _ray_records(grid: Any, space: SearchSpace) -> list[TrialRecord]:
    records = []
    for k, result in enumerate(grid):
        metrics = result.metrics or {}
        history = result.metrics_dataframe
        reported = {}
        if history is not None and "step" in history:
            finals = history["final"].fillna(False) if "final" in history else [False] * len(history)
            reported = {int(s): float(v) for s, v, f in zip(history["step"], history["score"], finals) if not f}
        final = bool(metrics.get("final"))
        state = "failed" if result.error else ("complete" if final else "pruned")
        config = {n: (result.config or {}).get(n) for n in space.names()}
        records.append(
            TrialRecord(
                number=int(metrics.get("number", k)),
                state=state,
                params=config,
                score=metrics.get("score") if final else None,
                seconds=round(float(metrics.get("time_total_s", 0.0)), 1) if metrics else None,
                reported=reported,
                error=str(result.error) if result.error else None,
            )
        )
    return sorted(records, key=lambda r: r.number)


# --- what the search writes ---------------------------------------------------------------------


def write_trials(out: Path, records: Sequence[TrialRecord], best: TrialRecord | None, seconds: float) -> None:
    """``trials.csv`` (one row per trial), ``best.json`` and ``tune.png`` (skipped, with a log
    line, if it cannot be drawn)."""
    import pandas as pd

    names = sorted({k for r in records for k in r.params})
    rows = [
        {
            "trial": r.number,
            "state": r.state,
            "score": r.score,
            "seconds": r.seconds,
            "last_step": max(r.reported) if r.reported else None,
            **{k: r.params.get(k) for k in names},
            "error": r.error or "",
        }
        for r in records
    ]
    frame = pd.DataFrame(rows, columns=["trial", "state", "score", "seconds", "last_step", *names, "error"])
    with atomic_open(out / "trials.csv") as f:
        frame.to_csv(f, index=False)
    summary: dict[str, Any] = {
        "trials": len(records),
        "complete": sum(r.state == "complete" for r in records),
        "pruned": sum(r.state == "pruned" for r in records),
        "failed": sum(r.state == "failed" for r in records),
        "best": asdict(best) if best else None,
    }
    summary["search_seconds"] = seconds
    write_json(out / "best.json", summary)
    try:
        plot_trials(records, out / "tune.png")
    except Exception as e:  # a plot never loses the search
        logger.warning("could not draw %s: %s", out / "tune.png", e)


def plot_trials(records: Sequence[TrialRecord], path: Path) -> None:
    """Dev score against trial number, and against each setting (log axis for log-scale ranges)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = [r for r in records if r.score is not None or r.reported]
    names = sorted({k for r in records for k in r.params})
    cols = min(3, len(names) + 1)
    rows = math.ceil((len(names) + 1) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    colour = {"complete": "tab:blue", "pruned": "tab:gray", "failed": "tab:red", "running": "tab:orange"}

    def value(r: TrialRecord) -> float:
        return r.score if r.score is not None else max(r.reported.values())

    ax = axes[0][0]
    for r in scored:
        ax.scatter(r.number, value(r), c=colour[r.state], s=18)
    ax.set_xlabel("trial")
    ax.set_ylabel("dev score (pruned: last reported)")
    for k, name in enumerate(names, start=1):
        ax = axes[k // cols][k % cols]
        xs = [r.params.get(name) for r in scored]
        numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
        labels = sorted({str(x) for x in xs}) if not numeric else []
        for r, x in zip(scored, xs):
            ax.scatter(x if numeric else labels.index(str(x)), value(r), c=colour[r.state], s=18)
        if numeric and xs and min(xs) > 0 and max(xs) / min(xs) > 20:
            ax.set_xscale("log")
        if labels:
            ax.set_xticks(range(len(labels)), labels)
        ax.set_xlabel(name)
    for k in range(len(names) + 1, rows * cols):
        axes[k // cols][k % cols].axis("off")
    fig.suptitle("gplinker tune: blue complete, grey pruned, red failed")
    fig.tight_layout()
    with atomic_open(path, "wb", encoding=None) as f:
        fig.savefig(f, format="png", dpi=90)
    plt.close(fig)
