#!/usr/bin/env python
"""Why the relation link heads under-fire: ablations of the link heads, and where gold links are missed.

    python bench/link_recall.py train VARIANT [--steps 400] [--lr LR] [--seed 42] [--out /tmp/link_recall]
    python bench/link_recall.py diagnose MODEL [--variant VARIANT]
    python bench/link_recall.py decode MODEL

``train`` trains the CoNLL04 relation model of docs/results.md (minilm-l6, batch 16, seed 42) with
one change to the link heads or the recipe (``--lr`` and ``--seed`` combine a variant with another
encoder learning rate or seed), then prints its dev scores:

- ``base``: as shipped (Efficient GlobalPointer links, no RoPE, no triangle mask, lr 1e-4);
- ``standard-links``: per-predicate q/k projections for the links (GlobalPointer), not a shared q·k;
- ``link-loss-x3``: the link heads' share of the loss tripled;
- ``link-prior-2``: the link cells start near logit -2 instead of -8 (the initial prior);
- ``rope-links``: RoPE on the link heads (relative position; ``train --link-rope``);
- ``positives-weighted-links``: each link channel's positive term weighted by its number of
  positives (a channel with K gold links gets K times the push a lone link gets);
- ``positives-weighted-all``: the same on every head;
- ``head-lr-3e-3``: the heads' learning rate 3e-3 (1e-3);
- ``lr-3e-4``: the encoder's learning rate 3e-4 (1e-4).

``diagnose`` reports, on CoNLL04 dev, which gold links fire (head-head and tail-tail logits above
0) by the number of triples in the sentence, the subject-object distance and the sentence length,
and whether a missed link fires for another predicate or in the other direction.

``decode`` re-decodes a trained model's dev cells with three other rules and prints strict triple
P / R / F1 for each at link thresholds 0, -0.5, -1: a triple when the *mean* (not the min) of its
head and tail link logits clears the threshold; spans down to an entity logit of -0.5 / -1 / -2 as
triple candidates; and, as a filter, only the (subject type, predicate, object type) signatures
seen in the training data.
"""

from __future__ import annotations

import argparse
import collections
import inspect
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "datasets" / "conll04"
VARIANTS = (
    "base",
    "standard-links",
    "link-loss-x3",
    "link-prior-2",
    "rope-links",
    "positives-weighted-links",
    "positives-weighted-all",
    "head-lr-3e-3",
    "lr-3e-4",
)


def is_link(use_rope: bool, tril_mask: bool) -> bool:
    return not use_rope and not tril_mask  # the relation task's link heads (gplinker/tasks/relation.py)


def patch(variant: str) -> None:
    """Change the library for ``variant`` (this process only)."""
    import torch

    import gplinker.factorized as fl
    import gplinker.heads as heads
    import gplinker.model as model

    build = model.build_head

    def build_head(kind, hidden, n, head_size=64, use_rope=True, tril_mask=True, groups=()):
        link = is_link(use_rope, tril_mask)
        if link and variant == "standard-links":
            kind = "standard"
        head = build(kind, hidden, n, head_size, use_rope, tril_mask, groups)
        if link and variant == "link-prior-2":
            with torch.no_grad():
                head.q_dense.bias.fill_(-2.0)
        return head

    model.build_head = build_head
    if variant == "link-loss-x3":

        def training_loss(self, input_ids, attention_mask, span_mask, labels, factorized=True):
            hidden = self.encode(input_ids, attention_mask)  # (B, n, D)
            parts = {n: h.loss(hidden, span_mask, labels[n], factorized) for n, h in self.heads.items()}
            total = parts["entities"] + 3.0 * (parts["heads"] + parts["tails"])
            return total, {k: v.detach() for k, v in parts.items()}

        model.GPLinkerModel.training_loss = training_loss
    if variant.startswith("positives-weighted"):
        src = inspect.getsource(fl.factorized_span_loss).replace("def factorized_span_loss(", "def weighted(")
        src = src.replace("(neg_term + pos_term)", "(neg_term + pos_term * real.sum(-1).clamp_min(1))")
        space = dict(vars(fl))
        exec(src, space)  # the library's loss with the positive term weighted by the positives' count

        def loss(self, hidden, mask, labels, factorized=True):
            fn = space["weighted"] if variant.endswith("all") or is_link(self.use_rope, self.tril_mask) else None
            return (fn or fl.factorized_span_loss)(*self.factors(hidden), mask, labels, self.tril_mask)

        heads.EfficientGlobalPointer.loss = loss


def train(variant: str, steps: int, out: Path, lr: str | None = None, seed: int = 42) -> int:
    patch(variant)
    from gplinker.cli import main

    lr = lr or ("3e-4" if variant == "lr-3e-4" else "1e-4")
    head_lr = "3e-3" if variant == "head-lr-3e-3" else "1e-3"
    run = out / f"{variant}-lr{lr}-{steps}-seed{seed}"
    t0 = time.time()
    rc = main(
        ["train", "relation", "--train", str(DATA / "train.json"), "--dev", str(DATA / "dev.json"), "--encoder", "minilm-l6"]
        + ["--lr", lr, "--head-lr", head_lr, "--batch-size", "16", "--max-steps", str(steps), "--max-length", "128"]
        + ["--output", str(run), "--device", "cpu", "--seed", str(seed), "--overwrite"]
        + (["--link-rope"] if variant == "rope-links" else [])
    )
    if rc:
        return rc
    summary = json.loads((run / "train_summary.json").read_text())
    t = summary["best"]["metrics"]["triples"]
    print(
        f"{variant} (lr {lr}, {steps} steps, seed {seed}): triples P {t['precision']:.4f} R {t['recall']:.4f} F1 {t['f1']:.4f}, entities "
        f"{summary['best']['metrics']['entities']['f1']:.4f}, link threshold {summary['link_threshold']['chosen']}, "
        f"{time.time() - t0:.0f}s"
    )
    return 0


