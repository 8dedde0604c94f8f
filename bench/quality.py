#!/usr/bin/env python
"""Quality benchmark: train and evaluate on the public corpora within a fixed CPU budget.

Each row is one ``run.py train`` command (or the token-classification baseline,
``bench/token_baseline.py``) with a fixed number of optimizer steps; the script runs the rows one
after another, then writes ``docs/results.md`` and ``docs/results.json`` with, per row, the
encoder, steps, wall time, the dev F1 at every level the task reports, and the exact command.

    python bench/quality.py                  # all rows (about 100 minutes on 2 CPU cores)
    python bench/quality.py --rows conll04_ner_gp conll04_ner_bio
    python bench/quality.py --report-only    # rebuild the docs from runs already finished
    python bench/quality.py --rows conll04_rel --seeds 3   # the mean and deviation over seeds 42, 43, 44

Finished rows are reused (their ``train_summary.json`` is kept under ``runs/quality``) unless
``--force`` is given, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = "../shared/datasets"


@dataclass
class Row:
    name: str
    corpus: str
    task: str  # ner | relation | event
    system: str  # gplinker | baseline
    encoder: str
    train: str
    dev: str
    args: list[str] = field(default_factory=list)
    note: str = ""

    def command(self, out_dir: str, seed: int | None = None, seeds: int = 1) -> list[str]:
        common = [
            "--train",
            f"{DATA}/{self.train}",
            "--dev",
            f"{DATA}/{self.dev}",
            "--encoder",
            self.encoder,
            *self.args,
            "--output",
            out_dir,
        ]
        if seed is not None:
            common += ["--seed", str(seed)]
        if self.system == "baseline":
            return ["python", "bench/token_baseline.py", *common]
        return [
            "python",
            "run.py",
            "train",
            self.task,
            *common,
            "--device",
            "cpu",
            *(["--seeds", str(seeds)] if seeds > 1 else []),
        ]


ME5 = ["--trim-vocab", "train", "--lr", "5e-5", "--head-lr", "1e-3", "--batch-size", "16"]
MINILM = ["--lr", "1e-4", "--head-lr", "1e-3", "--batch-size", "16"]
# the CoNLL04 1,200-step recipe (encoder rate 3e-4, best at 400 steps), with and without RoPE links
CONLL04_1200 = ["--lr", "3e-4", "--head-lr", "1e-3", "--batch-size", "16", "--max-steps", "1200", "--max-length", "128"]
PHEE_WINDOWS = ["--max-length", "160", "--stride", "48"]
ROWS = [
    Row(
        "cluener_gp",
        "CLUENER",
        "ner",
        "gplinker",
        "me5-small",
        "cluener/train.json",
        "cluener/dev.json",
        ME5 + ["--max-steps", "300", "--max-length", "128", "--stride", "32"],
    ),
    Row(
        "cluener_bio",
        "CLUENER",
        "ner",
        "baseline",
        "me5-small",
        "cluener/train.json",
        "cluener/dev.json",
        ME5 + ["--max-steps", "300", "--max-length", "128", "--stride", "32"],
    ),
    Row(
        "cluener_gp_long",
        "CLUENER",
        "ner",
        "gplinker",
        "me5-small",
        "cluener/train.json",
        "cluener/dev.json",
        ME5 + ["--max-steps", "800", "--max-length", "128", "--stride", "32"],
        note="the flat-NER pair with a larger budget",
    ),
    Row(
        "cluener_bio_long",
        "CLUENER",
        "ner",
        "baseline",
        "me5-small",
        "cluener/train.json",
        "cluener/dev.json",
        ME5 + ["--max-steps", "800", "--max-length", "128", "--stride", "32"],
        note="the flat-NER pair with a larger budget",
    ),
    Row(
        "cluener_gp_frozen",
        "CLUENER",
        "ner",
        "gplinker",
        "me5-small",
        "cluener/train.json",
        "cluener/dev.json",
        ["--freeze-embeddings", *ME5[2:], "--max-steps", "300", "--max-length", "128", "--stride", "32"],
        note="full 250k vocabulary, word embeddings frozen instead of trimmed",
    ),
    Row(
        "cmeee_gp",
        "CMeEE (nested)",
        "ner",
        "gplinker",
        "me5-small",
        "cmeee/train.json",
        "cmeee/dev.json",
        ME5 + ["--max-steps", "200", "--max-length", "256", "--stride", "64"],
    ),
    Row(
        "conll04_ner_gp",
        "CoNLL04 entities",
        "ner",
        "gplinker",
        "minilm-l6",
        "conll04/train.json",
        "conll04/dev.json",
        MINILM + ["--max-steps", "300", "--max-length", "128"],
    ),
    Row(
        "conll04_ner_bio",
        "CoNLL04 entities",
        "ner",
        "baseline",
        "minilm-l6",
        "conll04/train.json",
        "conll04/dev.json",
        MINILM + ["--max-steps", "300", "--max-length", "128"],
    ),
    Row(
        "conll04_rel",
        "CoNLL04",
        "relation",
        "gplinker",
        "minilm-l6",
        "conll04/train.json",
        "conll04/dev.json",
        MINILM + ["--max-steps", "400", "--max-length", "128"],
    ),
    Row(
        "conll04_rel_1200",
        "CoNLL04",
        "relation",
        "gplinker",
        "minilm-l6",
        "conll04/train.json",
        "conll04/dev.json",
        CONLL04_1200,
        note="the 1,200-step budget with the encoder learning rate that scored best at 400 steps (3e-4)",
    ),
    Row(
        "conll04_rel_1200_rope",
        "CoNLL04",
        "relation",
        "gplinker",
        "minilm-l6",
        "conll04/train.json",
        "conll04/dev.json",
        CONLL04_1200 + ["--link-rope"],
        note="the 1,200-step budget with rotary position on the link heads (docs/results.md, triple recall)",
    ),
    Row(
        "webnlg_rel",
        "WebNLG*",
        "relation",
        "gplinker",
        "minilm-l6",
        "webnlg/train.json",
        "webnlg/dev.json",
        MINILM + ["--max-steps", "400", "--max-length", "128"],
    ),
    Row(
        "fewfc_event",
        "FewFC",
        "event",
        "gplinker",
        "me5-small",
        "fewfc/train.jsonl",
        "fewfc/dev.jsonl",
        ME5 + ["--max-steps", "200", "--max-length", "256", "--stride", "64"],
    ),
    Row(
        "fewfc_event_long",
        "FewFC",
        "event",
        "gplinker",
        "me5-small",
        "fewfc/train.jsonl",
        "fewfc/dev.jsonl",
        ME5 + ["--max-steps", "450", "--max-length", "256", "--stride", "64"],
        note="FewFC with a larger budget",
    ),
    *(
        Row(name, "PHEE", "event", "gplinker", "minilm-l6", "phee/train.jsonl", "phee/dev.jsonl", args + PHEE_WINDOWS, note=note)
        for name, args, note in (
            ("phee_event", MINILM + ["--max-steps", "400"], ""),
            (
                "phee_event_600",
                ["--head", "standard", "--lr", "3e-4", "--head-lr", "1e-3", "--batch-size", "16", "--max-steps", "600"],
                "the 600-step budget with the recipe docs/results.md found for PHEE (standard head, lr 3e-4)",
            ),
            (
                "phee_event_600_tuned",
                ["--lr", "4.7e-4", "--head-lr", "1.47e-3", "--warmup-ratio", "0", "--batch-size", "16", "--max-steps", "600"],
                "the 600-step budget with the recipe `gplinker tune event` found (10 trials, docs/results.md)",
            ),
        )
    ),
]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch
    import transformers

    return (
        f"{cpu}, {os.cpu_count()} cores visible, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), transformers {transformers.__version__}, Python {platform.python_version()}"
    )


def _execute(name: str, cmd: list[str], out: Path, done: Path, force: bool) -> bool:
    """Run one command into ``out`` unless ``done`` exists (a finished earlier run)."""
    if done.is_file() and not force:
        print(f"[{name}] reusing {done}")
        return True
    out.mkdir(parents=True, exist_ok=True)
    print(f"[{name}] {shlex.join(cmd)}", flush=True)
    t0 = time.time()
    with open(out / "stdout.log", "w") as log:
        rc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
    wall = time.time() - t0
    if rc != 0 or not done.is_file():
        print(f"[{name}] failed (exit {rc}); see {out / 'stdout.log'}")
        return False
    (out / "wall_seconds.txt").write_text(f"{wall:.1f}\n")
    print(f"[{name}] done in {wall:.0f}s")
    return True


def _system(row: Row) -> str:
    if row.system != "gplinker":
        return "AutoModelForTokenClassification (BIO)"
    return "gplinker (GlobalPointer)" if "standard" in row.args else "gplinker (Efficient GlobalPointer)"


def _levels(summary: dict) -> dict:
    return {
        k: {m: v[m] for m in ("precision", "recall", "f1", "n_gold", "n_pred") if m in v}
        for k, v in (summary["best"].get("metrics") or {}).items()
        if isinstance(v, dict) and "f1" in v
    }


def run_row(row: Row, runs: Path, force: bool, seeds: int = 1, execute: bool = True) -> dict | None:
    """One row: a single run (``seeds`` 1, the row's own seed), or ``seeds`` runs with seeds 42, 43,
    ... (``train --seeds`` for gplinker, one run per seed for the baseline), reported as the mean
    with the standard deviation beside it. With ``execute`` False only a finished row is reported."""
    from gplinker.metrics import over_seeds

    out = runs / row.name if seeds == 1 else runs / f"{row.name}_seeds{seeds}"
    rel = str(out.relative_to(ROOT)) if out.is_relative_to(ROOT) else str(out)
    seed_list = list(range(42, 42 + seeds)) if seeds > 1 else []
    summary_files = [out / "seeds" / f"seed-{s}" / "train_summary.json" for s in seed_list] or [out / "train_summary.json"]
    if not execute:
        if not all(f.is_file() for f in summary_files):
            return None
    elif seeds > 1 and row.system == "baseline":
        for s, f in zip(seed_list, summary_files):
            if not _execute(f"{row.name} seed {s}", row.command(str(f.parent), s), f.parent, f, force):
                return None
    else:
        cmd = row.command(rel, seeds=seeds)
        if row.system == "gplinker" and ((out / "seeds").is_dir() or (out / "model").is_dir()):
            # an interrupted --seeds run keeps its finished seeds; any other earlier run is trained again
            cmd += ["--resume"] if seeds > 1 and not force else ["--overwrite"]
        if not _execute(row.name, cmd, out, summary_files[-1], force):
            return None
    summaries = [json.loads(f.read_text(encoding="utf-8")) for f in summary_files]
    summary = summaries[0]
    wall_file = out / "wall_seconds.txt"
    best = summary["best"]
    levels = _levels(summary)
    spread = None
    if seeds > 1:
        spread = over_seeds([x["best"]["metrics"] or {} for x in summaries])
        levels = {k: {m: spread[k][m]["mean"] for m in ("precision", "recall", "f1")} for k in spread}
    if seeds > 1 and row.system == "gplinker":  # a resumed --seeds command's wall time leaves out the seeds it kept
        walls = [sum(x["seconds"] for x in summaries)]
    else:
        walls = [
            float(f.read_text()) for f in [wall_file, *(p.parent / "wall_seconds.txt" for p in summary_files)] if f.is_file()
        ]
    trim = out / "trim_report.json"
    return {
        "name": row.name,
        "corpus": row.corpus,
        "task": row.task,
        "system": _system(row),
        "encoder": row.encoder,
        "vocabulary": "frozen, full"
        if "--freeze-embeddings" in row.args
        else ("trimmed to train texts" if "--trim-vocab" in row.args else "full"),
        "steps": summary["steps"],
        "train_seconds": summary["seconds"],
        "wall_seconds": (sum(walls) / max(1, seeds)) if walls else None,
        "seeds": seed_list or [summary.get("config", {}).get("seed", 42)],
        "spread": spread,
        "best_epoch": best.get("epoch"),
        "best_step": best.get("step"),
        "levels": levels,
        "last_step": summary["history"][-1]["step"] if summary.get("history") and seeds == 1 else None,
        "last_levels": summary["history"][-1].get("dev") if summary.get("history") and seeds == 1 else None,
        "trim_report": json.loads(trim.read_text()) if trim.is_file() else None,
        "note": row.note,
        "command": shlex.join(row.command(f"runs/quality/{row.name}", seeds=seeds)),
    }


def _level_cell(r: dict, level: str, v: dict) -> str:
    spread = (r.get("spread") or {}).get(level)
    if spread:
        return f"{level} **{v['f1']:.4f}** ± {spread['f1']['std']:.4f} ({v['precision']:.3f} / {v['recall']:.3f})"
    return f"{level} **{v['f1']:.4f}** ({v['precision']:.3f} / {v['recall']:.3f})"


def _f1(r: dict, level: str) -> float | None:
    return r["levels"].get(level, {}).get("f1")


def render(results: list[dict], machine_line: str) -> str:
    lines = [
        "# Quality on the public corpora, CPU budget",
        "",
        "Dev-set scores of short CPU training runs (fixed optimizer steps, batch 16), written by "
        "`python bench/quality.py`. Each row is one command, run from the repository root with the corpora "
        f"at `{DATA}`. The best dev evaluation (after each epoch and at the last step) is reported, as the "
        "training loop keeps that checkpoint. These are budget runs, far from convergence: for full-length runs "
        "on a GPU see `docs/runs/README.md`.",
        "",
        f"Machine: {machine_line}.",
        "",
        "Protocol of every row: trained on the corpus's train split, scored on its dev split (the split the "
        "checkpoint and the link threshold are chosen on, so slightly optimistic for unseen data); `seeds` lists "
        "the seeds of the row: one seed is one draw, several give the mean with the sample standard deviation "
        "(±) over them (`bench/quality.py --seeds N`, `train --seeds N`). Wall time is one run's: the command's, or "
        "for a row over several seeds the mean time a seed trained and evaluated.",
        "",
        "| corpus | system | encoder | vocabulary | steps | wall (s) | split | seeds | dev F1 (P / R) |",
        "|---|---|---|---|---:|---:|---|---|---|",
    ]
    for r in results:
        f1s = "<br>".join(_level_cell(r, lvl, v) for lvl, v in r["levels"].items())
        wall = f"{r['wall_seconds']:.0f}" if r["wall_seconds"] else "-"
        seeds = ", ".join(str(x) for x in r.get("seeds") or [42])
        lines.append(
            f"| {r['corpus']} | {r['system']} | {r['encoder']} | {r['vocabulary']} | {r['steps']} | {wall} | dev | {seeds} | {f1s} |"
        )
    later = [r for r in results if r.get("last_levels") and r["last_step"] != r["best_step"]]
    if later:
        lines += [
            "",
            "The checkpoint is chosen by the first level's F1 (events, triples, entities); where the last "
            "evaluation differs from the chosen one:",
            "",
        ]
        for r in later:
            f1s = ", ".join(f"{k} {v['f1']:.4f}" for k, v in r["last_levels"].items())
            lines.append(f"- `{r['name']}` at step {r['last_step']} (chosen: step {r['best_step']}): {f1s}")
    lines += [
        "",
        "## GlobalPointer vs token classification on flat NER",
        "",
        "Same encoder, windows, data, steps, batch size, learning rates, schedule and scorer (exact (label, start, "
        "end) match on character offsets; the baseline's tags are read into entities by the conlleval rules "
        "seqeval uses by default).",
        "",
    ]
    by = {r["name"]: r for r in results}
    for gp, bio in (
        ("cluener_gp", "cluener_bio"),
        ("cluener_gp_long", "cluener_bio_long"),
        ("conll04_ner_gp", "conll04_ner_bio"),
    ):
        if gp in by and bio in by:
            a, b = _f1(by[gp], "entities"), _f1(by[bio], "entities")
            lines.append(
                f"- {by[gp]['corpus']} ({by[gp]['encoder']}, {by[gp]['steps']} steps): GlobalPointer {a:.4f} vs "
                f"BIO {b:.4f}, {100 * (a - b):+.2f} F1 points."
            )
    if "cluener_gp" in by and "cluener_gp_frozen" in by:
        t, f = by["cluener_gp"], by["cluener_gp_frozen"]
        lines += [
            "",
            "## Trimming vs freezing the word embeddings (me5-small, CLUENER)",
            "",
            f"- trimmed to the training texts' pieces: entities F1 {_f1(t, 'entities'):.4f}, {t['wall_seconds']:.0f} s wall;",
            f"- full vocabulary, embeddings frozen: entities F1 {_f1(f, 'entities'):.4f}, {f['wall_seconds']:.0f} s wall.",
        ]
        rep = t.get("trim_report")
        if rep:
            lines.append(
                f"- trimming to the training texts changes the tokenization of {rep['texts_changed']} of "
                f"{rep['texts']} dev texts ({rep['new_unknown_tokens']} new unknown tokens among {rep['tokens']}); "
                "on every other text the trimmed encoder computes exactly what the full one does, so this is "
                "the whole F1 cost of trimming relative to training the full matrix (`--trim-vocab train+dev` "
                "removes it when the texts to predict are known)."
            )
    lines += [
        "",
        "## Commands",
        "",
        "`$DATA` is the folder holding the public corpora in their published formats (CLUENER, CoNLL04 in",
        "SpERT's release, DuIE, FewFC, PHEE, ...), each as downloaded from its source.",
        "",
    ]
    for r in results:
        command = r["command"].replace(f"{DATA}/", "$DATA/")
        lines.append(f"- `{r['name']}`: `{command}`" + (f" ({r['note']})" if r["note"] else ""))
    extra = ROOT / "docs" / "results_extra.md"  # measurements made outside these rows (kept across regenerations)
    if extra.is_file():
        lines += ["", extra.read_text(encoding="utf-8").rstrip()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", nargs="*", help=f"rows to run (default all): {' '.join(r.name for r in ROWS)}")
    p.add_argument("--runs", default=str(ROOT / "runs" / "quality"), help="where each row's run directory goes")
    p.add_argument("--force", action="store_true", help="run rows again even if they finished before")
    p.add_argument("--report-only", action="store_true", help="only rebuild the docs from finished rows")
    p.add_argument("--out", default=str(ROOT / "docs" / "results"), help="writes OUT.md and OUT.json")
    p.add_argument("--seeds", type=int, default=1, help="runs per row, seeds 42, 43, ...: mean and standard deviation")
    args = p.parse_args(argv)
    if not (ROOT / DATA).is_dir():
        print(f"error: the corpora are expected at {ROOT / DATA} (see ../shared/datasets/README.md)", file=sys.stderr)
        return 2
    unknown = set(args.rows or []) - {r.name for r in ROWS}
    if unknown:
        print(f"error: unknown rows {sorted(unknown)}", file=sys.stderr)
        return 2
    runs = Path(args.runs).resolve()
    selected = [r for r in ROWS if not args.rows or r.name in args.rows]
    results = []
    for row in ROWS:
        seeded = runs / f"{row.name}_seeds{args.seeds}"
        if row in selected and not args.report_only:
            res = run_row(row, runs, args.force, args.seeds)
        elif args.seeds > 1 and seeded.is_dir():
            res = run_row(row, runs, False, args.seeds, execute=False)
        elif (runs / row.name / "train_summary.json").is_file():
            res = run_row(row, runs, False, execute=False)
        else:
            continue
        if res is not None:
            results.append(res)
    if not results:
        print("no finished rows to report")
        return 1
    machine_line = machine()
    md = render(results, machine_line)
    Path(args.out + ".md").write_text(md, encoding="utf-8")
    Path(args.out + ".json").write_text(
        json.dumps({"machine": machine_line, "rows": results}, ensure_ascii=False, indent=2), encoding="utf-8"
    )
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
