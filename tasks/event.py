"""Event extraction with GPLinker (kexue.fm 8926): an argument head over (event type, role) labels
(the trigger is the role ``trigger``), two one-channel link heads, and clique decoding.

Decoding rule. Links are keyed by span only, so the graph has one node per *span* of an event
type, not one per (role, span): two spans are joined when both the head-head cell
``(min(h1, h2), max(h1, h2))`` and the tail-tail cell ``(min(t1, t2), max(t1, t2))`` fire, each
maximal clique (networkx) is one event, and a span brings every role predicted for it in that
event type. A span holding two roles in one event therefore gives one event with both roles (as
gold has it), and two events of one type that share a span in different roles give two events
(each listing the shared span with both roles) instead of the spurious role-mixed events that
(role, span) nodes would form. Events that are subsets of another event of the same type are
dropped (this also removes events truncated at a window cut); events without a trigger are kept
or dropped by ``keep_triggerless``.

Readers: ``duee`` (LIC/DuEE), ``fewfc``, ``phee`` (nested sub-arguments flattened into roles
``Parent.Child``) and canonical ``jsonl``.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import networkx as nx
import numpy as np

from gplinker.io import DataError, check_surface, resolve_format, load_json_records, read_documents_jsonl, record_error
from gplinker.metrics import score
from gplinker.offsets import Window, WindowIndex, align_span, token_span_to_chars, touches_cut
from gplinker.structures import Argument, Document, Event
from gplinker.task import LOGIT_SUFFIX, Cells, HeadSpec, Task, cell_probabilities

logger = logging.getLogger(__name__)

TRIGGER = "trigger"


MAX_SPANS_PER_TYPE = 32  # argument spans of one event type in one window that enter the graph
MAX_EVENTS_PER_TYPE = 64  # maximal cliques enumerated per event type and window
MAX_ARGUMENT_CELLS = 1024  # most probable argument cells of one window that are decoded


def events_from_graph(args: Sequence[tuple[str, str, int, int]], head_cells: np.ndarray, tail_cells: np.ndarray,
                      scores: dict[tuple[str, str, int, int], float | None] | None = None,
                      stats: dict[str, int] | None = None) -> list[tuple[str, frozenset]]:
    """Events from decoded arguments and link cells of one window (token indices).

    ``args``: (event type, role, i, j); ``head_cells``/``tail_cells``: (N, 2) positive (min, max)
    pairs. Returns (event type, frozenset of (role, i, j)) for each maximal clique of spans.
    A barely trained model fires on thousands of spans and links, and clique enumeration is
    exponential on dense graphs: per event type at most ``MAX_SPANS_PER_TYPE`` spans (the most
    probable, when ``scores`` are given) enter the graph and at most ``MAX_EVENTS_PER_TYPE``
    cliques are taken (counted in ``stats["capped"]``), so decoding always ends.
    """
    head_cells = np.asarray(head_cells, dtype=np.int64).reshape(-1, 2)  # (H, 2)
    tail_cells = np.asarray(tail_cells, dtype=np.int64).reshape(-1, 2)  # (T, 2)
    by_type: dict[str, dict[tuple[int, int], set[str]]] = {}
    best: dict[tuple[str, int, int], float] = {}
    for etype, role, i, j in args:
        by_type.setdefault(etype, {}).setdefault((i, j), set()).add(role)
        sc = (scores or {}).get((etype, role, i, j)) or 0.0
        best[(etype, i, j)] = max(best.get((etype, i, j), 0.0), sc)
    # Link grids (window length squared, a few hundred kB at most): all pairs of a type are looked up at once.
    m = 1 + max([0, *(max(i, j) for _, _, i, j in args)], default=0)
    m = max(m, 1 + int(head_cells.max(initial=0)), 1 + int(tail_cells.max(initial=0)))
    head_grid = np.zeros((m, m), dtype=bool)  # (m, m) head_grid[min, max]: the head link fires
    tail_grid = np.zeros((m, m), dtype=bool)
    head_grid[head_cells[:, 0], head_cells[:, 1]] = True
    tail_grid[tail_cells[:, 0], tail_cells[:, 1]] = True
    events = []
    for etype, spans in by_type.items():
        nodes = sorted(spans)
        if len(nodes) > MAX_SPANS_PER_TYPE:
            logger.debug("event decoding capped: %d argument spans of type %r in one window", len(nodes), etype)
            if stats is not None:
                stats["capped"] = stats.get("capped", 0) + 1
            nodes = sorted(sorted(nodes, key=lambda ij: -best[(etype, *ij)])[:MAX_SPANS_PER_TYPE])
        graph = nx.Graph()
        graph.add_nodes_from(nodes)
        nd = np.array(nodes, dtype=np.int64).reshape(-1, 2)  # (S, 2) token (i, j) of each span
        x, y = np.triu_indices(len(nodes), 1)  # all span pairs
        i1, i2, j1, j2 = nd[x, 0], nd[y, 0], nd[x, 1], nd[y, 1]  # (S*(S-1)/2,) each
        linked = (head_grid[np.minimum(i1, i2), np.maximum(i1, i2)]
                  & tail_grid[np.minimum(j1, j2), np.maximum(j1, j2)])
        graph.add_edges_from((nodes[u], nodes[v]) for u, v in zip(x[linked].tolist(), y[linked].tolist()))
        for n_found, clique in enumerate(nx.find_cliques(graph)):
            if n_found == MAX_EVENTS_PER_TYPE:
                logger.debug("event decoding capped: more than %d events of type %r in one window", MAX_EVENTS_PER_TYPE, etype)
                if stats is not None:
                    stats["capped"] = stats.get("capped", 0) + 1
                break
            events.append((etype, frozenset((role, i, j) for (i, j) in clique for role in spans[(i, j)])))
    return events


def drop_subsets(events: set[Event]) -> set[Event]:
    """Events that are not a strict subset of another event of the same type.

    Candidates are found through an index from each argument to the events holding it, so the
    cost follows the overlap between events rather than the square of their number."""
    items = [(e, frozenset(e.arguments)) for e in events]
    holders: dict[tuple[str, Argument], list[int]] = {}
    for k, (e, args) in enumerate(items):
        for a in args:
            holders.setdefault((e.label, a), []).append(k)
    out = set()
    for e, args in items:
        if not args:
            out.add(e)
            continue
        rarest = min((holders[(e.label, a)] for a in args), key=len)
        if not any(args < items[k][1] for k in rarest):
            out.add(e)
    return out


def _most_probable(cells: Cells, name: str, limit: int, stats: dict[str, int]) -> Cells:
    """``cells`` with at most ``limit`` rows of head ``name``, the highest logits first."""
    rows = cells.get(name)
    if rows is None or len(rows) <= limit:
        return cells
    logits = cells.get(name + LOGIT_SUFFIX)
    keep = np.sort(np.argsort(-logits, kind="stable")[:limit]) if logits is not None else np.arange(limit)
    stats["capped"] = stats.get("capped", 0) + 1
    out = dict(cells)
    out[name] = rows[keep]
    if logits is not None:
        out[name + LOGIT_SUFFIX] = logits[keep]
    return out


class EventTask(Task):
    """Events as (type, arguments); the trigger is the argument with role ``trigger``."""

    name = "event"

    def __init__(self, labels: Sequence[Sequence[str]], keep_triggerless: bool = True) -> None:
        if not labels:
            raise ValueError("event extraction needs at least one (event type, role); the training data has no events")
        self.labels = [tuple(x) for x in labels]
        self.label_index = {lab: k for k, lab in enumerate(self.labels)}
        self.keep_triggerless = keep_triggerless

    def head_specs(self) -> list[HeadSpec]:
        # Link heads: one channel each, no RoPE, triangle mask kept (pairs stored as (min, max)).
        return [HeadSpec("arguments", len(self.labels), use_rope=True, tril_mask=True),
                HeadSpec("heads", 1, use_rope=False, tril_mask=True),
                HeadSpec("tails", 1, use_rope=False, tril_mask=True)]

    def gold_spans(self, doc: Document) -> list[tuple[int, int]]:
        return [(a.start, a.end) for e in doc.events for a in e.arguments]

    def targets(self, doc: Document, window: Window, policy: str = "expand") -> Cells:
        args, heads, tails = set(), set(), set()
        for e in doc.events:
            placed = []
            for a in e.arguments:
                k = self.label_index.get((e.label, a.role))
                ij = align_span(window, a.start, a.end, policy)  # type: ignore[arg-type]
                if k is not None and ij is not None:
                    args.add((k, *ij))
                    placed.append(ij)
            placed = sorted(set(placed))
            for x, (i1, j1) in enumerate(placed):
                for i2, j2 in placed[x + 1 :]:
                    heads.add((0, min(i1, i2), max(i1, i2)))
                    tails.add((0, min(j1, j2), max(j1, j2)))
        arr = lambda rows: np.array(sorted(rows), dtype=np.int64).reshape(-1, 3)  # noqa: E731
        return {"arguments": arr(args), "heads": arr(heads), "tails": arr(tails)}

    def decode(self, doc: Document, windows: Sequence[Window], cells: Sequence[Cells]) -> Document:
        """Events of every window, merged; an event's score is the smallest probability among its
        arguments and the head and tail links of its clique (an upper bound on their joint)."""
        events: dict[Event, float | None] = {}
        none = np.zeros((0, 3), np.int64)
        index = WindowIndex(windows)
        stats: dict[str, int] = {}
        for k, (w, c) in enumerate(zip(windows, cells)):
            c = _most_probable(c, "arguments", MAX_ARGUMENT_CELLS, stats)
            p_arg, p_head, p_tail = (cell_probabilities(c, h) for h in ("arguments", "heads", "tails"))
            args, arg_prob = [], {}
            for ch, i, j in c.get("arguments", none).tolist():
                start, end = token_span_to_chars(w, i, j)
                if touches_cut(w, i, j) and index.held_elsewhere(k, (start, end)):
                    continue  # possibly truncated by the cut; another window holds it whole
                etype, role = self.labels[ch]
                args.append((etype, role, i, j))
                arg_prob[(etype, role, i, j)] = p_arg.get((ch, i, j))
            heads, tails = c.get("heads", none)[:, 1:], c.get("tails", none)[:, 1:]
            for etype, members in events_from_graph(args, heads, tails, arg_prob, stats):
                arguments = tuple(Argument(role, *token_span_to_chars(w, i, j), arg_prob[(etype, role, i, j)])
                                  for role, i, j in members)
                if not (self.keep_triggerless or any(a.role == TRIGGER for a in arguments)):
                    continue
                spans = sorted({(i, j) for _, i, j in members})
                parts = [arg_prob[(etype, r, i, j)] for r, i, j in members]
                for x, (i1, j1) in enumerate(spans):
                    for i2, j2 in spans[x + 1 :]:
                        parts += [p_head.get((0, min(i1, i2), max(i1, i2))), p_tail.get((0, min(j1, j2), max(j1, j2)))]
                known = [p for p in parts if p is not None]
                ev = Event(etype, arguments)
                score = min(known) if known else None
                old = events.get(ev)
                events[ev] = score if old is None else max(old, score if score is not None else old)
        if stats.get("capped"):
            logger.warning("event decoding capped in %d window(s) of a %d-character text: the model fires on too many "
                           "arguments (is it trained?); at most %d argument cells, %d spans per event type and %d events per "
                           "type and window were kept", stats["capped"], len(doc.text), MAX_ARGUMENT_CELLS,
                           MAX_SPANS_PER_TYPE, MAX_EVENTS_PER_TYPE)
        kept = drop_subsets(set(events))
        return doc.with_annotations(events=tuple(Event(e.label, e.arguments, events[e]) for e in kept))

    def evaluate(self, gold: Sequence[Document], pred: Sequence[Document]) -> dict[str, Any]:
        def arguments(d: Document) -> set:
            return {(e.label, a.role, a.start, a.end) for e in d.events for a in e.arguments if a.role != TRIGGER}

        def triggers(d: Document) -> set:
            return {(e.label, a.start, a.end) for e in d.events for a in e.arguments if a.role == TRIGGER}

        def events(d: Document) -> set:
            return {(e.label, e.arguments) for e in d.events}

        first = lambda t: t[0]  # noqa: E731
        return {
            "events": score(map(events, gold), map(events, pred), label_of=first),
            "arguments": score(map(arguments, gold), map(arguments, pred), label_of=lambda t: f"{t[0]}/{t[1]}"),
            "triggers": score(map(triggers, gold), map(triggers, pred), label_of=first),
        }

    def config(self) -> dict[str, Any]:
        return {"labels": [list(x) for x in self.labels], "keep_triggerless": self.keep_triggerless}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "EventTask":
        return cls(config["labels"], config.get("keep_triggerless", True))

    @classmethod
    def from_documents(cls, docs: Sequence[Document], schema: str | Path | None = None,
                       keep_triggerless: bool = True, **options: Any) -> "EventTask":
        """Labels from a schema file (``read_schema``) or inferred from the training documents."""
        if schema is not None:
            labels = read_schema(schema)
        else:
            labels = sorted({(e.label, a.role) for d in docs for e in d.events for a in e.arguments})
        return cls(labels, keep_triggerless)


def read_schema(path: str | Path) -> list[tuple[str, str]]:
    """An event schema: JSONL of ``{"event_type", "role_list": [{"role"}]}`` (DuEE) or a JSON
    object ``{event_type: [role, ...]}``; the trigger role is added to every type."""
    import json

    text = Path(path).read_text(encoding="utf-8")
    labels = set()
    items: list[tuple[str, list]] = []
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None
    if isinstance(whole, dict) and "event_type" not in whole:  # {event_type: [role, ...]}
        items = [(k, list(v)) for k, v in whole.items()]
    else:
        records = whole if isinstance(whole, list) else None
        lines = [(None, r) for r in records] if records is not None else []
        if records is None:
            for no, line in enumerate(text.splitlines(), start=1):
                if line.strip():
                    try:
                        lines.append((no, json.loads(line)))
                    except json.JSONDecodeError as e:
                        raise DataError(path, no, f"not valid JSON ({e.msg})", "one schema object per line") from e
        for no, o in lines:
            try:
                items.append((o["event_type"], [r["role"] if isinstance(r, dict) else r for r in o["role_list"]]))
            except (KeyError, TypeError) as e:
                raise DataError(path, no, f"not a schema record ({e})", 'expected {"event_type": ..., "role_list": [{"role": ...}]}') from e
    for etype, roles in items:
        labels.add((etype, TRIGGER))
        labels.update((etype, r) for r in roles)
    return sorted(labels)


# ---- readers ---------------------------------------------------------------------------------

def _check(path, no, text: str, start: int, end: int, surface: str | None) -> None:
    check_surface(path, no, text, start, end, surface, "argument", "check the start index")


def read_duee(path: str | Path) -> list[Document]:
    """LIC / DuEE JSONL: ``{"text", "event_list": [{"event_type", "trigger", "trigger_start_index",
    "arguments": [{"argument_start_index", "role", "argument"}]}]}``."""
    docs = []
    for no, obj in load_json_records(path):
        try:
            text = obj["text"]
            events = []
            for ev in obj.get("event_list", []):
                t0 = int(ev["trigger_start_index"])
                _check(path, no, text, t0, t0 + len(ev["trigger"]), ev["trigger"])
                args = [Argument(TRIGGER, t0, t0 + len(ev["trigger"]))]
                for a in ev.get("arguments", []):
                    s = int(a["argument_start_index"])
                    _check(path, no, text, s, s + len(a["argument"]), a["argument"])
                    args.append(Argument(a["role"], s, s + len(a["argument"])))
                events.append(Event(ev["event_type"], tuple(args)))
        except DataError:
            raise
        except (KeyError, TypeError, ValueError) as e:
            raise record_error(path, no, f"not a DuEE record ({type(e).__name__}: {e})",
                               'expected {"text", "event_list": [{"event_type", "trigger", "trigger_start_index", "arguments": [...]}]}') from e
        docs.append(Document(text, events=tuple(events), id=None if obj.get("id") is None else str(obj["id"])))
    return docs


def read_fewfc(path: str | Path) -> list[Document]:
    """FewFC JSONL: ``{"id", "content", "events": [{"type", "mentions": [{"word", "span": [start, end], "role"}]}]}``;
    span ends exclusive; the mention whose role is ``trigger`` is the trigger."""
    docs = []
    for no, obj in load_json_records(path):
        try:
            text = obj["content"]
            events = []
            for ev in obj.get("events", []):
                args = []
                for m in ev.get("mentions", []):
                    s, e = int(m["span"][0]), int(m["span"][1])
                    _check(path, no, text, s, e, m.get("word"))
                    args.append(Argument(m["role"], s, e))
                events.append(Event(ev["type"], tuple(args)))
        except DataError:
            raise
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise record_error(path, no, f"not a FewFC record ({type(e).__name__}: {e})",
                               'expected {"content", "events": [{"type", "mentions": [{"word", "span", "role"}]}]}') from e
        docs.append(Document(text, events=tuple(events), id=None if obj.get("id") is None else str(obj["id"])))
    return docs


_PHEE_META = {"text", "start", "entity_id", "value", "Combination", "event_id", "event_type"}


def _phee_arguments(path, no, text: str, field: dict, role: str) -> list[Argument]:
    """Mentions of one PHEE role field, then its nested sub-arguments as ``role.Child``.

    A mention made of several pieces (a discontinuous span) gives one argument per piece."""
    out = []
    for pieces, starts in zip(field.get("text", []), field.get("start", [])):
        for piece, s in zip(pieces, starts):
            _check(path, no, text, int(s), int(s) + len(piece), piece)
            out.append(Argument(role, int(s), int(s) + len(piece)))
    for key, sub in field.items():
        if key not in _PHEE_META and isinstance(sub, dict):
            out += _phee_arguments(path, no, text, sub, f"{role}.{key}")
    return out


def read_phee(path: str | Path) -> list[Document]:
    """PHEE JSONL: ``{"id", "context", "annotations": [{"events": [{"event_type", "Trigger": {"text",
    "start"}, <Role>: {"text", "start", <SubRole>: {...}}}]}]}``; the first annotation is used.
    Nested sub-arguments become roles ``Role.SubRole``; ``Trigger`` becomes ``trigger``; nested
    ``Combination`` events and boolean ``value`` attributes are not extracted."""
    docs = []
    for no, obj in load_json_records(path):
        try:
            text = obj["context"]
            events = []
            annotations = obj.get("annotations") or [{"events": []}]
            for ev in annotations[0].get("events", []):
                args = []
                for key, field in ev.items():
                    if key in _PHEE_META or not isinstance(field, dict):
                        continue
                    args += _phee_arguments(path, no, text, field, TRIGGER if key == "Trigger" else key)
                events.append(Event(ev["event_type"], tuple(args)))
        except DataError:
            raise
        except (KeyError, TypeError, ValueError) as e:
            raise record_error(path, no, f"not a PHEE record ({type(e).__name__}: {e})",
                               'expected {"context", "annotations": [{"events": [{"event_type", "Trigger": {"text", "start"}, ...}]}]}') from e
        docs.append(Document(text, events=tuple(events), id=None if obj.get("id") is None else str(obj["id"])))
    return docs


READERS = {"jsonl": read_documents_jsonl, "duee": read_duee, "fewfc": read_fewfc, "phee": read_phee}
SNIFFERS = {
    "jsonl": lambda p, h: h.lstrip().startswith("{") and '"text"' in h and '"events"' in h and '"arguments"' in h,
    "duee": lambda p, h: '"event_list"' in h,
    "fewfc": lambda p, h: '"content"' in h and '"mentions"' in h,
    "phee": lambda p, h: '"context"' in h and '"annotations"' in h,
}


def read(path: str | Path, fmt: str = "auto") -> list[Document]:
    """Documents of an event file in format ``fmt`` (``auto`` detects it)."""
    fmt = resolve_format(path, fmt, READERS, SNIFFERS, "event")
    docs = READERS[fmt](path)
    logger.info("%s: %d documents, %d events, %d arguments", path, len(docs), sum(len(d.events) for d in docs),
                sum(len(e.arguments) for d in docs for e in d.events))
    return docs
