"""Writes the small relation examples shipped in data/relation (hand-written templates, fixed seed).

Run ``python data/make_relation_examples.py`` to regenerate; the files are committed.
English sentences in SpERT token JSON (typed entities, CoNLL04-style labels) and canonical JSONL;
Chinese sentences in DuIE/CMeIE ``spo_list`` JSONL; English WebNLG*-style CasRel JSON (no offsets).
"""
from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent / "relation"

PEOPLE = ["John Smith", "Mary Johnson", "Ahmed Khan", "Anna Petrova", "Carlos Ruiz", "Li Wei"]
PLACES = ["Boston", "Paris", "Nairobi", "Tokyo", "Lima", "Oslo"]
ORGS = ["Acme", "Globex", "Reuters", "Initech", "Umbrella"]
# Slots: P/P2 people, L/L2 places, O org. Relations as (subject slot, predicate, object slot).
TEMPLATES = [
    ("{P} works for {O} in {L} .", [("P", "Work_For", "O"), ("P", "Live_In", "L"), ("O", "OrgBased_In", "L")]),
    ("{L} is where {P} lives .", [("P", "Live_In", "L")]),  # subject follows its object
    ("{O} , based in {L} , hired {P} and {P2} .", [("O", "OrgBased_In", "L"), ("P", "Work_For", "O"), ("P2", "Work_For", "O")]),
    ("{P} lives in {L} and works in {L} .", [("P", "Live_In", "L"), ("P", "Work_In", "L")]),  # same pair, two predicates
    ("{P} met {P2} in {L2} , far from {L} .", [("P", "Live_In", "L"), ("P2", "Live_In", "L2")]),
]
ZH = [  # (text, [(subject, subject_type, predicate, object, object_type)])
    ("北京大学位于北京。", [("北京大学", "机构", "位于", "北京", "地点")]),  # nested entities
    ("张伟出生在上海，张伟在北京大学工作。", [("张伟", "人物", "出生地", "上海", "地点"), ("张伟", "人物", "就职于", "北京大学", "机构")]),
    ("李娜是王芳的老师，也是王芳的邻居。", [("李娜", "人物", "老师", "王芳", "人物"), ("李娜", "人物", "邻居", "王芳", "人物")]),
    ("肝硬化可引起腹水，腹水是肝硬化的常见并发症。", [("肝硬化", "疾病", "并发症", "腹水", "症状")]),
    ("杭州的阿里巴巴创立于杭州。", [("阿里巴巴", "机构", "总部", "杭州", "地点")]),
    ("胃溃疡的典型症状是上腹痛。", [("胃溃疡", "疾病", "临床表现", "上腹痛", "症状")]),
]


def fill(template, rels, rng):
    choice = {"P": rng.choice(PEOPLE), "L": rng.choice(PLACES), "O": rng.choice(ORGS)}
    choice["P2"] = rng.choice([p for p in PEOPLE if p != choice["P"]])
    choice["L2"] = rng.choice([p for p in PLACES if p != choice["L"]])
    text, slots, k = "", {}, 0
    while k < len(template):
        if template[k] == "{":
            close = template.index("}", k)
            slot = template[k + 1 : close]
            slots.setdefault(slot, (len(text), len(text) + len(choice[slot])))  # first mention is the entity
            text += choice[slot]
            k = close + 1
        else:
            text += template[k]
            k += 1
    label = {"P": "Peop", "P2": "Peop", "L": "Loc", "L2": "Loc", "O": "Org"}
    ents = {slot: (s, e, label[slot]) for slot, (s, e) in slots.items()}
    triples = [(ents[a], p, ents[b]) for a, p, b in rels]
    return text, list(ents.values()), triples


def span_json(text, s, e, label):
    return {"start": s, "end": e, "label": label, "text": text[s:e]}


def main() -> None:
    HERE.mkdir(parents=True, exist_ok=True)
    rng = random.Random(11)
    items = [fill(*rng.choice(TEMPLATES), rng) for _ in range(40)]
    canon = [{"text": t, "entities": [span_json(t, *x) for x in ents],
              "relations": [{"head": span_json(t, *h), "label": p, "tail": span_json(t, *o)} for h, p, o in trip]}
             for t, ents, trip in items]
    for name, part in (("en_train.jsonl", canon[:30]), ("en_dev.jsonl", canon[30:])):
        (HERE / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part), encoding="utf-8")
    spert = []
    for t, ents, trip in items[:12]:
        tokens = t.split(" ")
        starts = [sum(len(x) + 1 for x in tokens[:k]) for k in range(len(tokens))]
        tok = lambda s, e: (starts.index(s), max(k for k in range(len(tokens)) if starts[k] < e) + 1)  # noqa: E731
        ent_list = [{"type": lab, "start": tok(s, e)[0], "end": tok(s, e)[1]} for s, e, lab in ents]
        index = {(s, e): k for k, (s, e, _) in enumerate(ents)}
        rels = [{"type": p, "head": index[h[:2]], "tail": index[o[:2]]} for h, p, o in trip]
        spert.append({"tokens": tokens, "entities": ent_list, "relations": rels, "orig_id": len(spert)})
    (HERE / "spert_sample.json").write_text(json.dumps(spert, ensure_ascii=False), encoding="utf-8")
    casrel = [{"text": t, "triple_list": [[t[h[0]:h[1]].split(" ")[-1], p, t[o[0]:o[1]].split(" ")[-1]] for h, p, o in trip]}
              for t, _, trip in items[:12]]  # WebNLG*: the last word of each entity
    (HERE / "webnlg_sample.json").write_text(json.dumps(casrel, ensure_ascii=False, indent=1), encoding="utf-8")
    duie = [{"text": t, "spo_list": [{"subject": s, "subject_type": st, "predicate": p, "object": {"@value": o},
                                       "object_type": {"@value": ot}} for s, st, p, o, ot in spo]} for t, spo in ZH]
    (HERE / "duie_sample.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in duie), encoding="utf-8")


if __name__ == "__main__":
    main()
