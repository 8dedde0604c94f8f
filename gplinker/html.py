"""A self-contained HTML report of merged predictions: entities highlighted inline (nested spans
stacked as underlines, labels after each span), triples as a list, events as frames."""
from __future__ import annotations

import colorsys
import hashlib
from html import escape
from typing import Any, Iterable

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:60em;color:#222;line-height:1.5}
h1{font-size:1.4em} .rec{border:1px solid #ddd;border-radius:6px;padding:.8em 1em;margin:1em 0}
.meta{color:#777;font-size:.8em} .text{font-size:1.1em;line-height:2.6;white-space:pre-wrap;word-break:break-word}
.seg{padding-bottom:1px} .lab{font-size:.62em;font-weight:600;vertical-align:super;margin:0 .15em;padding:0 .25em;border-radius:3px;color:#fff}
table{border-collapse:collapse;margin:.4em 0;font-size:.92em} td,th{border-bottom:1px solid #eee;padding:.15em .6em;text-align:left}
.frame{display:inline-block;vertical-align:top;border:1px solid #ccc;border-radius:5px;margin:.3em .4em .3em 0;padding:.3em .6em;font-size:.92em}
.frame b{display:block} .score{color:#888;font-size:.8em} .err{color:#b00020}
.legend span{margin-right:.6em} .more{color:#777;font-size:.85em}
"""
MAX_ITEMS = 300  # per kind and record; a barely trained model can fire thousands (all are in the JSONL)


def _colour(label: str) -> str:
    h = int(hashlib.md5(label.encode("utf-8")).hexdigest()[:6], 16) / 0xFFFFFF
    r, g, b = colorsys.hls_to_rgb(h, 0.42, 0.65)
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def _score(x: dict) -> str:
    return f' <span class="score">{x["score"]:.2f}</span>' if x.get("score") is not None else ""


def highlight(text: str, entities: list[dict[str, Any]]) -> str:
    """The text cut at every entity boundary; each piece underlined once per entity covering it
    (outer spans lower), and each entity's label placed where it ends."""
    cuts = sorted({0, len(text)} | {e["start"] for e in entities} | {e["end"] for e in entities})
    by_end: dict[int, list[dict]] = {}
    for e in entities:
        by_end.setdefault(e["end"], []).append(e)
    # depth: longer spans get lower underlines so nested ones stay visible
    order = sorted(entities, key=lambda e: (-(e["end"] - e["start"]), e["start"]))
    depth = {id(e): k for k, e in enumerate(order)}
    out = []
    for a, b in zip(cuts, cuts[1:]):
        covering = sorted((e for e in entities if e["start"] <= a and b <= e["end"]), key=lambda e: depth[id(e)])
        piece = escape(text[a:b])
        if covering:
            shadows = ",".join(f"0 {2 + 3 * k}px 0 {_colour(e['label'])}" for k, e in enumerate(covering))
            title = escape("; ".join(f"{e['label']} [{e['start']}:{e['end']}]" for e in covering), quote=True)
            out.append(f'<span class="seg" style="box-shadow:{shadows}" title="{title}">{piece}</span>')
        else:
            out.append(piece)
        for e in sorted(by_end.get(b, []), key=lambda e: -e["start"]):
            out.append(f'<span class="lab" style="background:{_colour(e["label"])}" '
                       f'title="{escape(e["model"] if "model" in e else "", quote=True)}">{escape(e["label"])}</span>')
    return "".join(out)


def _top(items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """At most MAX_ITEMS items, the most probable, in their original order; and how many were left out."""
    if len(items) <= MAX_ITEMS:
        return items, 0
    keep = sorted(range(len(items)), key=lambda k: -(items[k].get("score") or 0.0))[:MAX_ITEMS]
    return [items[k] for k in sorted(keep)], len(items) - MAX_ITEMS


def render(records: Iterable[dict[str, Any]], title: str = "gplinker report") -> str:
    """The whole report as one HTML string (no external assets)."""
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{escape(title)}</title>",
             f"<style>{CSS}</style></head><body><h1>{escape(title)}</h1>"]
    for n, rec in enumerate(records, start=1):
        parts.append('<div class="rec">')
        meta = f"#{n}" + (f" · id {escape(str(rec['id']))}" if rec.get("id") is not None else "")
        parts.append(f'<div class="meta">{meta}</div>')
        if "text" not in rec:
            parts.append(f'<p class="err">{escape(rec.get("error", "no text"))}</p></div>')
            continue
        if rec.get("error"):
            parts.append(f'<p class="err">{escape(rec["error"])}</p>')
        entities, n_ent = _top(rec.get("entities", []))
        relations, n_rel = _top(rec.get("relations", []))
        events, n_ev = _top(rec.get("events", []))
        parts.append(f'<div class="text">{highlight(rec["text"], entities)}</div>')
        for kind, n in (("entities", n_ent), ("relations", n_rel), ("events", n_ev)):
            if n:
                parts.append(f'<p class="more">{n} more {kind} with lower scores are in the JSONL output</p>')
        if relations:
            parts.append("<table><tr><th>subject</th><th>relation</th><th>object</th><th>score</th></tr>")
            for r in relations:
                sc = f"{r['score']:.2f}" if r.get("score") is not None else ""
                parts.append(f"<tr><td>{escape(r['head']['text'])} <span class=\"score\">{escape(r['head']['label'])}</span></td>"
                             f"<td>{escape(r['label'])}</td><td>{escape(r['tail']['text'])} "
                             f"<span class=\"score\">{escape(r['tail']['label'])}</span></td><td>{sc}</td></tr>")
            parts.append("</table>")
        for ev in events:
            parts.append(f'<div class="frame" style="border-color:{_colour(ev["label"])}"><b>{escape(ev["label"])}{_score(ev)}</b>')
            for a in ev["arguments"]:
                parts.append(f"{escape(a['role'])}: {escape(a['text'])}<br>")
            parts.append("</div>")
        parts.append("</div>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
