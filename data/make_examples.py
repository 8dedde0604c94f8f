"""Writes the small NER examples shipped in data/ner (hand-written templates, fixed seed).

Run ``python data/make_examples.py`` to regenerate; the files are committed.
One canonical JSONL pair per language plus the same Chinese sentences in the CLUENER, CMeEE-style
and BMES formats, and the English ones in SpERT and GENIA token JSON.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent / "ner"

ZH_PEOPLE = ["张伟", "李娜", "王芳", "刘洋", "陈静", "杨帆", "赵磊", "黄蕾", "周杰", "吴敏"]
ZH_PLACES = ["北京", "上海", "杭州", "成都", "武汉", "西安", "南京", "广州"]
ZH_ORGS = ["华为公司", "阿里巴巴", "腾讯公司", "中国银行", "小米公司", "百度公司"]
ZH_TEMPLATES = [
    "{PER}在{LOC}的{ORG}工作了三年。",
    "{ORG}宣布{PER}将出任{LOC}分公司总经理。",
    "记者从{LOC}获悉，{PER}昨天访问了{ORG}。",
    "{PER}说：{LOC}是一座美丽的城市，{PER}很喜欢{LOC}。",
    "{PER}和{PER2}一起从{LOC}出发前往{LOC2}。",
    "今年{ORG}在{LOC}的营收增长了百分之十。",
]
ZH_MED = [  # (text, [(start, end_exclusive, type)]) nested on purpose: body part inside disease
    ("患者左肺癌术后复查。", [(2, 5, "dis"), (2, 4, "bod")]),
    ("胃溃疡患者常有上腹痛。", [(0, 3, "dis"), (0, 1, "bod"), (7, 10, "sym"), (7, 9, "bod")]),
    ("首选头颅CT检查颅内出血。", [(2, 6, "pro"), (2, 4, "bod"), (8, 12, "dis"), (8, 10, "bod")]),
    ("肝硬化可引起腹水。", [(0, 3, "dis"), (0, 1, "bod"), (6, 8, "sym")]),
    ("口服阿莫西林治疗中耳炎。", [(2, 6, "dru"), (8, 11, "dis"), (8, 10, "bod")]),
]

EN_PEOPLE = ["John Smith", "Mary Johnson", "Ahmed Khan", "Li Wei", "Anna Petrova", "Carlos Ruiz"]
EN_PLACES = ["Boston", "New York", "Paris", "Nairobi", "Tokyo", "Lima"]
EN_ORGS = ["Acme Corporation", "the United Nations", "Globex", "Reuters", "Stanford University"]
EN_TEMPLATES = [
    "{PER} works for {ORG} in {LOC} .",
    "{ORG} said on Monday that {PER} had moved to {LOC} .",
    "In {LOC} , {PER} met {PER2} at the offices of {ORG} .",
    "{PER} left {LOC} for {LOC2} , where {PER} joined {ORG} .",
    "Shares of {ORG} rose after {PER} spoke in {LOC} .",
]
LABEL_ZH = {"PER": "name", "PER2": "name", "LOC": "address", "LOC2": "address", "ORG": "company"}


def fill(template: str, rng: random.Random, people, places, orgs, sep: str) -> tuple[str, list[tuple[int, int, str]]]:
    """Fill slots left to right; a slot used twice repeats the same string (repeated-string case)."""
    choice = {"PER": rng.choice(people), "LOC": rng.choice(places), "ORG": rng.choice(orgs)}
    choice["PER2"] = rng.choice([p for p in people if p != choice["PER"]])
    choice["LOC2"] = rng.choice([p for p in places if p != choice["LOC"]])
    text, spans, k = "", [], 0
    while k < len(template):
        if template[k] == "{":
            close = template.index("}", k)
            slot = template[k + 1 : close]
            spans.append((len(text), len(text) + len(choice[slot]), slot.rstrip("2")))
            text += choice[slot]
            k = close + 1
        else:
            text += template[k]
            k += 1
    return text, spans


def canonical(text: str, spans, labels=None) -> dict:
    ents = [{"start": s, "end": e, "label": (labels or {}).get(l, l), "text": text[s:e]} for s, e, l in spans]
    return {"text": text, "entities": ents}


def write_jsonl(path: Path, records) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


def main() -> None:
    HERE.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    zh = [fill(rng.choice(ZH_TEMPLATES), rng, ZH_PEOPLE, ZH_PLACES, ZH_ORGS, "") for _ in range(48)]
    en = [fill(rng.choice(EN_TEMPLATES), rng, EN_PEOPLE, EN_PLACES, EN_ORGS, " ") for _ in range(48)]
    for name, items, labels in (("zh", zh, LABEL_ZH), ("en", en, None)):
        recs = [canonical(t, s, labels) for t, s in items]
        write_jsonl(HERE / f"{name}_train.jsonl", recs[:36])
        write_jsonl(HERE / f"{name}_dev.jsonl", recs[36:])
    # CLUENER: {"text", "label": {type: {surface: [[start, end_inclusive]]}}}
    lines = []
    for t, spans in zh[:12]:
        lab: dict = {}
        for s, e, l in spans:
            lab.setdefault(LABEL_ZH[l], {}).setdefault(t[s:e], []).append([s, e - 1])
        lines.append({"text": t, "label": lab})
    write_jsonl(HERE / "cluener_sample.json", lines)
    # CMeEE: JSON array with inclusive end_idx; nested medical entities
    arr = [{"text": t, "entities": [{"start_idx": s, "end_idx": e - 1, "type": ty, "entity": t[s:e]} for s, e, ty in ents]}
           for t, ents in ZH_MED]
    (HERE / "cmeee_sample.json").write_text(json.dumps(arr, ensure_ascii=False, indent=1), encoding="utf-8")
    # BMES, one character per line (Resume style)
    out = []
    for t, spans in zh[:12]:
        tags = ["O"] * len(t)
        for s, e, l in spans:
            lab = LABEL_ZH[l].upper()
            if e - s == 1:
                tags[s] = f"S-{lab}"
            else:
                tags[s], tags[e - 1] = f"B-{lab}", f"E-{lab}"
                for k in range(s + 1, e - 1):
                    tags[k] = f"M-{lab}"
        out.append("\n".join(f"{c} {g}" for c, g in zip(t, tags)))
    (HERE / "resume_sample.char.bmes").write_text("\n\n".join(out) + "\n", encoding="utf-8")
    # SpERT / GENIA: tokens (the English templates are space-tokenised), token offsets end exclusive
    spert, genia = [], []
    for t, spans in en[:12]:
        tokens = t.split(" ")
        starts = [sum(len(x) + 1 for x in tokens[:k]) for k in range(len(tokens))]
        ents = []
        for s, e, l in spans:
            a = starts.index(s)
            b = max(k for k in range(len(tokens)) if starts[k] < e) + 1
            ents.append({"type": l, "start": a, "end": b})
        spert.append({"tokens": tokens, "entities": ents, "relations": []})
        genia.append({"tokens": tokens, "entity_mentions": [{"start": x["start"], "end": x["end"], "entity_type": x["type"],
                                                             "text": " ".join(tokens[x["start"]:x["end"]])} for x in ents]})
    (HERE / "spert_sample.json").write_text(json.dumps(spert, ensure_ascii=False), encoding="utf-8")
    write_jsonl(HERE / "genia_sample.jsonlines", genia)
    # Plain text for `run.py predict`
    (HERE / "predict_en.txt").write_text("\n".join(t for t, _ in en[36:42]) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
