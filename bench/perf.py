#!/usr/bin/env python
"""Performance benchmarks: what the heads and loss add to a training step, sparse vs dense loss,
decoding vs a reference-style decoder, inference batching, and peak memory.

    python bench/perf.py [--quick] [--device cpu|cuda] [--out docs/performance.md]

Prints a table per section and writes it (with the machine described) to ``--out`` and JSON
beside it. Encoders are random BERTs of MiniLM-L6 size (hidden 384, 6 layers): timings do not
depend on the weights, so no package is needed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gplinker.losses import dense_span_loss, span_loss  # noqa: E402
from gplinker.model import GPLinkerModel  # noqa: E402
from gplinker.task import HeadSpec  # noqa: E402
from gplinker.tasks import load as load_model  # noqa: E402
from gplinker.tasks.event import events_from_graph  # noqa: E402
from gplinker.tasks.relation import link_pairs  # noqa: E402

SCHEMAS = {  # CLUENER-sized NER head; DuIE-sized relation heads (2 + 48 + 48 channels)
    "ner-10": [HeadSpec("entities", 10)],
    "rel-96": [HeadSpec("entities", 2), HeadSpec("heads", 48, False, False), HeadSpec("tails", 48, False, False)],
}


def triples_from_logits(entity_logits: np.ndarray, head_logits: np.ndarray, tail_logits: np.ndarray) -> list[set]:
    """Subject-object decoding straight from logits, per sample: (p, s_i, s_j, o_i, o_j) sets.

    ``entity_logits``: (B, 2, n, n) subject/object channels; link logits: (B, P, n, n). With few
    entities the link cells of every subject x object pair are gathered at once (cheaper than
    scanning the n x n link grids); with many, the positive link cells are joined by
    :func:`link_pairs`. Either way there is no Python loop over pairs.
    """
    out = []
    n = entity_logits.shape[-1]
    for e, hh, tt in zip(entity_logits, head_logits, tail_logits):
        ch, i, j = np.nonzero(e > 0)
        subj = np.column_stack([i[ch == 0], j[ch == 0]])  # (S, 2)
        obj = np.column_stack([i[ch == 1], j[ch == 1]])  # (O, 2)
        if len(subj) * len(obj) <= n * n // 4:
            si, oi = np.divmod(np.arange(len(subj) * len(obj)), len(obj)) if len(obj) else (np.zeros(0, int),) * 2
            ok = (hh[:, subj[si, 0], obj[oi, 0]] > 0) & (tt[:, subj[si, 1], obj[oi, 1]] > 0)  # (P, S*O)
            p, k = np.nonzero(ok)
            rows = np.column_stack([p, subj[si[k]], obj[oi[k]]])
        else:
            rows = link_pairs(subj, obj, np.argwhere(hh > 0), np.argwhere(tt > 0), n)
        out.append(set(map(tuple, rows.tolist())))
    return out


def encoder(device):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=30522,
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=1536,
        max_position_embeddings=512,
    )
    return BertModel(cfg, add_pooling_layer=False).to(device)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeat):
    fn()  # warm-up
    sync(device)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def timed_interleaved(fns, device, repeat):
    """Median seconds of each of ``fns``, run in turn ``repeat`` times after one warm-up each, so
    that drifts of the machine (frequency, other load) hit all of them alike."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeat):
        for k, fn in enumerate(fns):
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[k].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def batch_for(b, n, specs, device, positives=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 30000, (b, n), generator=g)
    att = torch.ones(b, n, dtype=torch.long)
    span = torch.ones(b, n, dtype=torch.bool)
    span[:, 0] = span[:, -1] = False
    labels = {}
    for s in specs:
        i = torch.randint(1, n - 2, (b, s.channels, positives), generator=g)
        j = (i + torch.randint(0, 4, i.shape, generator=g)).clamp(max=n - 2)
        labels[s.name] = i * n + j
    return {k: v.to(device) for k, v in {"input_ids": ids, "attention_mask": att, "span_mask": span}.items()}, {
        k: v.to(device) for k, v in labels.items()
    }


