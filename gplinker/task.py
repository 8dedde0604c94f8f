"""The contract between the library and a task, in characters only.

A task declares its heads, turns a document into character-level targets, and turns one
document's character-level cells back into structures. Tokens, windows, alignment and the merging
of windows belong to the library (:mod:`gplinker.alignment`); a task never sees them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Sequence

from gplinker.cells import DocumentCells
from gplinker.structures import Document

Axes = Literal["span", "starts", "ends"]

CharSpan = tuple[int, int]  # (start, end), characters, end exclusive
SpanTarget = tuple[int, int, int]  # (channel, start, end) of a span head
PairTarget = tuple[int, CharSpan, CharSpan]  # (channel, span a, span b) of a link head
Targets = dict[str, set]  # head name -> its SpanTargets (span heads) or PairTargets (link heads)
MAX_LABELS = 100_000  # labels one saved task may list


def label_list(value: Any, what: str = "labels") -> list[str]:
    """Labels as a saved config must hold them: a list of distinct non-empty strings (a ValueError
    naming the first bad entry otherwise). ``[1, null, {}]`` is damage, not labels."""
    if not isinstance(value, list):
        raise ValueError(f"{what} must be a list of strings, got {type(value).__name__}")
    if len(value) > MAX_LABELS:
        raise ValueError(f"{what} lists {len(value)} labels, over the {MAX_LABELS} gplinker supports")
    for k, x in enumerate(value):
        if not isinstance(x, str) or not x:
            raise ValueError(f"{what}[{k}] is {x!r}, not a non-empty string")
    if len(set(value)) != len(value):
        raise ValueError(f"{what} lists a label twice ({next(x for x in value if value.count(x) > 1)!r})")
    return list(value)


def config_flag(config: dict[str, Any], key: str, default: bool) -> bool:
    """A true/false value of a saved config (a string or a number is damage, not a flag)."""
    value = config.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false, got {value!r}")
    return value


@dataclass(frozen=True)
class Schema:
    """What a task's items are called, for tools that need the label sets up front (an annotation
    project's labelling config): entity labels, relation predicates, and each event type's roles
    (the trigger not among them)."""

    entities: tuple[str, ...] = ()
    relations: tuple[str, ...] = ()
    events: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (event type, its roles)

    def merged(self, other: "Schema") -> "Schema":
        """Both schemas' labels, this one's first (a pipeline of several models)."""
        events = dict(self.events)
        for etype, roles in other.events:
            events[etype] = tuple(dict.fromkeys(events.get(etype, ()) + roles))
        return Schema(
            tuple(dict.fromkeys(self.entities + other.entities)),
            tuple(dict.fromkeys(self.relations + other.relations)),
            tuple(events.items()),
        )

    def roles(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r for _, roles in self.events for r in roles))


@dataclass(frozen=True)
class HeadSpec:
    """One GlobalPointer head of a task.

    ``axes`` says what a cell (i, j) of the head stands for: ``span``, the span from token i to
    token j; ``starts``, the first tokens of two spans (GPLinker's head-head link); ``ends``, their
    last tokens (tail-tail link). Link heads take :data:`PairTarget` targets; with ``tril_mask``
    a pair's cell is stored as (min, max), so the pair is unordered. ``groups``: for each channel,
    the names of the groups of labels it shares a learned bias with (an event argument label
    (type, role) is in its type's group and its role's group); empty: channels share nothing.
    """

    name: str
    channels: int
    use_rope: bool = True
    tril_mask: bool = True
    axes: Axes = "span"
    groups: tuple[tuple[str, ...], ...] = ()


class Task(ABC):
    """A task: heads, character-level targets, decoding of character-level cells, scoring."""

    name: ClassVar[str] = ""
    options_class: ClassVar[type] = object  # the typed options dataclass of from_documents
    # Predicted / gold count of the first level that the link threshold chosen on dev must keep
    # when it can (None: F1 alone decides).
    count_band: ClassVar[tuple[float, float] | None] = None
    main_level: ClassVar[str] = ""  # the level of :meth:`evaluate` whose F1 selects models (entities, triples, events)
    searched: ClassVar[tuple[str, ...]] = ()  # switches of options_class that ``tune``'s default space tries both ways

    @abstractmethod
    def head_specs(self) -> list[HeadSpec]:
        """The heads this task needs, in a fixed order."""

    @abstractmethod
    def targets(self, doc: Document) -> Targets:
        """Gold of ``doc`` as character-level targets per head (unknown labels left out)."""

    @abstractmethod
    def decode(self, doc: Document, cells: DocumentCells) -> Document:
        """Predicted annotations of ``doc`` from its positive cells (characters, windows merged)."""

    @abstractmethod
    def evaluate(self, gold: Sequence[Document], pred: Sequence[Document]) -> dict[str, Any]:
        """Metrics, a dict of levels each with precision / recall / f1 (and per_label)."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON-serialisable settings from which :meth:`from_config` rebuilds the task."""

    @classmethod
    @abstractmethod
    def from_config(cls, config: dict[str, Any]) -> "Task":
        """The task saved by :meth:`config` (a ValueError names a missing or wrong key)."""

    @classmethod
    @abstractmethod
    def from_documents(cls, docs: Sequence[Document], options: Any = None) -> "Task":
        """A task whose label set is read off training documents; ``options`` is an instance of
        :attr:`options_class` (None: its defaults)."""

    def channel_labels(self) -> dict[str, list[str]]:
        """The label of each channel of each head (fine-tuning maps channels by these names)."""
        raise NotImplementedError(f"task {self.name!r} does not say what its channels are; it cannot be fine-tuned")

    def extended_with(self, other: "Task") -> "Task":
        """This task with the labels of ``other`` (same kind, trained on new data) added after its
        own, and ``other``'s decoding options; used to fine-tune a saved model."""
        raise NotImplementedError(f"task {self.name!r} cannot be extended with new labels")

    def override(self, name: str, value: Any) -> None:
        """Change one of the task's options on a loaded model, at prediction time (the options whose
        :class:`gplinker.options.OptionSpec` has ``at_prediction``)."""
        raise ValueError(f"task {self.name!r} has no option {name!r} to change at prediction time")

    def top_labels(self) -> set[str]:
        """The labels a person names this task's items by (entity types, predicates, event types)."""
        return set()

    def labels_in(self, doc: Document) -> set[str]:
        """The :meth:`top_labels` kind of label of ``doc``'s gold items."""
        return set()

    def schema(self) -> Schema:
        """The labels of the items this task predicts (:class:`Schema`)."""
        return Schema()

    def labels_summary(self) -> dict[str, Any]:
        """The label sets a person wants to see (``gplinker info``, the server's ``/info``)."""
        return {k: v for k, v in self.config().items() if isinstance(v, list)}
