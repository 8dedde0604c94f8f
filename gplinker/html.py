"""HTML for combined records: the static report of ``pipeline --html`` and the server's page use
this one renderer. Entities are boxes inline in the text (a nested span is a box inside its
parent, each with its own label badge), triples a table, events frames; a legend lists every
label with its colour and model. Every text and label is escaped; no external assets."""

from __future__ import annotations

import colorsys
from html import escape
from typing import Any, Iterable, Sequence

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:62em;color:#222;line-height:1.5;padding:0 1em}
h1{font-size:1.4em} .rec{border:1px solid #ddd;border-radius:6px;padding:.8em 1em;margin:1em 0}
.meta{color:#777;font-size:.8em} .text{font-size:1.08em;line-height:2.3;white-space:pre-wrap;word-break:break-word}
.ent{border:2px solid var(--c);border-radius:5px;padding:1px 2px;margin:0 1px;background:color-mix(in srgb,var(--c) 9%,transparent)}
.lab{font-size:.62em;font-weight:600;vertical-align:middle;margin-left:.25em;padding:0 .3em;border-radius:3px;color:#fff;background:var(--c);white-space:nowrap}
.lab small{font-weight:400;opacity:.85}
table{border-collapse:collapse;margin:.4em 0;font-size:.92em} td,th{border-bottom:1px solid #eee;padding:.15em .6em;text-align:left}
.frame{display:inline-block;vertical-align:top;border:2px solid var(--c);border-radius:5px;margin:.3em .4em .3em 0;padding:.3em .6em;font-size:.92em}
.frame b{display:block} .score{color:#888;font-size:.8em} .err{color:#b00020}
.legend{font-size:.85em;margin:.5em 0} .legend .lab{font-size:.85em;margin:0 .4em .2em 0;display:inline-block}
.more{color:#777;font-size:.85em} .cross{font-size:.85em;color:#555}
"""
MAX_ITEMS = 300  # per kind and record; a barely trained model can fire thousands (all are in the JSONL)
# Well-separated colours (Tableau 10 + 10 more), given to labels in order of first appearance.
PALETTE = [
    "#4e79a7",
    "#e15759",
    "#59a14f",
    "#b07aa1",
    "#f28e2b",
    "#76b7b2",
    "#9c755f",
    "#edc948",
    "#ff9da7",
    "#bab0ac",
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#393b79",
    "#637939",
]


class Colours:
    """Label -> colour for one report or page: distinct palette colours for the first labels seen,
    then hues spread by the golden ratio (never a near-duplicate of the previous one)."""

    def __init__(self, labels: Iterable[str] = ()) -> None:
        self.assigned: dict[str, str] = {}
        for lab in labels:
            self(lab)

    def __call__(self, label: str) -> str:
        if label not in self.assigned:
            k = len(self.assigned)
            if k < len(PALETTE):
                self.assigned[label] = PALETTE[k]
            else:
                r, g, b = colorsys.hls_to_rgb((k * 0.618033988749895) % 1.0, 0.42, 0.6)
                self.assigned[label] = f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"
        return self.assigned[label]


def _badge(item: dict[str, Any], colour: str, show_model: bool) -> str:
    model = f" <small>{escape(str(item['model']))}</small>" if show_model and item.get("model") else ""
    return f'<span class="lab" style="--c:{colour}">{escape(str(item["label"]))}{model}</span>'


def _title(e: dict[str, Any]) -> str:
    parts = [f"{e['label']} [{e['start']}:{e['end']}]"]
    if e.get("model"):
        parts.append(f"model {e['model']}")
    if e.get("score") is not None:
        parts.append(f"p={e['score']:.2f}")
    return escape(" · ".join(parts), quote=True)


def _nest(entities: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A forest of properly nested spans (children under ``_kids``) and the spans that cross
    another one (shown in a list below the text, since they cannot be boxes)."""
    roots: list[dict[str, Any]] = []
    crossing: list[dict[str, Any]] = []
    stack: list[dict[str, Any]] = []
    for e in sorted(entities, key=lambda e: (e["start"], -e["end"], str(e["label"]), str(e.get("model", "")))):
        node = {**e, "_kids": []}
        while stack and stack[-1]["end"] <= e["start"]:
            stack.pop()
        if stack and e["end"] > stack[-1]["end"]:  # starts inside the open span, ends after it
            crossing.append(e)
            continue
        (stack[-1]["_kids"] if stack else roots).append(node)
        stack.append(node)
    return roots, crossing


def highlight(text: str, entities: Sequence[dict[str, Any]], colours: Colours, show_model: bool = False) -> str:
    """The text with each entity as a box (nested spans as boxes inside their parent), each box
    ending in its label badge."""
    roots, crossing = _nest(entities)

    def render(nodes: list[dict[str, Any]], start: int, end: int) -> str:
        out, pos = [], start
        for n in nodes:
            out.append(escape(text[pos : n["start"]]))
            c = colours(str(n["label"]))
            inner = render(n["_kids"], n["start"], n["end"])
            out.append(f'<span class="ent" style="--c:{c}" title="{_title(n)}">{inner}{_badge(n, c, show_model)}</span>')
            pos = n["end"]
        out.append(escape(text[pos:end]))
        return "".join(out)

    html = render(roots, 0, len(text))
    if crossing:
        items = ", ".join(
            f"{escape(text[e['start'] : e['end']])} {_badge(e, colours(str(e['label'])), show_model)}" for e in crossing
        )
        html += f'</div><div class="cross">overlapping spans: {items}'
    return html


def _top(items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """At most MAX_ITEMS items, the most probable, in their original order; and how many were left out."""
    if len(items) <= MAX_ITEMS:
        return items, 0
    keep = sorted(range(len(items)), key=lambda k: -(items[k].get("score") or 0.0))[:MAX_ITEMS]
    return [items[k] for k in sorted(keep)], len(items) - MAX_ITEMS


def _score(x: dict) -> str:
    return f' <span class="score">{x["score"]:.2f}</span>' if x.get("score") is not None else ""


def render_record(rec: dict[str, Any], colours: Colours, show_model: bool = False, number: int | None = None) -> str:
    """One combined record as an HTML fragment (a ``div.rec``)."""
    parts = ['<div class="rec">']
    meta = (f"#{number}" if number is not None else "") + (f" · id {escape(str(rec['id']))}" if rec.get("id") is not None else "")
    if meta:
        parts.append(f'<div class="meta">{meta}</div>')
    if "text" not in rec:
        parts.append(f'<p class="err">{escape(str(rec.get("error", "no text")))}</p></div>')
        return "\n".join(parts)
    if rec.get("error"):
        parts.append(f'<p class="err">{escape(str(rec["error"]))}</p>')
    entities, n_ent = _top(rec.get("entities", []))
    relations, n_rel = _top(rec.get("relations", []))
    events, n_ev = _top(rec.get("events", []))
    parts.append(f'<div class="text">{highlight(rec["text"], entities, colours, show_model)}</div>')
    for kind, n in (("entities", n_ent), ("relations", n_rel), ("events", n_ev)):
        if n:
            parts.append(f'<p class="more">{n} more {kind} with lower scores are in the JSONL output</p>')
    if relations:
        model_col = "<th>model</th>" if show_model else ""
        parts.append(f"<table><tr><th>subject</th><th>relation</th><th>object</th><th>score</th>{model_col}</tr>")
        for r in relations:
            sc = f"{r['score']:.2f}" if r.get("score") is not None else ""
            model = f"<td>{escape(str(r.get('model', '')))}</td>" if show_model else ""
            parts.append(
                f'<tr><td>{escape(r["head"]["text"])} <span class="score">{escape(r["head"]["label"])}</span></td>'
                f"<td>{escape(r['label'])}</td><td>{escape(r['tail']['text'])} "
                f'<span class="score">{escape(r["tail"]["label"])}</span></td><td>{sc}</td>{model}</tr>'
            )
        parts.append("</table>")
    for ev in events:
        model = f' <span class="score">{escape(str(ev["model"]))}</span>' if show_model and ev.get("model") else ""
        colour = colours(str(ev["label"]))
        parts.append(f'<div class="frame" style="--c:{colour}"><b>{escape(ev["label"])}{_score(ev)}{model}</b>')
        for a in ev["arguments"]:
            parts.append(f"{escape(a['role'])}: {escape(a['text'])}<br>")
        parts.append("</div>")
    parts.append("</div>")
    return "\n".join(parts)


def legend(records: Sequence[dict[str, Any]], colours: Colours) -> str:
    """Every label shown, with its colour, grouped by model."""
    by_model: dict[str, list[str]] = {}
    for rec in records:
        for kind in ("entities", "events"):
            for x in rec.get(kind, []):
                labs = by_model.setdefault(str(x.get("model", "")), [])
                if x["label"] not in labs:
                    labs.append(x["label"])
    if not by_model:
        return ""
    rows = []
    for model, labs in sorted(by_model.items()):
        badges = "".join(f'<span class="lab" style="--c:{colours(lab)}">{escape(str(lab))}</span>' for lab in labs)
        rows.append(f"<div>{escape(model) + ': ' if model else ''}{badges}</div>")
    return f'<div class="legend">{"".join(rows)}</div>'


def fragment(records: Sequence[dict[str, Any]], numbered: bool = True) -> str:
    """Legend and records as one HTML fragment (what the page shows for an answer)."""
    records = list(records)
    colours = Colours(x["label"] for rec in records for kind in ("entities", "events") for x in rec.get(kind, []))
    models = {x.get("model") for rec in records for kind in ("entities", "relations", "events") for x in rec.get(kind, [])}
    show_model = len(models - {None}) > 1
    body = [render_record(rec, colours, show_model, n if numbered else None) for n, rec in enumerate(records, start=1)]
    return legend(records, colours) + "\n" + "\n".join(body)


def render(records: Iterable[dict[str, Any]], title: str = "gplinker report") -> str:
    """The whole report as one HTML document (no external assets)."""
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{CSS}</style></head><body><h1>{escape(title)}</h1>\n{fragment(list(records))}\n</body></html>\n"
    )