# ---- 1. training step: encoder only vs encoder + heads + loss ---------------------------------
def train_step_table(device, lengths, repeat):
    rows = []
    enc = encoder(device)
    for schema, specs in SCHEMAS.items():
        model = GPLinkerModel(enc, specs, "efficient", 64).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
        for n in lengths:
            b = 16 if n < 256 else 8
            batch, labels = batch_for(b, n, specs, device)

            def enc_only():
                h = model.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
                h.float().pow(2).mean().backward()
                opt.step()
                opt.zero_grad(set_to_none=True)

            def full(factorized):
                def step():
                    loss, _ = model.training_loss(**batch, labels=labels, factorized=factorized)
                    loss.backward()
                    opt.step()
                    opt.zero_grad(set_to_none=True)

                return step

            t_enc, t_mat, t_fac = timed_interleaved([enc_only, full(False), full(True)], device, repeat)
            rows.append(
                {
                    "schema": schema,
                    "n": n,
                    "batch": b,
                    "encoder_s": t_enc,
                    "materialised_s": t_mat,
                    "factorised_s": t_fac,
                    "overhead_materialised": t_mat / t_enc - 1,
                    "overhead_factorised": t_fac / t_enc - 1,
                }
            )
            print(
                f"  train step {schema} n={n}: encoder {t_enc:.3f}s, +heads materialised {t_mat / t_enc - 1:+.1%}, "
                f"factorised {t_fac / t_enc - 1:+.1%}",
                flush=True,
            )
    return rows


