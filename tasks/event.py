"""Event extraction with GPLinker (kexue.fm 8926): an argument head over (event type, role) labels
(the trigger is the role ``trigger``), two one-channel link heads, and clique decoding.

Decoding rule. Links are keyed by span only, so the graph has one node per *span* of an event
type, not one per (role, span): two spans are joined when both the head-head cell
``(min(s1, s2), max(s1, s2))`` of their starts and the tail-tail cell of their ends fire, each
maximal clique (networkx) is one event, and a span brings every role predicted for it in that
event type. A span holding two roles in one event therefore gives one event with both roles (as
gold has it), and two events of one type that share a span in different roles give two events
(each listing the shared span with both roles) instead of the spurious role-mixed events that
(role, span) nodes would form. Events that are subsets of another event of the same type are
dropped; events without a trigger are kept or dropped by ``keep_triggerless``.

Cliques are found once per document, over character offsets, after the library has merged the
windows (a link fires only where one window holds both spans, so an event still has to fit in a
window, as it must to be seen at all; arguments cut by a window edge were already dropped).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import networkx as nx
import numpy as np

from gplinker.cells import DocumentCells
from gplinker.metrics import score, soft_score
from gplinker.options import option
from gplinker.structures import TRIGGER, Argument, Document, Event
from gplinker.task import HeadSpec, Schema, Targets, Task, config_flag, label_list

from .readers.event import read_schema

logger = logging.getLogger(__name__)

MAX_ARGUMENT_CELLS = 1024  # most probable argument cells decoded per window of text


@dataclass
class EventOptions:
    """``schema``: a schema file giving the (event type, role) labels (default: read them off the
    training data); ``keep_triggerless``: keep predicted events that have no trigger."""

    schema: str | None = option(
        None, "event: schema file (DuEE schema JSONL or {type: [roles]}); default: from --train", flag="--schema", file=True
    )
    keep_triggerless: bool = option(
        True, "event: drop predicted events without a trigger", negate="--drop-triggerless", at_prediction=()
    )


class _LinkLookup:
    """Whether the head link of two spans' starts and the tail link of their ends both fire.

    Small coordinate ranges use two boolean grids (all pairs of a type looked up at once); long
    documents use sorted keys, so memory stays linear in the number of links."""

    GRID_LIMIT = 2048

    def __init__(self, head_cells: np.ndarray, tail_cells: np.ndarray, args: Sequence[tuple[str, str, int, int]]) -> None:
        m = 1 + max([0, *(max(i, j) for _, _, i, j in args)], default=0)
        self.m = max(m, 1 + int(head_cells.max(initial=0)), 1 + int(tail_cells.max(initial=0)))
        if self.m <= self.GRID_LIMIT:
            self.head = np.zeros((self.m, self.m), dtype=bool)  # (m, m) head[min, max]: the head link fires
            self.tail = np.zeros((self.m, self.m), dtype=bool)
            self.head[head_cells[:, 0], head_cells[:, 1]] = True
            self.tail[tail_cells[:, 0], tail_cells[:, 1]] = True
        else:
            self.head = np.unique(head_cells[:, 0] * self.m + head_cells[:, 1])  # (H,) sorted keys
            self.tail = np.unique(tail_cells[:, 0] * self.m + tail_cells[:, 1])

    def _has(self, table: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        if table.ndim == 2:
            return table[lo, hi]
        return np.isin(lo * self.m + hi, table, assume_unique=False)

    def linked(self, i1: np.ndarray, i2: np.ndarray, j1: np.ndarray, j2: np.ndarray) -> np.ndarray:
        return self._has(self.head, i1, i2) & self._has(self.tail, j1, j2)


MAX_SPANS_PER_TYPE = 32  # argument spans of one event type in one window that enter the graph
MAX_EVENTS_PER_TYPE = 64  # maximal cliques enumerated per event type and window
MAX_ARGUMENT_CELLS = 1024  # most probable argument cells of one window that are decoded


def events_from_graph(
    args: Sequence[tuple[str, str, int, int]],
    head_cells: np.ndarray,
    tail_cells: np.ndarray,
    scores: dict[tuple[str, str, int, int], float | None] | None = None,
    stats: dict[str, int] | None = None,
    scale: int = 1,
) -> list[tuple[str, frozenset]]:
    """Events from decoded arguments and link cells (characters, or token positions of a window).

    ``args``: (event type, role, i, j); ``head_cells``/``tail_cells``: (N, 2) positive (min, max)
    pairs. Returns (event type, frozenset of (role, i, j)) for each maximal clique of spans.
    A barely trained model fires on thousands of spans and links, and clique enumeration is
    exponential on dense graphs: per event type at most ``MAX_SPANS_PER_TYPE`` spans (the most
    probable, when ``scores`` are given) enter the graph and at most ``MAX_EVENTS_PER_TYPE``
    cliques are taken (counted in ``stats["capped"]``), so decoding always ends; both caps are
    multiplied by ``scale`` (the number of windows a long document spans).
    """
    head_cells = np.asarray(head_cells, dtype=np.int64).reshape(-1, 2)  # (H, 2)
    tail_cells = np.asarray(tail_cells, dtype=np.int64).reshape(-1, 2)  # (T, 2)
    by_type: dict[str, dict[tuple[int, int], set[str]]] = {}
    best: dict[tuple[str, int, int], float] = {}
    for etype, role, i, j in args:
        by_type.setdefault(etype, {}).setdefault((i, j), set()).add(role)
        sc = (scores or {}).get((etype, role, i, j)) or 0.0
        best[(etype, i, j)] = max(best.get((etype, i, j), 0.0), sc)
    lookup = _LinkLookup(head_cells, tail_cells, args)
    events = []
    for etype, spans in by_type.items():
        nodes = sorted(spans)
        if len(nodes) > MAX_SPANS_PER_TYPE * scale:
            logger.debug("event decoding capped: %d argument spans of type %r in one window", len(nodes), etype)
            if stats is not None:
                stats["capped"] = stats.get("capped", 0) + 1
            nodes = sorted(sorted(nodes, key=lambda ij: -best[(etype, *ij)])[: MAX_SPANS_PER_TYPE * scale])
        graph = nx.Graph()
        graph.add_nodes_from(nodes)
        nd = np.array(nodes, dtype=np.int64).reshape(-1, 2)  # (S, 2) token (i, j) of each span
        x, y = np.triu_indices(len(nodes), 1)  # all span pairs
        i1, i2, j1, j2 = nd[x, 0], nd[y, 0], nd[x, 1], nd[y, 1]  # (S*(S-1)/2,) each
        linked = lookup.linked(i1, i2, j1, j2)
        graph.add_edges_from((nodes[u], nodes[v]) for u, v in zip(x[linked].tolist(), y[linked].tolist()))
        for n_found, clique in enumerate(nx.find_cliques(graph)):
            if n_found == MAX_EVENTS_PER_TYPE * scale:
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


class EventTask(Task):
    """Events as (type, arguments); the trigger is the argument with role ``trigger``."""

    name = "event"
    options_class = EventOptions
    # Missing links split one event into several cliques: the link threshold chosen on dev keeps
    # predicted events within 0.8-1.25 per gold event where any candidate does (FewFC, 900 CPU
    # steps: the F1-best threshold, -1, gave 0.0813 at 2.14 events per gold event, mostly
    # fragments; -4 gives 0.0743 at 0.97).
    count_band = (0.8, 1.25)
    main_level = "events"

    def __init__(self, labels: Sequence[Sequence[str]], keep_triggerless: bool = True) -> None:
        if not labels:
            raise ValueError("event extraction needs at least one (event type, role); the training data has no events")
        self.labels = [(str(t), str(r)) for t, r in labels]
        self.label_index = {lab: k for k, lab in enumerate(self.labels)}
        self.keep_triggerless = bool(keep_triggerless)

    def override(self, name: str, value: Any) -> None:
        if name != "keep_triggerless" or not isinstance(value, bool):
            super().override(name, value)
        self.keep_triggerless = value

    def top_labels(self) -> set[str]:
        return {t for t, _ in self.labels}

    def schema(self) -> Schema:
        roles: dict[str, list[str]] = {}
        for t, r in self.labels:
            roles.setdefault(t, [])
            if r != TRIGGER:
                roles[t].append(r)
        return Schema(events=tuple((t, tuple(rs)) for t, rs in roles.items()))

    def labels_in(self, doc: Document) -> set[str]:
        return {e.label for e in doc.events}

    def head_specs(self) -> list[HeadSpec]:
        # Argument labels share a bias with their event type's labels and with their role's labels.
        # Link heads: one channel each, no RoPE, triangle mask kept (pairs stored as (min, max)).
        groups = tuple((f"type={t}", f"role={r}") for t, r in self.labels)
        return [
            HeadSpec("arguments", len(self.labels), use_rope=True, tril_mask=True, groups=groups),
            HeadSpec("heads", 1, use_rope=False, tril_mask=True, axes="starts"),
            HeadSpec("tails", 1, use_rope=False, tril_mask=True, axes="ends"),
        ]

    def targets(self, doc: Document) -> Targets:
        args, pairs = set(), set()
        for e in doc.events:
            known = [a for a in e.arguments if (e.label, a.role) in self.label_index]
            args.update((self.label_index[(e.label, a.role)], a.start, a.end) for a in known)
            spans = sorted({(a.start, a.end) for a in known})
            pairs.update((0, a, b) for x, a in enumerate(spans) for b in spans[x + 1 :])
        return {"arguments": args, "heads": pairs, "tails": pairs}

    def decode(self, doc: Document, cells: DocumentCells) -> Document:
        """Events of the document; an event's score is the smallest probability among its
        arguments and the head and tail links of its clique (an upper bound on their joint)."""
        stats: dict[str, int] = {}
        arg_cells = cells["arguments"]
        if not len(arg_cells) and not doc.events:  # no argument, no event (most sentences)
            return doc
        limit = MAX_ARGUMENT_CELLS * cells.windows
        if len(arg_cells) > limit:
            stats["capped"] = 1
            arg_cells = arg_cells.most_probable(limit)
        p_head, p_tail = cells["heads"].scores(), cells["tails"].scores()
        args, arg_prob = [], {}
        for (ch, a, b), p in zip(arg_cells.rows.tolist(), arg_cells.probabilities()):
            etype, role = self.labels[ch]
            args.append((etype, role, a, b))
            arg_prob[(etype, role, a, b)] = float(p)
        events: dict[Event, float | None] = {}
        heads, tails = cells["heads"].rows[:, 1:], cells["tails"].rows[:, 1:]
        for etype, members in events_from_graph(args, heads, tails, arg_prob, stats, scale=cells.windows):
            arguments = tuple(Argument(role, a, b, arg_prob[(etype, role, a, b)]) for role, a, b in members)
            if not (self.keep_triggerless or any(x.role == TRIGGER for x in arguments)):
                continue
            spans = sorted({(a, b) for _, a, b in members})
            parts = [arg_prob[(etype, r, a, b)] for r, a, b in members]
            for x, (a1, b1) in enumerate(spans):
                for a2, b2 in spans[x + 1 :]:
                    parts += [p_head.get((0, min(a1, a2), max(a1, a2))), p_tail.get((0, min(b1, b2), max(b1, b2)))]
            known = [p for p in parts if p is not None]
            events[Event(etype, arguments)] = min(known) if known else None
        if stats.get("capped"):
            logger.warning(
                "event decoding capped in a %d-character text: the model fires on too many arguments "
                "(is it trained?); at most %d argument cells, %d spans per event type and %d events per "
                "type were kept",
                len(doc.text),
                limit,
                MAX_SPANS_PER_TYPE * cells.windows,
                MAX_EVENTS_PER_TYPE * cells.windows,
            )
        kept = drop_subsets(set(events))
        return doc.with_annotations(events=tuple(Event(e.label, e.arguments, events[e]) for e in kept))

    def channel_labels(self) -> dict[str, list[str]]:
        return {"arguments": [f"{t}\t{r}" for t, r in self.labels], "heads": ["link"], "tails": ["link"]}

    def extended_with(self, other: Task) -> "EventTask":
        assert isinstance(other, EventTask)
        return EventTask(self.labels + [x for x in other.labels if x not in self.label_index], other.keep_triggerless)

    def evaluate(self, gold: Sequence[Document], pred: Sequence[Document]) -> dict[str, Any]:
        def arguments(d: Document) -> set:
            return {(e.label, a.role, a.start, a.end) for e in d.events for a in e.arguments if a.role != TRIGGER}

        def triggers(d: Document) -> set:
            return {(e.label, a.start, a.end) for e in d.events for a in e.arguments if a.role == TRIGGER}

        def events(d: Document) -> set:
            return {(e.label, e.arguments) for e in d.events}

        # CasEE (Sheng et al., 2021) on FewFC: trigger / argument identification and classification
        def ti(d: Document) -> set:
            return {(a.start, a.end) for e in d.events for a in e.arguments if a.role == TRIGGER}

        def ai(d: Document) -> set:
            return {(e.label, a.start, a.end) for e in d.events for a in e.arguments if a.role != TRIGGER}

        def duee(d: Document) -> dict:  # DuEE's official argument score compares strings per (type, role)
            out: dict = {}
            for e in d.events:
                for a in e.arguments:
                    if a.role != TRIGGER:
                        out.setdefault((e.label, a.role), []).append(d.text[a.start : a.end])
            return {k: sorted(set(v)) for k, v in out.items()}

        first = lambda t: t[0]  # noqa: E731
        return {
            "events": score(map(events, gold), map(events, pred), label_of=first),
            "arguments": score(map(arguments, gold), map(arguments, pred), label_of=lambda t: f"{t[0]}/{t[1]}"),
            "triggers": score(map(triggers, gold), map(triggers, pred), label_of=first),
            "trigger_identification": score(map(ti, gold), map(ti, pred)),
            "trigger_classification": score(map(triggers, gold), map(triggers, pred)),
            "argument_identification": score(map(ai, gold), map(ai, pred)),
            "argument_classification": score(map(arguments, gold), map(arguments, pred)),
            "arguments_duee": soft_score(map(duee, gold), map(duee, pred)),
        }

    def config(self) -> dict[str, Any]:
        return {"labels": [list(x) for x in self.labels], "keep_triggerless": self.keep_triggerless}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "EventTask":
        labels = config["labels"]
        if not isinstance(labels, list) or not all(isinstance(x, list) and len(x) == 2 for x in labels):
            raise ValueError("labels must be a list of [event type, role] pairs")
        pairs = label_list(
            [f"{t}\x00{r}" if isinstance(t, str) and isinstance(r, str) and t and r else None for t, r in labels],
            "labels (event type, role)",
        )
        return cls([tuple(x.split("\x00")) for x in pairs], config_flag(config, "keep_triggerless", True))

    def labels_summary(self) -> dict[str, Any]:
        schema: dict[str, list[str]] = {}
        for t, r in self.labels:
            schema.setdefault(t, []).append(r)
        return {"schema": schema}

    @classmethod
    def from_documents(cls, docs: Sequence[Document], options: EventOptions | None = None) -> "EventTask":
        """Labels from a schema file (``read_schema``) or inferred from the training documents."""
        options = options or EventOptions()
        if options.schema is not None:
            labels = read_schema(options.schema)
        else:
            labels = sorted({(e.label, a.role) for d in docs for e in d.events for a in e.arguments})
        return cls(labels, options.keep_triggerless)
