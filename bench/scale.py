#!/usr/bin/env python
"""Scaling benchmark -> docs/scaling.md/json. One section at a time, never two heavy jobs at once.

    python bench/scale.py [--sections train,predict,ray,inference] [--lines 10000,100000]

train:     training steps/s on CLUENER (me5-small, word embeddings frozen, length 64, batch 16,
           30 steps): gplinker fp32, bf16, with checkpointing every 10 steps, 2 gloo processes of 8
           (same global batch, torchrun), and a plain Hugging Face AutoModelForTokenClassification
           loop on the same encoder, windows and batches.
predict:   `gplinker predict` on 10k and 100k lines (CoNLL04 dev sentences repeated): texts/s and
           peak RSS of the process (flat memory is the target).
ray:       `predict --engine ray` with 1 and 2 actors against single-process predict, same input.
inference: offline NER inference against the Hugging Face token-classification pipeline on the same
           encoder (minilm-l6), texts and batch size, interleaved repeats: single sentences, and
           10-sentence paragraphs longer than one training window.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets"
sys.path.insert(0, str(ROOT))
RUNS = ROOT / "runs" / "bench_scale"


def _sh(cmd: list[str], env: dict | None = None) -> tuple[float, int, str]:
    """Run a command; (seconds, peak RSS of the child in MiB, output)."""
    t0 = time.perf_counter()
    wrapped = [
        sys.executable,
        "-c",
        "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
        "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)",
        *cmd,
    ]
    p = subprocess.run(wrapped, capture_output=True, text=True, env={**os.environ, **(env or {})})
    seconds = time.perf_counter() - t0
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
    peak = next(int(line.split()[1]) for line in p.stdout.splitlines() if line.startswith("PEAK_RSS_KB"))
    return seconds, peak // 1024, p.stdout + p.stderr


# ---- training steps ---------------------------------------------------------------------------------


def _cluener_docs(n: int):
    """The first ``n`` CLUENER training documents (both training benchmarks use the same)."""
    from gplinker.tasks import default_registry

    return default_registry()["ner"].read(DATA / "cluener" / "train.json")[:n]


def train_worker(args: argparse.Namespace) -> None:
    """One gplinker training run of 30 steps (also each process under torchrun); prints steps/s."""
    import torch

    from gplinker.extractor import Extractor, ModelSettings
    from gplinker.tasks import NEROptions, NERTask
    from gplinker.training import TrainConfig, train

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    docs = _cluener_docs(800)
    ex = Extractor.build(
        "me5-small", NERTask.from_documents(docs, NEROptions("nested")), ModelSettings(max_length=64, stride=16), "cpu", seed=42
    )
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cfg = TrainConfig(
        max_steps=args.steps,
        batch_size=16 // world,
        lr=5e-5,
        head_lr=1e-3,
        freeze_embeddings=True,
        precision=args.precision,
        save_every=10 if args.checkpoint else None,
    )
    out = RUNS / f"ckpt_{os.getpid()}" if args.checkpoint else None
    summary = train(ex, docs, None, cfg, out)
    if int(os.environ.get("RANK", "0")) == 0:
        print("STEPS_PER_S", summary["steps"] / summary["seconds"])


def hf_worker(args: argparse.Namespace) -> None:
    """The plain Hugging Face loop: AutoModelForTokenClassification, BIO tags, same windows and batches."""
    import torch
    from transformers import AutoModelForTokenClassification

    from bench.token_baseline import bio_labels, collate, train_step, window_tags
    from gplinker.encoders import load_encoder, resolve_encoder
    from gplinker.offsets import Featurizer
    from gplinker.training import length_bucketed_batches, set_seed, warmup_linear_decay

    torch.set_num_threads(2)
    docs = _cluener_docs(800)
    labels = sorted({s.label for d in docs for s in d.entities})
    names = bio_labels(labels)
    _, tokenizer = load_encoder("me5-small")
    set_seed(42)
    model = AutoModelForTokenClassification.from_pretrained(resolve_encoder("me5-small"), num_labels=len(names)).float()
    model.get_input_embeddings().weight.requires_grad_(False)
    windows = Featurizer(tokenizer, 64, 16).windows([d.text for d in docs])
    tags = [window_tags(docs[w.doc_index], w, {t: k for k, t in enumerate(names)})[0] for w in windows]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-5, fused=args.fused)
    scheduler = warmup_linear_decay(optimizer, args.steps, 3)
    batches = length_bucketed_batches([len(w) for w in windows], 16, random.Random(42))[: args.steps]
    model.train()
    t0 = time.perf_counter()
    for idx in batches:
        train_step(
            model, collate([windows[k] for k in idx], tokenizer.pad_token_id, [tags[k] for k in idx]), optimizer, scheduler
        )
    print("STEPS_PER_S", len(batches) / (time.perf_counter() - t0))


def section_train(steps: int, repeats: int = 1) -> list[dict]:
    """Every configuration ``repeats`` times, interleaved (a round of all, then the next); the median."""
    me = [sys.executable, str(Path(__file__).resolve())]
    worker = me + ["--worker", "train", "--steps", str(steps)]
    configs = [
        ("gplinker, 1 process, fp32", worker, {}),
        ("gplinker, 1 process, bf16", worker + ["--precision", "bf16"], {}),
        ("gplinker, 1 process, fp32, checkpoint every 10 steps", worker + ["--checkpoint"], {}),
        ("gplinker, 1 process, bf16, checkpoint every 10 steps", worker + ["--precision", "bf16", "--checkpoint"], {}),
        (
            "gplinker, 2 gloo processes x batch 8 (torchrun), fp32",
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nproc_per_node",
                "2",
                "--master_port",
                "29541",
                *me[1:],
                "--worker",
                "train",
                "--steps",
                str(steps),
            ],
            {"BENCH_THREADS": "1", "OMP_NUM_THREADS": "1"},
        ),
        (
            "gplinker, all on: 2 gloo processes x batch 8, bf16, checkpoint every 10 steps",
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nproc_per_node",
                "2",
                "--master_port",
                "29542",
                *me[1:],
                "--worker",
                "train",
                "--steps",
                str(steps),
                "--precision",
                "bf16",
                "--checkpoint",
            ],
            {"BENCH_THREADS": "1", "OMP_NUM_THREADS": "1"},
        ),
        (
            "Hugging Face loop, fp32, AdamW fused=True (HF Trainer's default optimizer on torch >= 2.8)",
            me + ["--worker", "hf", "--steps", str(steps), "--fused"],
            {},
        ),
        ("Hugging Face AutoModelForTokenClassification loop, fp32", me + ["--worker", "hf", "--steps", str(steps)], {}),
    ]
    runs: dict[str, list[float]] = {name: [] for name, _, _ in configs}
    for r in range(repeats):
        for name, cmd, env in configs:
            seconds, peak, out = _sh(cmd, env)
            sps = float(next(line.split()[1] for line in out.splitlines() if line.startswith("STEPS_PER_S")))
            runs[name].append(sps)
            print(f"  round {r + 1}: {name}: {sps:.3f} steps/s", flush=True)
    rows = [{"run": name, "steps_per_s": statistics.median(v), "rounds": v} for name, v in runs.items()]
    hf = rows[-1]["steps_per_s"]
    for row in rows:
        row["vs_hf"] = row["steps_per_s"] / hf
    return rows


# ---- predict: throughput and memory ---------------------------------------------------------------------


def _sentences() -> list[str]:
    return [" ".join(r["tokens"]) for r in json.loads((DATA / "conll04" / "dev.json").read_text(encoding="utf-8"))]


def _ner_model() -> Path:
    out = RUNS / "conll04_ner"
    if not (out / "model" / "gplinker.json").is_file():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "gplinker",
                "train",
                "ner",
                "--train",
                str(DATA / "conll04" / "train.json"),
                "--dev",
                str(DATA / "conll04" / "dev.json"),
                "--encoder",
                "minilm-l6",
                "--max-steps",
                "300",
                "--max-length",
                "128",
                "--lr",
                "1e-4",
                "--head-lr",
                "1e-3",
                "--output",
                str(out),
            ],
            check=True,
        )
    return out / "model"


def _input(lines: int) -> Path:
    path = RUNS / f"input_{lines}.jsonl"
    if not path.is_file():
        sents = _sentences()
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            for k in range(lines):
                f.write(json.dumps({"id": str(k), "text": sents[k % len(sents)]}) + "\n")
    return path


def section_predict(sizes: list[int]) -> list[dict]:
    model = _ner_model()
    rows = []
    for n in sizes:
        seconds, peak, _ = _sh(
            [
                sys.executable,
                "-m",
                "gplinker",
                "predict",
                "--model",
                str(model),
                "--input",
                str(_input(n)),
                "--output",
                str(RUNS / f"out_{n}.jsonl"),
                "--device",
                "cpu",
            ]
        )
        rows.append({"lines": n, "seconds": seconds, "texts_per_s": n / seconds, "peak_rss_mib": peak})
        print(f"  predict {n} lines: {n / seconds:.1f} texts/s (with start-up), peak RSS {peak} MiB", flush=True)
    return rows


def section_ray(lines: int) -> list[dict]:
    model = _ner_model()
    src = _input(lines)
    rows = []
    seconds, peak, _ = _sh(
        [
            sys.executable,
            "-m",
            "gplinker",
            "predict",
            "--model",
            str(model),
            "--input",
            str(src),
            "--output",
            str(RUNS / "single.jsonl"),
            "--device",
            "cpu",
        ]
    )
    rows.append({"run": "single process", "lines": lines, "seconds": seconds, "texts_per_s": lines / seconds})
    print(f"  single process: {lines / seconds:.1f} texts/s", flush=True)
    for actors in (1, 2):
        threads = 2 // actors
        seconds, peak, _ = _sh(
            [
                sys.executable,
                "-m",
                "gplinker",
                "predict",
                "--engine",
                "ray",
                "--model",
                str(model),
                "--input",
                str(src),
                "--output",
                str(RUNS / f"ray_{actors}"),
                "--actors",
                str(actors),
                "--threads-per-actor",
                str(threads),
            ],
            {"OMP_NUM_THREADS": str(threads)},
        )
        from bench.serve import same_record

        a = [json.loads(x) for x in (RUNS / "single.jsonl").read_text(encoding="utf-8").split("\n") if x]
        b = [json.loads(x) for x in (RUNS / f"ray_{actors}" / f"{src.stem}.jsonl").read_text(encoding="utf-8").split("\n") if x]
        exact, close = sum(x == y for x, y in zip(a, b)), sum(same_record(x, y) for x, y in zip(a, b))
        same = f"{len(b)} records for {len(a)}: {exact} byte-identical, {close} identical with scores within 1e-4"
        rows.append(
            {
                "run": f"Ray, {actors} actor(s) x {threads} thread(s)",
                "lines": lines,
                "seconds": seconds,
                "texts_per_s": lines / seconds,
                "identical_output": same,
            }
        )
        print(f"  ray {actors} actors: {lines / seconds:.1f} texts/s, {same}", flush=True)
    return rows


# ---- inference vs the Hugging Face pipeline -------------------------------------------------------------


def section_inference(repeats: int, threads: int = 2) -> list[dict]:
    import torch
    from transformers import AutoModelForTokenClassification, pipeline

    from gplinker.encoders import load_encoder, resolve_encoder
    from gplinker.tasks import load as load_model

    torch.set_num_threads(threads)
    ex = load_model(_ner_model(), device="cpu")
    _, tokenizer = load_encoder("minilm-l6")
    labels = ["O"] + [f"{p}-{lab}" for lab in ex.task.labels for p in ("B", "I")]
    hf = AutoModelForTokenClassification.from_pretrained(resolve_encoder("minilm-l6"), num_labels=len(labels)).eval()
    pipe = pipeline("token-classification", model=hf, tokenizer=tokenizer, aggregation_strategy="simple", device=-1)
    sents = _sentences()
    paragraphs = [" ".join(sents[k : k + 10]) for k in range(0, len(sents) - 10, 10)]
    rows = []
    for name, texts in (("sentences", sents[:256]), ("10-sentence paragraphs", paragraphs[:24])):
        g, h = [], []
        ex.predict(texts[:8]), pipe(texts[:8], batch_size=32)
        for _ in range(repeats):  # interleaved
            t0 = time.perf_counter()
            ex.predict(texts, batch_size=32)
            g.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            pipe(texts, batch_size=32)
            h.append(time.perf_counter() - t0)
        tokens = sum(len(tokenizer(t)["input_ids"]) for t in texts) / len(texts)
        row = {
            "texts": name,
            "n": len(texts),
            "mean_tokens": round(tokens),
            "gplinker_texts_per_s": len(texts) / statistics.median(g),
            "hf_pipeline_texts_per_s": len(texts) / statistics.median(h),
        }
        row["ratio"] = row["gplinker_texts_per_s"] / row["hf_pipeline_texts_per_s"]
        rows.append(row)
        print(
            f"  {name} (~{tokens:.0f} tokens): gplinker {row['gplinker_texts_per_s']:.1f} vs HF pipeline "
            f"{row['hf_pipeline_texts_per_s']:.1f} texts/s ({row['ratio']:.2f}x)",
            flush=True,
        )
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sections", default="train,predict,ray,inference")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--lines", default="10000,100000")
    ap.add_argument("--ray-lines", type=int, default=10000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the inference section")
    ap.add_argument("--out", default=str(ROOT / "docs" / "scaling"))
    ap.add_argument("--worker", choices=["train", "hf"], help=argparse.SUPPRESS)
    ap.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    ap.add_argument("--checkpoint", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--fused", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker == "train":
        train_worker(args)
        return 0
    if args.worker == "hf":
        hf_worker(args)
        return 0
    RUNS.mkdir(parents=True, exist_ok=True)
    previous = Path(args.out + ".json")
    results: dict = json.loads(previous.read_text()) if previous.is_file() else {}  # sections not run now are kept
    results.pop("machine", None)
    commands = results.pop("commands", {})
    sections = args.sections.split(",")
    for name in sections:
        commands[name] = f"python bench/scale.py {' '.join(sys.argv[1:])}"
    if "train" in sections:
        print("training steps", flush=True)
        results["train"] = section_train(args.steps, args.repeats)
    if "predict" in sections:
        print("predict", flush=True)
        results["predict"] = section_predict([int(x) for x in args.lines.split(",")])
    if "ray" in sections:
        print("ray", flush=True)
        results["ray"] = section_ray(args.ray_lines)
    if "inference" in sections:
        print("inference", flush=True)
        results["inference"] = section_inference(args.repeats, args.threads)
    import torch

    machine = f"{platform.machine()}, {os.cpu_count()} CPU threads, torch {torch.__version__}, CPU only"
    lines = (
        [
            "# Scaling (CPU)",
            "",
            f"Machine: {machine}. Each section's command (sections run separately keep the others' rows):",
            "",
        ]
        + [f"- {name}: `{cmd}`" for name, cmd in commands.items()]
        + [""]
    )
    if "train" in results:
        lines += [
            "## Training steps",
            "",
            f"CLUENER, me5-small with the word embeddings frozen, windows of 64 tokens, global batch "
            f"16, {args.steps} steps each, one run after the other; {args.repeats} interleaved rounds, the median.",
            "",
            "| run | steps/s | vs the HF token-classification loop |",
            "|---|---:|---:|",
        ]
        lines += [f"| {r['run']} | {r['steps_per_s']:.3f} | {r['vs_hf']:.2f}x |" for r in results["train"]]
    if "predict" in results:
        lines += [
            "",
            "## predict: throughput and memory",
            "",
            "`gplinker predict` (NER, minilm-l6, CoNLL04 dev sentences "
            "repeated), one process, start-up and model loading included.",
            "",
            "| lines | seconds | texts/s | peak RSS MiB |",
            "|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r['lines']} | {r['seconds']:.1f} | {r['texts_per_s']:.1f} | {r['peak_rss_mib']} |" for r in results["predict"]
        ]
    if "ray" in results:
        lines += [
            "",
            "## Ray Data",
            "",
            "Same input and model; Ray starts locally (2 CPUs).",
            "",
            "| run | lines | seconds | texts/s | output vs single process |",
            "|---|---:|---:|---:|---|",
        ]
        lines += [
            f"| {r['run']} | {r['lines']} | {r['seconds']:.1f} | {r['texts_per_s']:.1f} | {r.get('identical_output', '-')} |"
            for r in results["ray"]
        ]
    if "inference" in results:
        lines += [
            "",
            "## Offline NER inference vs the Hugging Face token-classification pipeline",
            "",
            "Same encoder (minilm-l6), texts and batch size (32), medians of interleaved repeats.",
            "",
            "| texts | n | mean tokens | gplinker texts/s | HF pipeline texts/s | ratio |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r['texts']} | {r['n']} | {r['mean_tokens']} | {r['gplinker_texts_per_s']:.1f} | "
            f"{r['hf_pipeline_texts_per_s']:.1f} | {r['ratio']:.2f}x |"
            for r in results["inference"]
        ]
    lines += [
        "",
        "## Reading these numbers",
        "",
        "- All rows share 2 CPU cores. Two gloo processes on the same two cores do not add compute, they add a "
        "gradient all-reduce per step: data-parallel training pays off with more devices (GPUs, nodes).",
        "- A checkpoint holds the weights that train, their Adam state and every random state (258 MB here: 86 MB of weights, 172 MB of Adam state); "
        "the frozen word embeddings (384 MB) are written once and hard-linked into later checkpoints while they "
        "are unchanged. Training takes host copies at the step and a background thread writes them (atomically) "
        "while the next steps run: every 10 steps is a worst case; every few hundred steps it is noise.",
        "- 'all on' is what a multi-process run would use, squeezed onto 2 shared cores: two processes add a "
        "gradient all-reduce and no compute here.",
        "- gplinker's AdamW is the fused implementation (one kernel per step; HF Trainer's default on torch >= 2.8); "
        "the plain HF loop row uses torch's default AdamW, as the loop the issue measured did, and a second HF row "
        "uses the fused one.",
        "- Ray starts a local cluster (seconds) and moves batches through its object store: on one machine it is "
        "for the same code to run on a cluster, not to beat a single process on the same cores.",
        "- Flat memory: peak RSS grows by a few percent when the input grows tenfold (predict reads, predicts and "
        "writes in chunks).",
    ]
    Path(args.out + ".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    Path(args.out + ".json").write_text(
        json.dumps({"machine": machine, "commands": commands, **results}, indent=2), encoding="utf-8"
    )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