# ---- 2 and 5: loss and training-step memory, each in a fresh process --------------------------
def _rss_mib(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak():
    """Reset the process's peak RSS (Linux clear_refs 5) so the next peak is the step's own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_child(kind, n, h, b, queue):
    torch.manual_seed(0)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if kind in ("sparse", "dense"):
        logits = torch.randn(b, h, n, n, requires_grad=True)
        _reset_peak()
        before = _rss_mib("VmRSS")
        t0 = time.perf_counter()
        if kind == "sparse":
            idx = torch.randint(1, n * n, (b, h, 3))
            span_loss(logits, idx).backward()
        else:
            tgt = torch.zeros(b, h, n, n)
            tgt.view(b, h, -1)[..., 1:4] = 1
            dense_span_loss(logits, tgt).backward()
        secs = time.perf_counter() - t0
    else:  # a training step with the heads, materialised or factorised
        specs = SCHEMAS["rel-96"]
        model = GPLinkerModel(encoder(torch.device("cpu")), specs, "efficient", 64)
        batch, labels = batch_for(b, n, specs, torch.device("cpu"))
        enc_only = kind == "encoder"
        _reset_peak()
        before = _rss_mib("VmRSS")
        t0 = time.perf_counter()
        if enc_only:
            model.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state.pow(
                2
            ).mean().backward()
        else:
            loss, _ = model.training_loss(**batch, labels=labels, factorized=kind == "factorised")
            loss.backward()
        secs = time.perf_counter() - t0
    queue.put((secs, _rss_mib("VmHWM") - before))  # MiB above the RSS before the step


def peak(kind, n, h, b):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_peak_child, args=(kind, n, h, b, q))
    p.start()
    secs, mib = q.get()
    p.join()
    return secs, mib


def cuda_peak(fn, device):
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t0, (torch.cuda.max_memory_allocated(device) - base) / 2**20


def loss_table(device, quick):
    rows = []
    for n, h, b in [(128, 96, 8)] if quick else [(128, 96, 8), (256, 96, 8)]:
        for kind in ("sparse", "dense"):
            if device.type == "cuda":
                logits = torch.randn(b, h, n, n, device=device, requires_grad=True)
                idx = torch.randint(1, n * n, (b, h, 3), device=device)
                tgt = torch.zeros(b, h, n, n, device=device)
                tgt.view(b, h, -1)[..., 1:4] = 1
                fn = (
                    (lambda: span_loss(logits, idx).backward())
                    if kind == "sparse"
                    else (lambda: dense_span_loss(logits, tgt).backward())
                )
                fn()
                secs, mib = cuda_peak(fn, device)
            else:
                secs, mib = peak(kind, n, h, b)
            rows.append({"loss": kind, "n": n, "channels": h, "batch": b, "seconds": secs, "peak_mib": mib})
            print(f"  loss {kind} n={n} H={h}: {secs:.3f}s, peak +{mib:.0f} MiB", flush=True)
    return rows


def memory_table(device):
    rows = []
    n, b = 512, 8
    for kind in ("encoder", "materialised", "factorised"):
        if device.type == "cuda":
            specs = SCHEMAS["rel-96"]
            model = GPLinkerModel(encoder(device), specs, "efficient", 64).to(device)
            batch, labels = batch_for(b, n, specs, device)

            def fn():
                if kind == "encoder":
                    model.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state.pow(
                        2
                    ).mean().backward()
                else:
                    model.training_loss(**batch, labels=labels, factorized=kind == "factorised")[0].backward()
                model.zero_grad(set_to_none=True)

            fn()
            secs, mib = cuda_peak(fn, device)
        else:
            secs, mib = peak(kind, n, 96, b)
        rows.append({"step": kind, "n": n, "batch": b, "channels": 96, "seconds": secs, "peak_mib": mib})
        print(f"  train step memory {kind}: {secs:.2f}s, peak +{mib:.0f} MiB", flush=True)
    return rows


# ---- 3. decoding vs a reference-style decoder ----------------------------------------------------
def reference_decode(ent, head, tail):
    """The original scripts' decoder: per sample, np.where over entities, then a Python loop over
    subject x object pairs with np.where over predicates for each."""
    out = []
    for e, hh, tt in zip(ent, head, tail):
        subjects, objects = set(), set()
        for lab, i, j in zip(*np.where(e > 0)):
            (subjects if lab == 0 else objects).add((i, j))
        spoes = set()
        for sh, st in subjects:
            for oh, ot in objects:
                ps = set(np.where(hh[:, sh, oh] > 0)[0]) & set(np.where(tt[:, st, ot] > 0)[0])
                for p in ps:
                    spoes.add((int(p), int(sh), int(st), int(oh), int(ot)))
        out.append(spoes)
    return out


def gplinker_decode(ent, head, tail):
    return triples_from_logits(ent, head, tail)


def decode_logits(b, n, p, fire, seed):
    rng = np.random.default_rng(seed)
    ent = np.full((b, 2, n, n), -5.0, np.float32)
    head = np.full((b, p, n, n), -5.0, np.float32)
    tail = np.full((b, p, n, n), -5.0, np.float32)
    iu = np.triu_indices(n)
    for k in range(b):
        if fire == "trained":
            for _ in range(3):
                s, o, pr = rng.integers(1, n - 4, 2), rng.integers(1, n - 4, 2), rng.integers(0, p)
                ent[k, 0, s[0], s[0] + 2] = ent[k, 1, o[0], o[0] + 1] = 5
                head[k, pr, s[0], o[0]] = tail[k, pr, s[0] + 2, o[0] + 1] = 5
        else:  # early training: a fraction of every head fires
            for arr, frac in ((ent, fire), (head, fire / 4), (tail, fire / 4)):
                for c in range(arr.shape[1]):
                    if arr is ent:
                        sel = rng.random(len(iu[0])) < frac
                        arr[k, c, iu[0][sel], iu[1][sel]] = 1
                    else:
                        arr[k, c][rng.random((n, n)) < frac] = 1
    return ent, head, tail


def decode_table(quick):
    rows = []
    cases = [("trained", 8, 128, 48, "trained"), ("early", 2, 96 if quick else 128, 48, 0.08)]
    for name, b, n, p, fire in cases:
        ent, head, tail = decode_logits(b, n, p, fire, 0)
        ref, got = reference_decode(ent, head, tail), gplinker_decode(ent, head, tail)
        reps = 5 if name == "trained" else 1
        t_ref = timed(lambda: reference_decode(ent, head, tail), torch.device("cpu"), reps)
        t_gp = timed(lambda: gplinker_decode(ent, head, tail), torch.device("cpu"), reps)
        same = ref == got
        n_ent = int((ent > 0).sum())
        rows.append(
            {
                "case": name,
                "batch": b,
                "n": n,
                "predicates": p,
                "positive_entity_cells": n_ent,
                "triples": sum(map(len, ref)),
                "reference_s": t_ref,
                "gplinker_s": t_gp,
                "speedup": t_ref / t_gp,
                "identical": same,
            }
        )
        print(
            f"  decode {name}: reference {t_ref:.3f}s, gplinker {t_gp:.4f}s ({t_ref / t_gp:.0f}x), identical={same}", flush=True
        )
    return rows


def reference_events(arg, head, tail, labels):
    """The original event script's decoder: per sample, np.where over the argument head, a Python
    loop over all argument pairs reading the two link grids, then maximal cliques per event type."""
    import networkx as nx

    out = []
    for a, hh, tt in zip(arg, head, tail):
        argus = sorted({(*labels[c], int(i), int(j)) for c, i, j in zip(*np.where(a > 0))})
        links = set()
        for x, (_, _, h1, t1) in enumerate(argus):
            for _, _, h2, t2 in argus[x + 1 :]:
                if hh[0, min(h1, h2), max(h1, h2)] > 0 and tt[0, min(t1, t2), max(t1, t2)] > 0:
                    links.add((h1, t1, h2, t2))
                    links.add((h2, t2, h1, t1))
        events = set()
        for etype in sorted({x[0] for x in argus}):
            sub = [x for x in argus if x[0] == etype]
            g = nx.Graph()
            g.add_nodes_from(sub)
            g.add_edges_from((u, v) for x, u in enumerate(sub) for v in sub[x + 1 :] if (u[2], u[3], v[2], v[3]) in links)
            events.update((etype, frozenset((r, i, j) for _, r, i, j in c)) for c in nx.find_cliques(g))
        out.append(events)
    return out


def gplinker_events(arg, head, tail, labels):
    """gplinker's path: one scan of the whole batch for positive cells (as ``window_cells`` does),
    rows split per sample, then span graphs per event type."""
    b = len(arg)
    cells = [np.argwhere(x > 0) for x in (arg, head, tail)]  # (N, 4) rows (b, c, i, j), sorted by b
    bounds = [np.searchsorted(c[:, 0], np.arange(b + 1)) for c in cells]
    out = []
    for k in range(b):
        a, hh, tt = (c[bd[k] : bd[k + 1]] for c, bd in zip(cells, bounds))
        args = [(*labels[c], i, j) for c, i, j in a[:, 1:].tolist()]
        out.append(set(events_from_graph(args, hh[:, 2:], tt[:, 2:])))
    return out


def event_logits(b, n, types, roles, events, args_per_event, link_noise, seed):
    """Argument and link logits for ``events`` events per sample, every argument its own span
    (so the argument graph of the reference and the span graph of gplinker coincide), plus
    ``link_noise``: the fraction of other link cells firing, as early in training."""
    rng = np.random.default_rng(seed)
    arg = np.full((b, types * roles, n, n), -5.0, np.float32)
    head = np.full((b, 1, n, n), -5.0, np.float32)
    tail = np.full((b, 1, n, n), -5.0, np.float32)
    for k in range(b):
        starts = rng.permutation(np.arange(1, n - 3))[: events * args_per_event]
        for e in range(events):
            et = int(rng.integers(0, types))
            spans = [(int(s), int(s) + int(rng.integers(0, 3))) for s in starts[e * args_per_event : (e + 1) * args_per_event]]
            for r, (i, j) in enumerate(spans):
                arg[k, et * roles + r % roles, i, j] = 5
            for x, (i1, j1) in enumerate(spans):
                for i2, j2 in spans[x + 1 :]:
                    head[k, 0, min(i1, i2), max(i1, i2)] = tail[k, 0, min(j1, j2), max(j1, j2)] = 5
        if link_noise:
            iu = np.triu_indices(n)
            for grid in (head, tail):
                sel = rng.random(len(iu[0])) < link_noise
                grid[k, 0, iu[0][sel], iu[1][sel]] = 1
    return arg, head, tail


def event_decode_table(quick):
    rows = []
    types, roles = 10, 8  # FewFC-sized schema: 10 types, up to 8 roles
    labels = [(f"T{t}", f"R{r}") for t in range(types) for r in range(roles)]
    cases = [("trained", 8, 128, 2, 4, 0.0), ("busy", 4, 128, 12, 6, 0.2)]
    for name, b, n, events, per, noise in cases:
        arg, head, tail = event_logits(b, n, types, roles, events, per, noise, 0)
        ref, got = reference_events(arg, head, tail, labels), gplinker_events(arg, head, tail, labels)
        reps = 1 if quick else 3
        t_ref = timed(lambda: reference_events(arg, head, tail, labels), torch.device("cpu"), reps)
        t_gp = timed(lambda: gplinker_events(arg, head, tail, labels), torch.device("cpu"), reps)
        rows.append(
            {
                "case": name,
                "batch": b,
                "n": n,
                "argument_cells": int((arg > 0).sum()),
                "link_cells": int((head > 0).sum() + (tail > 0).sum()),
                "events": sum(map(len, ref)),
                "reference_s": t_ref,
                "gplinker_s": t_gp,
                "speedup": t_ref / t_gp,
                "identical": ref == got,
            }
        )
        print(
            f"  event decode {name}: reference {t_ref:.3f}s, gplinker {t_gp:.4f}s ({t_ref / t_gp:.1f}x), identical={ref == got}",
            flush=True,
        )
    return rows


# ---- 4. inference throughput ---------------------------------------------------------------------
def throughput_table(device, quick, model_dir=None, dev_file=None):
    from transformers import BertTokenizerFast

    from gplinker.extractor import Extractor, ModelSettings
    from gplinker.tasks.ner import NERTask

    rows = []
    texts = [json.loads(x)["text"] for x in (ROOT / "data" / "ner" / "en_train.jsonl").read_text().splitlines()]
    rng = np.random.default_rng(0)
    texts = [" ".join(t for _ in range(int(rng.integers(1, 6)))) for t in texts * (2 if quick else 6)]  # varied lengths
    tok_dir = ROOT / "runs" / "bench_tok"
    tok_dir.mkdir(parents=True, exist_ok=True)
    chars = sorted({c.lower() for t in texts for c in t if not c.isspace()})
    (tok_dir / "vocab.txt").write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + [f"##{c}" for c in chars])
    )
    tokenizer = BertTokenizerFast.from_pretrained(str(tok_dir))
    from gplinker.model import GPLinkerModel as M

    task = NERTask(["PER", "ORG", "LOC"] + [f"L{k}" for k in range(7)])
    model = M(encoder(device), task.head_specs(), "efficient", 64)
    with torch.no_grad():  # a trained head fires on few cells: bias the random one towards "no"
        model.heads["entities"].q_dense.bias.fill_(-8.0)
    ex = Extractor(model, tokenizer, task, ModelSettings(max_length=256, stride=64), device)
    windows = ex.featurizer.windows(texts)

    def naive():  # input order: each batch padded to its longest text
        ex.window_cells(windows, 32, sort=False)

    def sorted_():
        ex.window_cells(windows, 32)

    for name, fn in (("naive batching", naive), ("length-sorted batching", sorted_)):
        secs = timed(fn, device, 1 if quick else 2)
        rows.append({"ner inference": name, "texts": len(texts), "seconds": secs, "texts_per_s": len(texts) / secs})
        print(f"  inference {name}: {len(texts) / secs:.1f} texts/s", flush=True)
    f1 = f1_q = "n/a"
    if device.type == "cpu" and model_dir and Path(model_dir).is_dir():  # F1 change of int8 on a trained model
        from gplinker.tasks import default_registry

        trained = load_model(model_dir, device="cpu")
        gold = default_registry()["ner"].read(dev_file)
        f1 = round(trained.task.evaluate(gold, trained.predict(gold))["entities"]["f1"], 4)
        trained.model = torch.ao.quantization.quantize_dynamic(trained.model, {torch.nn.Linear}, dtype=torch.qint8)
        f1_q = round(trained.task.evaluate(gold, trained.predict(gold))["entities"]["f1"], 4)
        print(f"  int8 F1 on {dev_file}: {f1} -> {f1_q}", flush=True)
    for r in rows:
        r["dev_f1"] = f1
    if device.type == "cpu" and model_dir and Path(model_dir).is_dir():
        try:
            from gplinker.onnx_runtime import OnnxEncoder, use_onnx
        except ImportError:
            OnnxEncoder = None
        if OnnxEncoder is not None:  # ONNX Runtime encoder: exported from the trained model (same shape as the random one)
            from gplinker.tasks import default_registry

            trained = use_onnx(load_model(model_dir, device="cpu"), model_dir)
            gold = default_registry()["ner"].read(dev_file)
            f1_o = round(trained.task.evaluate(gold, trained.predict(gold))["entities"]["f1"], 4)
            saved = ex.model.encoder
            ex.model.encoder = trained.model.encoder
            secs = timed(lambda: ex.window_cells(windows, 32), device, 1 if quick else 2)
            ex.model.encoder = saved
            rows.append(
                {
                    "ner inference": "length-sorted + ONNX Runtime encoder",
                    "texts": len(texts),
                    "seconds": secs,
                    "texts_per_s": len(texts) / secs,
                    "dev_f1": f1_o,
                }
            )
            print(f"  inference ONNX Runtime: {len(texts) / secs:.1f} texts/s, F1 {f1_o}", flush=True)
    if device.type == "cpu":
        q = torch.ao.quantization.quantize_dynamic(ex.model, {torch.nn.Linear}, dtype=torch.qint8)
        exq = Extractor(q, tokenizer, task, ex.settings, device)
        secs = timed(lambda: exq.window_cells(windows, 32), device, 1 if quick else 2)
        rows.append(
            {
                "ner inference": "length-sorted + dynamic int8",
                "texts": len(texts),
                "seconds": secs,
                "texts_per_s": len(texts) / secs,
                "dev_f1": f1_q,
            }
        )
        print(f"  inference int8: {len(texts) / secs:.1f} texts/s", flush=True)
    return rows


def markdown(title, rows, fmt=None):
    if not rows:
        return ""
    cols = list(rows[0])
    out = [f"### {title}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for c in cols:
            v = r[c]
            if isinstance(v, float):
                v = (
                    f"{v:+.1%}"
                    if c.startswith("overhead")
                    else (f"{v:.2f}" if c in ("speedup",) else f"{v:.1f}" if c in ("texts_per_s", "peak_mib") else f"{v:.4f}")
                )
            cells.append(str(v))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer lengths and repeats")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default=str(ROOT / "docs" / "performance.md"))
    ap.add_argument(
        "--ner-model",
        default=str(ROOT / "runs" / "quickstart" / "ner" / "model"),
        help="a trained NER model for the F1 change of int8 quantization (quickstart's by default)",
    )
    ap.add_argument("--ner-dev", default=str(ROOT / "data" / "ner" / "en_dev.jsonl"))
    ap.add_argument("--repeat", type=int, default=None, help="timed repeats per training-step cell (median)")
    ap.add_argument("--lengths", default=None, help="comma-separated sequence lengths for the training-step table")
    ap.add_argument("--sections", default="train,loss,decode,throughput,memory")
    args = ap.parse_args()
    device = torch.device(args.device)
    sections = args.sections.split(",")
    machine = f"{platform.machine()}, {os.cpu_count()} CPU threads, torch {torch.__version__}" + (
        f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ", CPU only"
    )
    print(f"machine: {machine}", flush=True)
    results = {"machine": machine, "device": str(device)}
    lengths = [int(x) for x in args.lengths.split(",")] if args.lengths else ([64, 128] if args.quick else [64, 128, 256, 512])
    if "train" in sections:
        results["train_step"] = train_step_table(device, lengths, args.repeat or (3 if args.quick else 5))
    if "loss" in sections:
        results["loss"] = loss_table(device, args.quick)
    if "decode" in sections:
        results["decode"] = decode_table(args.quick)
        results["event_decode"] = event_decode_table(args.quick)
    if "throughput" in sections:
        results["throughput"] = throughput_table(device, args.quick, args.ner_model, args.ner_dev)
    if "memory" in sections:
        results["memory"] = memory_table(device)
    import shlex

    md = [
        f"# Performance ({device.type})",
        "",
        f"Machine: {machine}. Command: `{shlex.join(['python', 'bench/perf.py', *sys.argv[1:]])}`.",
        "",
    ]
    md.append(
        markdown(
            "1. Training step: what the heads and loss add to the encoder (MiniLM-L6 size; batch 16, 8 from n = 256; "
            "median of interleaved repeats)",
            results.get("train_step", []),
        )
    )
    md.append(markdown("2. Sparse vs dense multilabel loss (forward + backward on given logits)", results.get("loss", [])))
    md.append(
        markdown("3. Relation decoding: gplinker vs the reference scripts' decoder, same logits", results.get("decode", []))
    )
    md.append(
        markdown(
            "3b. Event decoding: gplinker vs the reference script's decoder (argument-pair loop), same logits, "
            "10 event types x 8 roles",
            results.get("event_decode", []),
        )
    )
    md.append(
        markdown(
            "4. Inference throughput (NER head, random MiniLM-size encoder, varied lengths; dev_f1: a trained "
            "model's entity F1 on --ner-dev with and without int8, when --ner-model exists)",
            results.get("throughput", []),
        )
    )
    md.append(markdown("5. Peak memory of a training step, n = 512, batch 8, 2 + 48 + 48 channels", results.get("memory", [])))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(md), encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