def diagnose(model_dir: str, variant: str) -> int:
    import torch

    torch.set_num_threads(1)
    patch(variant)  # a model trained with a patched head loads with the same patch
    from gplinker.tasks import default_registry, load

    ex = load(model_dir, "cpu")
    docs = default_registry()["relation"].read(DATA / "dev.json")
    cells = ex.document_cells([d.text for d in docs], 32, thresholds={"heads": -30.0, "tails": -30.0})
    fired: dict[tuple, list[int]] = collections.defaultdict(lambda: [0, 0])
    other = reverse = missed = 0
    for d, c in zip(docs, cells):
        head = {tuple(r): v for r, v in zip(c["heads"].rows.tolist(), c["heads"].logits)}
        tail = {tuple(r): v for r, v in zip(c["tails"].rows.tolist(), c["tails"].logits)}

        def fires(p, s, o):
            return head.get((p, s.start, o.start), -30) > 0 and tail.get((p, s.end, o.end), -30) > 0

        for r in d.relations:
            p = ex.task.predicate_index[r.label]
            ok = fires(p, r.head, r.tail)
            keys = (
                ("triples in the sentence", min(len(d.relations), 4)),
                ("subject-object distance (chars // 40)", min(abs(r.head.start - r.tail.start) // 40, 4)),
                ("sentence length (chars // 100)", min(len(d.text) // 100, 3)),
            )
            for key in keys:
                fired[key][0] += ok
                fired[key][1] += 1
            if not ok:
                missed += 1
                other += any(fires(q, r.head, r.tail) for q in range(len(ex.task.predicates)) if q != p)
                reverse += fires(p, r.tail, r.head)
    for key in sorted(fired, key=str):
        hit, n = fired[key]
        print(f"{key[0]} {key[1]}{'+' if key[1] == 4 and 'triples' in key[0] else ''}: {hit}/{n} gold links fire ({hit / n:.2f})")
    print(f"missed {missed}: {other} fire for another predicate, {reverse} in the other direction")
    return 0


def decode(model_dir: str) -> int:
    import torch

    from gplinker.metrics import score

    torch.set_num_threads(1)
    from gplinker.tasks import default_registry, load

    ex = load(model_dir, "cpu")
    reader = default_registry()["relation"]
    docs = reader.read(DATA / "dev.json")
    seen = {(r.head.label, r.label, r.tail.label) for d in reader.read(DATA / "train.json") for r in d.relations}
    cells = ex.document_cells([d.text for d in docs], 32, thresholds={"entities": -4.0, "heads": -30.0, "tails": -30.0})
    task = ex.task
    gold = [
        {(r.label, r.head.start, r.head.end, r.head.label, r.tail.start, r.tail.end, r.tail.label) for r in d.relations}
        for d in docs
    ]

    def triples(c, entity_threshold: float, link_threshold: float, rule: str, signatures: bool) -> set:
        e = c["entities"]
        spans = [(a, b, task.entity_labels[k]) for (k, a, b), v in zip(e.rows.tolist(), e.logits) if v > entity_threshold]
        head = {tuple(r): v for r, v in zip(c["heads"].rows.tolist(), c["heads"].logits)}
        tail = {tuple(r): v for r, v in zip(c["tails"].rows.tolist(), c["tails"].logits)}
        out = set()
        for s in spans:
            for o in spans:
                for p, name in enumerate(task.predicates):
                    h, t = head.get((p, s[0], o[0]), -30.0), tail.get((p, s[1], o[1]), -30.0)
                    if (min(h, t) if rule == "min" else (h + t) / 2) > link_threshold and (
                        not signatures or (s[2], name, o[2]) in seen
                    ):
                        out.add((name, s[0], s[1], s[2], o[0], o[1], o[2]))
        return out

    rules = [("as shipped (min, spans above 0)", 0.0, "min", False), ("mean of the two link logits", 0.0, "mean", False)]
    rules += [(f"spans above {t}", t, "min", False) for t in (-0.5, -1.0, -2.0)]
    rules += [("training-data type signatures only", 0.0, "min", True)]
    print("| rule | link threshold 0 | -0.5 | -1 |\n|---|---|---|---|")
    for name, entity_threshold, rule, signatures in rules:
        row = []
        for link_threshold in (0.0, -0.5, -1.0):
            m = score(gold, [triples(c, entity_threshold, link_threshold, rule, signatures) for c in cells])
            row.append(f"{m['precision']:.4f} / {m['recall']:.4f} / **{m['f1']:.4f}**")
        print(f"| {name} | " + " | ".join(row) + " |")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("variant", choices=VARIANTS)
    t.add_argument("--steps", type=int, default=400)
    t.add_argument("--lr", help="the encoder's learning rate (default: 3e-4 for lr-3e-4, else 1e-4)")
    t.add_argument("--seed", type=int, default=42)
    t.add_argument("--out", default="/tmp/link_recall")
    d = sub.add_parser("diagnose")
    d.add_argument("model")
    d.add_argument("--variant", choices=VARIANTS, default="base", help="the variant the model was trained with")
    sub.add_parser("decode").add_argument("model")
    args = p.parse_args()
    if args.command == "train":
        return train(args.variant, args.steps, Path(args.out), args.lr, args.seed)
    if args.command == "decode":
        return decode(args.model)
    return diagnose(args.model, args.variant)


if __name__ == "__main__":
    raise SystemExit(main())
