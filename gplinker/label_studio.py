"""Label Studio in and out: its JSON export read into documents, documents written as tasks with
annotations or predictions (pre-annotations), and labelling configs parsed and generated.

How gplinker's items look in a Label Studio project (``<Text>`` with ``<Labels>``, ``<Relations>``):

- an entity is a region of a ``<Labels>`` control (any name but ``trigger``), its label the
  entity type; a region with several labels is one entity per label;
- a relation triple is a ``relation`` between two regions, ``from_id`` the subject, labelled with
  the predicate (``direction: left`` swaps the ends; ``bi`` is read as written);
- an event is a region of the ``<Labels name="trigger">`` control, labelled with the event type,
  linked to each argument's region by a relation labelled with the role. Argument regions are
  ordinary regions (in configs gplinker generates, labelled with their role), so they are read
  as entities too; an event without a trigger cannot be drawn and is left out (counted).

Offsets are characters (code points), end exclusive, as everywhere in gplinker. Label Studio
versions and browsers have stored UTF-16 offsets for texts with characters beyond U+FFFF; a
region whose ``text`` disagrees with its offsets but agrees with them read as UTF-16 is converted
(counted), one that agrees with neither is an error naming the task and the region.
"""

from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable
from xml.sax.saxutils import quoteattr

from gplinker.io import READ_ERRORS, load_json_records, record_error
from gplinker.structures import TRIGGER, Argument, Document, Event, Relation, Span
from gplinker.task import Schema

logger = logging.getLogger(__name__)

TRIGGER_CONTROL = "trigger"  # the <Labels> control whose regions are event triggers
TEXT, LABELS = "text", "label"  # names of the <Text> and the entity <Labels> of generated configs
PALETTE = ("#FFA39E", "#D4380D", "#FFC069", "#AD8B00", "#D3F261", "#389E0D", "#5CDBD3", "#096DD9", "#ADC6FF", "#9254DE")
MAX_CONFIG_CHARS = 1_000_000  # a labelling config longer than this is refused before parsing


# ----------------------------------------------------------------------------------------------
# labelling configs


