"""Writes the small event examples shipped in data/event (hand-written, fixed seed).

Run ``python data/make_event_examples.py`` to regenerate; the files are committed. Chinese
financial events in FewFC and DuEE formats, English adverse-drug events in PHEE format (with nested
sub-arguments), and canonical JSONL train/dev files for the quick start and tests.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent / "event"

COMPANIES = ["华为公司", "阿里巴巴", "腾讯公司", "小米公司", "百度公司", "京东集团"]
PEOPLE = ["张伟", "李娜", "王芳", "刘洋"]
DATES = ["昨天", "上周", "今年三月", "去年"]
# (template, events): events as (type, [(role, slot)]); slots in braces, T* are triggers.
TEMPLATES = [
    ("{D}{A}以十亿元收购了{B}。", [("收购", [("trigger", "收购"), ("sub-org", "A"), ("obj-org", "B"), ("date", "D")])]),
    ("{A}起诉了{B}，{B}随后也起诉了{C}。",  # two events of one type sharing an argument
     [("起诉", [("trigger", "起诉@0"), ("sub", "A"), ("obj", "B@0")]), ("起诉", [("trigger", "起诉@1"), ("sub", "B@1"), ("obj", "C")])]),
    ("{P}减持{A}股份。", [("减持", [("trigger", "减持"), ("sub", "P"), ("obj", "A")])]),
    ("{A}董事长{P}辞职。", [("高管变动", [("trigger", "辞职"), ("obj-org", "A"), ("obj-per", "P"), ("title", "董事长")])]),
    ("{A}投资{B}，{D}完成。", [("投资", [("trigger", "投资"), ("sub", "A"), ("obj", "B"), ("date", "D")])]),
]


def fill(template, events, rng):
    choice = {"A": rng.choice(COMPANIES), "P": rng.choice(PEOPLE), "D": rng.choice(DATES)}
    choice["B"] = rng.choice([c for c in COMPANIES if c != choice["A"]])
    choice["C"] = rng.choice([c for c in COMPANIES if c not in (choice["A"], choice["B"])])
    return _fill(template, events, choice)


EN_COMPANIES = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay Industries"]
EN_PEOPLE = ["John Smith", "Mary Johnson", "Ahmed Khan", "Anna Petrova"]
EN_MONEY = ["$5 million", "$120 million", "$2 billion"]
EN_DATES = ["Monday", "last week", "March 3"]
EN_PLACES = ["Boston", "Paris", "Tokyo"]
EN_TEMPLATES = [
    ("{A} acquired {B} for {M} on {D} .", [("Acquisition", [("trigger", "acquired"), ("buyer", "A"), ("target", "B"), ("price", "M"), ("date", "D")])]),
    ("{P} sued {A} in {L} .", [("Lawsuit", [("trigger", "sued"), ("plaintiff", "P"), ("defendant", "A"), ("place", "L")])]),
    ("{P} resigned as chief executive of {A} on {D} .",
     [("Resignation", [("trigger", "resigned"), ("person", "P"), ("position", "chief executive"), ("organization", "A"), ("date", "D")])]),
    ("{A} invested {M} in {B} .", [("Investment", [("trigger", "invested"), ("investor", "A"), ("target", "B"), ("money", "M")])]),
    ("{P} sued {A} , and {A} sued {P2} .",  # two events of one type sharing an argument
     [("Lawsuit", [("trigger", "sued@0"), ("plaintiff", "P"), ("defendant", "A@0")]),
      ("Lawsuit", [("trigger", "sued@1"), ("plaintiff", "A@1"), ("defendant", "P2")])]),
]


def fill_en(template, events, rng):
    choice = {"A": rng.choice(EN_COMPANIES), "P": rng.choice(EN_PEOPLE), "M": rng.choice(EN_MONEY),
              "D": rng.choice(EN_DATES), "L": rng.choice(EN_PLACES)}
    choice["B"] = rng.choice([c for c in EN_COMPANIES if c != choice["A"]])
    choice["P2"] = rng.choice([p for p in EN_PEOPLE if p != choice["P"]])
    return _fill(template, events, choice)


def _fill(template, events, choice):
    text, slots, k = "", {}, 0
    while k < len(template):
        if template[k] == "{":
            close = template.index("}", k)
            slot = template[k + 1 : close]
            slots.setdefault(slot, []).append((len(text), len(text) + len(choice[slot])))
            text += choice[slot]
            k = close + 1
        else:
            text += template[k]
            k += 1

    def locate(ref):
        name, _, occ = ref.partition("@")
        occ = int(occ or 0)
        if name in slots:
            return slots[name][occ]
        starts = [s for s in range(len(text)) if text.startswith(name, s)]  # literal words (triggers, titles)
        return starts[occ], starts[occ] + len(name)

    return text, [(t, [(r, *locate(ref)) for r, ref in args]) for t, args in events]


HAND = [  # hard cases, written out with offsets
    # a span with two roles in one event: 华为公司 is both subject and object of a buy-back
    ("华为公司回购华为公司股份。", [("回购", [("trigger", 4, 6), ("sub", 0, 4), ("obj", 0, 4)])]),
    # an event without a trigger; nested argument spans (华为 inside 华为公司)
    ("华为公司，十亿元，收购方为华为。", [("收购", [("sub-org", 13, 15), ("money", 5, 8), ("obj-org", 0, 4)])]),
]

PHEE = [
    {"id": "x1", "context": "Severe hepatitis developed in a 54-year-old woman after oral isoniazid therapy.",
     "annotations": [{"events": [{"event_id": "E1", "event_type": "Adverse_event",
                                   "Trigger": {"text": [["developed"]], "start": [[17]]},
                                   "Effect": {"text": [["hepatitis"]], "start": [[7]]},
                                   "Severity": {"text": [["Severe"]], "start": [[0]]},
                                   "Subject": {"text": [["a 54-year-old woman"]], "start": [[30]],
                                               "Age": {"text": [["54-year-old"]], "start": [[32]]},
                                               "Gender": {"text": [["woman"]], "start": [[44]]}},
                                   "Treatment": {"text": [["oral isoniazid therapy"]], "start": [[56]],
                                                 "Drug": {"text": [["isoniazid"]], "start": [[61]]},
                                                 "Route": {"text": [["oral"]], "start": [[56]]}}}]}]},
    {"id": "x2", "context": "Lithium improved mania in two patients, who later had tremor caused by lithium.",
     "annotations": [{"events": [{"event_id": "E1", "event_type": "Potential_therapeutic_event",
                                   "Trigger": {"text": [["improved"]], "start": [[8]]},
                                   "Treatment": {"text": [["Lithium"]], "start": [[0]], "Drug": {"text": [["Lithium"]], "start": [[0]]}},
                                   "Effect": {"text": [["mania"]], "start": [[17]]},
                                   "Subject": {"text": [["two patients"]], "start": [[26]]}},
                                  {"event_id": "E2", "event_type": "Adverse_event",
                                   "Trigger": {"text": [["caused"]], "start": [[61]]},
                                   "Effect": {"text": [["tremor"]], "start": [[54]]},
                                   "Subject": {"text": [["two patients"]], "start": [[26]]},
                                   "Treatment": {"text": [["lithium"]], "start": [[71]], "Drug": {"text": [["lithium"]], "start": [[71]]}}}]}]},
]


def main() -> None:
    HERE.mkdir(parents=True, exist_ok=True)
    rng = random.Random(5)
    items = [fill(*rng.choice(TEMPLATES), rng) for _ in range(36)] + HAND
    canon = [{"text": t, "entities": [], "events": [{"label": ty, "arguments": [{"role": r, "start": s, "end": e, "text": t[s:e]}
                                                                                for r, s, e in args]} for ty, args in evs]}
             for t, evs in items]
    (HERE / "zh_train.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in canon[:28] + canon[-2:]), encoding="utf-8")
    (HERE / "zh_dev.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in canon[28:-2]), encoding="utf-8")
    fewfc = [{"id": f"f{k}", "content": t, "events": [{"type": ty, "mentions": [{"word": t[s:e], "span": [s, e], "role": r}
                                                                               for r, s, e in args]} for ty, args in evs]}
             for k, (t, evs) in enumerate(items[:10] + HAND)]
    (HERE / "fewfc_sample.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in fewfc), encoding="utf-8")
    duee = []
    for k, (t, evs) in enumerate(items[:10]):
        ev_list = []
        for ty, args in evs:
            trig = next((s, e) for r, s, e in args if r == "trigger")
            ev_list.append({"event_type": ty, "trigger": t[trig[0]:trig[1]], "trigger_start_index": trig[0],
                            "arguments": [{"role": r, "argument": t[s:e], "argument_start_index": s} for r, s, e in args if r != "trigger"]})
        duee.append({"id": f"d{k}", "text": t, "event_list": ev_list})
    (HERE / "duee_sample.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in duee), encoding="utf-8")
    en = [fill_en(*rng.choice(EN_TEMPLATES), rng) for _ in range(40)]
    en_canon = [{"text": t, "entities": [], "events": [{"label": ty, "arguments": [{"role": r, "start": s, "end": e, "text": t[s:e]}
                                                                                   for r, s, e in args]} for ty, args in evs]}
                for t, evs in en]
    (HERE / "en_train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in en_canon[:30]), encoding="utf-8")
    (HERE / "en_dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in en_canon[30:]), encoding="utf-8")
    (HERE / "phee_sample.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in PHEE), encoding="utf-8")


if __name__ == "__main__":
    main()