@dataclass(frozen=True)
class LabelConfig:
    """The parts of a labelling config gplinker reads and writes: the ``<Text>`` control's name and
    data field, the entity ``<Labels>`` controls with their labels, the trigger control's event
    types, and the ``<Relations>`` labels (None: the config has no ``<Relations>``)."""

    text_name: str = TEXT
    data_key: str = "text"
    entity_controls: tuple[tuple[str, tuple[str, ...]], ...] = ((LABELS, ()),)
    event_types: tuple[str, ...] | None = None  # labels of the trigger control (None: no such control)
    relations: tuple[str, ...] | None = None

    @classmethod
    def for_schema(cls, schema: Schema) -> "LabelConfig":
        """The config of a new project for ``schema``: entity labels and event roles in one
        ``<Labels>``, event types in ``<Labels name="trigger">``, predicates and roles as relations."""
        labels = tuple(dict.fromkeys(schema.entities + schema.roles()))
        relations = tuple(dict.fromkeys(schema.relations + schema.roles()))
        return cls(
            entity_controls=((LABELS, labels),),
            event_types=tuple(t for t, _ in schema.events) if schema.events else None,
            relations=relations or None,
        )

    @classmethod
    def parse(cls, xml: str) -> "LabelConfig":
        """The config of a Label Studio project (its ``label_config``); a ValueError says what is missing."""
        if not isinstance(xml, str) or not xml.strip():
            raise ValueError("the labelling config is empty")
        if len(xml) > MAX_CONFIG_CHARS:
            raise ValueError(f"the labelling config has {len(xml)} characters, over {MAX_CONFIG_CHARS}")
        try:
            root = ET.fromstring(xml)
        except ET.ParseError as e:
            raise ValueError(f"the labelling config is not valid XML ({e})") from None
        texts = [t for t in root.iter("Text") if t.get("name")]
        if not texts:
            raise ValueError("the labelling config has no <Text name=... value=$field> tag; gplinker labels text")
        text = texts[0]
        value = text.get("value", "$text")
        entity, events = [], None
        for lab in root.iter("Labels"):
            if lab.get("toName", text.get("name")) != text.get("name") or not lab.get("name"):
                continue
            values = tuple(x.get("value") for x in lab.iter("Label") if x.get("value"))
            if lab.get("name") == TRIGGER_CONTROL:
                events = values
            else:
                entity.append((lab.get("name"), values))
        rels = list(root.iter("Relations"))
        relations = tuple(x.get("value") for r in rels for x in r.iter("Relation") if x.get("value")) if rels else None
        return cls(text.get("name"), value[1:] if value.startswith("$") else value, tuple(entity), events, relations)

    def to_xml(self) -> str:
        """The config as Label Studio takes it (one ``<View>``)."""
        colour = iter(PALETTE * (1 + sum(len(v) for _, v in self.entity_controls) // len(PALETTE)))
        lines = ["<View>"]
        if self.relations is not None:
            lines += ["  <Relations>"] + [f"    <Relation value={quoteattr(r)}/>" for r in self.relations] + ["  </Relations>"]
        controls = list(self.entity_controls) + ([(TRIGGER_CONTROL, self.event_types)] if self.event_types is not None else [])
        for name, labels in controls:
            lines.append(f"  <Labels name={quoteattr(name)} toName={quoteattr(self.text_name)}>")
            lines += [f"    <Label value={quoteattr(v)} background={quoteattr(next(colour, '#888888'))}/>" for v in labels]
            lines.append("  </Labels>")
        lines += [f"  <Text name={quoteattr(self.text_name)} value={quoteattr('$' + self.data_key)}/>", "</View>"]
        return "\n".join(lines) + "\n"

    def entity_control(self, label: str) -> str | None:
        """The entity control that offers ``label`` (None: none does)."""
        return next((name for name, labels in self.entity_controls if label in labels), None)

    def unknown_to(self, schema: Schema) -> dict[str, list[str]]:
        """This config's labels that ``schema`` (a model's) does not know, by kind: the model
        cannot pre-annotate them, and they are reported, not guessed."""
        known_spans = set(schema.entities) | set(schema.roles())
        out = {
            "entity labels": [x for _, labels in self.entity_controls for x in labels if x not in known_spans],
            "event types": [t for t in self.event_types or () if t not in dict(schema.events)],
            "relation labels": [r for r in self.relations or () if r not in set(schema.relations) | set(schema.roles())],
        }
        return {k: v for k, v in out.items() if v}


# ----------------------------------------------------------------------------------------------
# reading an export


@dataclass
class ReadReport:
    """What reading an export decided, counted (logged; ``gplinker convert`` prints it)."""

    tasks: int = 0
    documents: int = 0
    unannotated: int = 0  # tasks without a non-cancelled annotation: not read (predictions are not gold)
    cancelled: int = 0  # cancelled (skipped) annotations ignored
    several: int = 0  # tasks with several annotations: the latest non-cancelled one read
    multi_label: int = 0  # regions with several labels: one item per label
    unlabelled: int = 0  # regions and relations without a label: not read
    utf16: int = 0  # regions whose offsets counted UTF-16 units: converted to characters
    other: int = 0  # results that are neither text regions nor relations (choices, text areas ...): ignored

    def lines(self) -> list[str]:
        parts = [
            (self.unannotated, "tasks without an annotation skipped (predictions are not read as gold)"),
            (self.cancelled, "cancelled annotations ignored"),
            (self.several, "tasks with several annotations: the latest non-cancelled one read"),
            (self.multi_label, "regions with several labels: one item per label"),
            (self.unlabelled, "regions or relations without a label skipped"),
            (self.utf16, "regions with UTF-16 offsets converted to characters"),
            (self.other, "results that are not text regions or relations ignored"),
        ]
        return [f"{n} {what}" for n, what in parts if n]


def _task_text(task: dict[str, Any]) -> tuple[str, str]:
    """(data key, text) of a task: ``data.text``, else the data's only string field."""
    data = task["data"]
    if not isinstance(data, dict):
        raise ValueError('the task\'s "data" is not an object')
    if isinstance(data.get("text"), str):
        return "text", data["text"]
    strings = [k for k, v in data.items() if isinstance(v, str)]
    if len(strings) != 1:
        raise ValueError(f'the task\'s data has no "text" field and {len(strings)} string fields ({", ".join(strings)})')
    return strings[0], data[strings[0]]


def chosen_annotation(task: dict[str, Any], report: ReadReport) -> dict[str, Any] | None:
    """The annotation of a task that counts: the latest non-cancelled one (by ``updated_at``, then
    ``created_at``, then id); None when every annotation is cancelled or there is none."""
    annotations = task.get("annotations") or []
    if not isinstance(annotations, list) or not all(isinstance(a, dict) for a in annotations):
        raise ValueError('"annotations" is not a list of objects')
    live = [a for a in annotations if not a.get("was_cancelled")]
    report.cancelled += len(annotations) - len(live)
    if not live:
        return None
    if len(live) > 1:
        report.several += 1

    def when(a: dict[str, Any]) -> tuple[str, str, int]:
        ident = a.get("id")
        return (str(a.get("updated_at") or ""), str(a.get("created_at") or ""), ident if isinstance(ident, int) else -1)

    return max(live, key=when)


def utf16_to_chars(text: str, offset: int) -> int:
    """The character offset of a UTF-16 code-unit offset into ``text``."""
    units = 0
    for k, ch in enumerate(text):
        if units >= offset:
            return k
        units += 2 if ord(ch) > 0xFFFF else 1
    return len(text)


def _located(text: str, value: dict[str, Any], report: ReadReport) -> tuple[int, int]:
    start, end = value["start"], value["end"]
    if isinstance(start, bool) or isinstance(end, bool) or not isinstance(start, int) or not isinstance(end, int):
        raise ValueError(f"offsets {start!r}, {end!r} are not whole numbers")
    surface = value.get("text")
    if surface is None or text[start:end] == surface:
        return start, end
    a, b = utf16_to_chars(text, start), utf16_to_chars(text, end)
    if text[a:b] == surface:
        report.utf16 += 1
        return a, b
    raise ValueError(
        f"its text {surface!r} is not what the task's text holds at [{start}, {end}) ({text[start:end]!r}), "
        "in characters or in UTF-16 units"
    )


@dataclass
class _Region:
    rid: str
    start: int
    end: int
    labels: list[str]
    trigger: bool


def _regions(text: str, result: list[Any], report: ReadReport) -> tuple[dict[str, _Region], list[dict[str, Any]]]:
    """Text regions by id, and the relation results."""
    regions: dict[str, _Region] = {}
    relations = []
    for item in result:
        if not isinstance(item, dict):
            raise ValueError("a result item is not an object")
        if item.get("type") == "relation":
            relations.append(item)
            continue
        value = item.get("value")
        if item.get("type") != "labels" or not isinstance(value, dict) or "start" not in value:
            report.other += 1
            continue
        rid = str(item.get("id"))
        try:
            start, end = _located(text, value, report)
        except ValueError as e:
            raise ValueError(f"region {rid}: {e}") from None
        labels = value.get("labels") or []
        if not isinstance(labels, list) or not all(isinstance(x, str) and x for x in labels):
            raise ValueError(f"region {rid}: labels {labels!r} are not a list of strings")
        if rid in regions:  # one region's several results (several <Labels> on one region)
            regions[rid].labels += [x for x in labels if x not in regions[rid].labels]
        else:
            regions[rid] = _Region(rid, start, end, list(labels), item.get("from_name") == TRIGGER_CONTROL)
    return regions, relations


def _relation_ends(rel: dict[str, Any], regions: dict[str, _Region]) -> tuple[_Region, _Region]:
    a, b = str(rel.get("from_id")), str(rel.get("to_id"))
    missing = [x for x in (a, b) if x not in regions]
    if missing:
        raise ValueError(f"a relation links region {missing[0]}, which is not a text region of this annotation")
    return (regions[b], regions[a]) if rel.get("direction") == "left" else (regions[a], regions[b])


def document_of(task: dict[str, Any], annotation: dict[str, Any] | None, report: ReadReport) -> Document:
    """The document of one task: its text, and the entities, relations and events of ``annotation``
    (a dict with ``result``; None: the text alone)."""
    key, text = _task_text(task)
    data = task["data"]
    result = [] if annotation is None else annotation.get("result") or []
    if not isinstance(result, list):
        raise ValueError('"result" is not a list')
    regions, relations = _regions(text, result, report)
    report.multi_label += sum(len(r.labels) > 1 for r in regions.values())
    report.unlabelled += sum(not r.labels for r in regions.values())
    entities = [Span(r.start, r.end, lab) for r in regions.values() if not r.trigger for lab in r.labels]
    triples, arguments = [], {rid: [] for rid, r in regions.items() if r.trigger}
    for rel in relations:
        head, tail = _relation_ends(rel, regions)
        labels = rel.get("labels") or []
        if not isinstance(labels, list) or not all(isinstance(x, str) and x for x in labels):
            raise ValueError(f"relation labels {labels!r} are not a list of strings")
        if not labels:
            report.unlabelled += 1
            continue
        if head.trigger or tail.trigger:  # an event's argument link
            trigger, arg = (head, tail) if head.trigger else (tail, head)
            arguments[trigger.rid] += [Argument(role, arg.start, arg.end) for role in labels]
            continue
        triples += [
            Relation(Span(head.start, head.end, h), p, Span(tail.start, tail.end, t))
            for p in labels
            for h in head.labels
            for t in tail.labels
        ]
    events = [
        Event(etype, (Argument(TRIGGER, r.start, r.end), *arguments[rid]))
        for rid, r in regions.items()
        if r.trigger
        for etype in r.labels
    ]
    ident = data.get("id", task.get("id"))
    meta = {k: v for k, v in data.items() if k not in (key, "id")}
    return Document(text, tuple(entities), tuple(triples), tuple(events), None if ident is None else str(ident), meta)


def read_export_report(path: str | Path) -> tuple[list[Document], ReadReport]:
    """Documents of a Label Studio JSON export (one per task with a non-cancelled annotation) and
    the report of what was decided; a malformed task is a DataError naming it and the fix."""
    report = ReadReport()
    docs = []
    for no, task in load_json_records(path):
        report.tasks += 1
        try:
            if not isinstance(task, dict) or "data" not in task:
                raise ValueError('not a Label Studio task (an object with "data" and "annotations")')
            annotation = chosen_annotation(task, report)
            if annotation is None:
                report.unannotated += 1
                continue
            docs.append(document_of(task, annotation, report))
        except READ_ERRORS as e:
            tid = task.get("id") if isinstance(task, dict) else None
            raise record_error(
                path,
                no,
                f"task {tid}: {e}" if tid is not None else str(e),
                "export the project with Label Studio's JSON export (not JSON-MIN or CSV); "
                "a region's offsets must match its text",
            ) from e
    report.documents = len(docs)
    for line in report.lines():
        logger.info("%s: %s", path, line)
    return docs, report


def read_export(path: str | Path) -> list[Document]:
    """Documents of a Label Studio JSON export (see :func:`read_export_report`)."""
    return read_export_report(path)[0]


def sniff(head: str) -> bool:
    """Does a file's head look like a Label Studio JSON export or task list? (A JSON-MIN export is
    taken too, so that reading it says to use the JSON export instead.)"""
    h = head.lstrip()
    if not h.startswith("["):
        return False
    json_min = '"annotation_id"' in h and '"annotator"' in h
    return json_min or ('"data"' in h and ('"annotations"' in h or '"predictions"' in h))


# ----------------------------------------------------------------------------------------------
# writing tasks


@dataclass
class WriteReport:
    """Items that could not be written for a config, by reason (reported, never guessed)."""

    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, why: str) -> None:
        self.dropped[why] = self.dropped.get(why, 0) + 1

    def lines(self) -> list[str]:
        return [f"{n} left out: {why}" for why, n in sorted(self.dropped.items())]


class _Results:
    """The ``result`` list of one task under construction: regions shared by span and label."""

    def __init__(self, text: str, config: LabelConfig, report: WriteReport, scores: bool) -> None:
        self.text, self.config, self.report, self.scores = text, config, report, scores
        self.items: list[dict[str, Any]] = []
        self.ids: dict[tuple[str, int, int, str], str] = {}
        self.spans: dict[tuple[int, int], str] = {}  # any entity region of a span (event arguments reuse it)

    def region(self, control: str, start: int, end: int, label: str, score: float | None) -> str:
        key = (control, start, end, label)
        if key in self.ids:
            return self.ids[key]
        rid = f"g{len(self.items)}"
        value = {"start": start, "end": end, "text": self.text[start:end], "labels": [label]}
        item = {"id": rid, "from_name": control, "to_name": self.config.text_name, "type": "labels", "value": value}
        if self.scores and score is not None:
            item["score"] = round(score, 6)
        self.items.append(item)
        self.ids[key] = rid
        if control != TRIGGER_CONTROL:
            self.spans.setdefault((start, end), rid)
        return rid

    def entity(self, span: Span) -> str | None:
        control = self.config.entity_control(span.label)
        if control is None:
            self.report.drop(f"entity label {span.label!r} is not in the labelling config")
            return None
        return self.region(control, span.start, span.end, span.label, span.score)

    def relation(self, a: str, b: str, label: str, score: float | None) -> None:
        if self.config.relations is None or label not in self.config.relations:
            self.report.drop(f"relation label {label!r} is not in the labelling config")
            return
        item = {"type": "relation", "from_id": a, "to_id": b, "direction": "right", "labels": [label]}
        if self.scores and score is not None:
            item["score"] = round(score, 6)
        self.items.append(item)

    def event(self, ev: Event) -> None:
        trigger = next((a for a in ev.arguments if a.role == TRIGGER), None)
        if trigger is None:
            self.report.drop("an event without a trigger (it cannot be drawn as a trigger region)")
            return
        if self.config.event_types is None or ev.label not in self.config.event_types:
            self.report.drop(f"event type {ev.label!r} is not in the labelling config's trigger labels")
            return
        tid = self.region(TRIGGER_CONTROL, trigger.start, trigger.end, ev.label, ev.score)
        for arg in ev.arguments:
            if arg is trigger:
                continue
            rid = self.spans.get((arg.start, arg.end))
            if rid is None:
                control = self.config.entity_control(arg.role)
                if control is None:
                    self.report.drop(f"argument role {arg.role!r} is not a label of the labelling config")
                    continue
                rid = self.region(control, arg.start, arg.end, arg.role, arg.score)
            self.relation(tid, rid, arg.role, arg.score)


def results_of(doc: Document, config: LabelConfig, report: WriteReport, scores: bool = True) -> list[dict[str, Any]]:
    """The Label Studio ``result`` list of ``doc``'s entities, relations and events under ``config``;
    items whose labels the config lacks are counted in ``report`` and left out."""
    r = _Results(doc.text, config, report, scores)
    for span in doc.entities:
        r.entity(span)
    for rel in doc.relations:
        a, b = r.entity(rel.head), r.entity(rel.tail)
        if a is not None and b is not None:
            r.relation(a, b, rel.label, rel.score)
    for ev in doc.events:
        r.event(ev)
    return r.items


def prediction_score(doc: Document) -> float | None:
    """A prediction's score: the least probability among its items (Label Studio's
    ``prediction-score-min`` sampling then shows the least certain tasks first)."""
    scores = [x.score for x in (*doc.entities, *doc.relations, *doc.events) if x.score is not None]
    return round(min(scores), 6) if scores else None


def prediction(doc: Document, config: LabelConfig, report: WriteReport, model_version: str) -> dict[str, Any]:
    """One prediction of Label Studio's format (``result``, ``score``, ``model_version``)."""
    out: dict[str, Any] = {"model_version": model_version, "result": results_of(doc, config, report)}
    score = prediction_score(doc)
    if score is not None:
        out["score"] = score
    return out


def task_of(doc: Document, config: LabelConfig, report: WriteReport, as_predictions: str | None = None) -> dict[str, Any]:
    """A Label Studio task for import: ``data`` (the text, the id and the document's other
    fields), with ``annotations`` (gold), or ``predictions`` of model ``as_predictions``."""
    data: dict[str, Any] = {config.data_key: doc.text}
    if doc.id is not None:
        data["id"] = doc.id
    data.update({k: v for k, v in doc.meta.items() if k not in data and _json_safe(v)})
    if as_predictions is not None:
        return {"data": data, "predictions": [prediction(doc, config, report, as_predictions)]}
    return {"data": data, "annotations": [{"result": results_of(doc, config, report, scores=False)}]}


def _json_safe(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def tasks_of(
    docs: Iterable[Document], config: LabelConfig, as_predictions: str | None = None
) -> tuple[list[dict[str, Any]], WriteReport]:
    """Tasks for ``docs`` (see :func:`task_of`) and what had to be left out."""
    report = WriteReport()
    tasks = [task_of(d, config, report, as_predictions) for d in docs]
    for line in report.lines():
        logger.warning("label studio tasks: %s", line)
    return tasks, report


def schema_of(docs: Iterable[Document]) -> Schema:
    """The labels ``docs`` use, as a :class:`Schema` (the config of converted data)."""
    entities: dict[str, None] = {}
    relations: dict[str, None] = {}
    events: dict[str, dict[str, None]] = {}
    for d in docs:
        entities.update(dict.fromkeys(s.label for s in d.entities))
        for r in d.relations:
            entities.update(dict.fromkeys((r.head.label, r.tail.label)))
            relations[r.label] = None
        for e in d.events:
            events.setdefault(e.label, {}).update(dict.fromkeys(a.role for a in e.arguments if a.role != TRIGGER))
    return Schema(
        tuple(sorted(entities)), tuple(sorted(relations)), tuple((t, tuple(sorted(r))) for t, r in sorted(events.items()))
    )
