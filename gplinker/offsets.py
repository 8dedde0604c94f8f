"""The one place that maps characters to tokens and back, and cuts long texts into windows.

Public boundaries use character offsets (end exclusive); token indices ``(i, j)`` are inclusive
positions inside one window and never leave the library.
"""

from __future__ import annotations

import functools
import itertools
import logging
import unicodedata
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np

from gplinker.settings import ALIGN_POLICIES, default_stride  # noqa: F401 - defined with the settings that use them

logger = logging.getLogger(__name__)

AlignPolicy = Literal["strict", "expand", "contract"]


@dataclass
class Window:
    """A token window over one document, as fed to the encoder.

    ``token_starts``/``token_ends`` hold each position's character span in the document, or -1
    for positions that can never be part of a span (special tokens, padding, empty pieces,
    a lone metaspace piece that overlaps the next token).
    """

    doc_index: int
    input_ids: list[int]
    token_starts: np.ndarray  # (n,) int64
    token_ends: np.ndarray  # (n,) int64
    is_first: bool
    is_last: bool

    @functools.cached_property
    def content(self) -> np.ndarray:
        """(m,) positions that hold text, in order (computed when first asked: decoding a window
        that is its text's only one never needs it)."""
        return np.flatnonzero(self.token_starts >= 0)

    @functools.cached_property
    def char_start(self) -> int:
        """Where the text this window covers starts."""
        c = self.content
        return int(self.token_starts[c[0]]) if len(c) else 0

    @functools.cached_property
    def char_end(self) -> int:
        """Where the text this window covers ends."""
        c = self.content
        return int(self.token_ends[c[-1]]) if len(c) else 0

    @functools.cached_property
    def _content_starts(self) -> np.ndarray:
        return self.token_starts[self.content]  # (m,) for alignment searches

    @functools.cached_property
    def _content_ends(self) -> np.ndarray:
        return self.token_ends[self.content]  # (m,)

    def __len__(self) -> int:
        return len(self.input_ids)


def _marks(text: str) -> set[str]:
    """The combining marks (Unicode category M) that occur in ``text`` (none in ASCII)."""
    if text.isascii():
        return set()
    return {c for c in set(text) if unicodedata.category(c).startswith("M")}


def content_positions(
    offsets: Sequence[Sequence[Sequence[int]]], special: Sequence[Sequence[int]], lengths: Sequence[int], texts: Sequence[str]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per window, per position char offsets (start, end) with non-content positions set to -1,
    computed with numpy over all windows at once.

    A piece that shares its start with the next piece and is covered by it (XLM-R's lone "▁"
    before a CJK character) would make two positions claim one character: the later one is kept.
    A token's end is extended over combining marks (Unicode category M) that follow it and that
    no token covers: accent-stripping tokenizers drop the U+0301 of a decomposed "José", and a
    span could otherwise never end after it, cutting the grapheme."""
    total = int(sum(lengths))
    chain = itertools.chain.from_iterable
    off = np.fromiter(chain(chain(offsets)), dtype=np.int64, count=2 * total).reshape(total, 2)  # (T, 2) (start, end)
    spec = np.fromiter(chain(special), dtype=bool, count=total)  # (T,)
    keep = ~spec & (off[:, 1] > off[:, 0])  # (T,)
    bounds = np.cumsum([0, *lengths])  # window k holds positions bounds[k]:bounds[k+1]
    same = np.ones(max(total - 1, 0), dtype=bool)  # (T-1,) position t and t+1 in one window
    same[bounds[1:-1] - 1] = False
    lone = np.zeros_like(keep)
    lone[:-1] = keep[:-1] & keep[1:] & same & (off[1:, 0] == off[:-1, 0]) & (off[1:, 1] >= off[:-1, 1])
    keep &= ~lone
    starts = np.where(keep, off[:, 0], -1)  # (T,)
    ends = np.where(keep, off[:, 1], -1)  # (T,)
    s_list = [starts[bounds[k] : bounds[k + 1]] for k in range(len(lengths))]
    e_list = [ends[bounds[k] : bounds[k + 1]] for k in range(len(lengths))]
    for k, text in enumerate(texts):
        marks = _marks(text)
        if marks:
            _extend_over_marks(s_list[k], e_list[k], text, marks)
    return s_list, e_list


def _extend_over_marks(starts: np.ndarray, ends: np.ndarray, text: str, marks: set[str]) -> None:
    """Grow, in place, each token end that stops before combining marks no token covers."""
    marked = [t for t in np.flatnonzero(ends >= 0) if ends[t] < len(text) and text[ends[t]] in marks]
    if not marked:
        return
    covered = {c for s, e in zip(starts.tolist(), ends.tolist()) if s >= 0 for c in range(s, e)}
    for t in marked:
        e = int(ends[t])
        while e < len(text) and e not in covered and text[e] in marks:
            e += 1
        ends[t] = e


class Featurizer:
    """Tokenizes texts into windows of at most ``max_length`` tokens overlapping by ``stride``.

    Training and prediction both go through :meth:`windows`, so they see identical inputs.
    """

    def __init__(self, tokenizer, max_length: int = 256, stride: int = 64) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(
                f"{type(tokenizer).__name__} is a slow tokenizer; gplinker needs a fast (Rust) tokenizer "
                "for character offsets. Load it with AutoTokenizer.from_pretrained(..., use_fast=True) "
                "or convert it with transformers' convert_slow_tokenizer."
            )
        n_special = tokenizer.num_special_tokens_to_add(pair=False)
        if max_length <= n_special + 1:
            raise ValueError(f"max_length={max_length} leaves no room for text beside {n_special} special tokens")
        if not 0 <= stride < max_length - n_special:
            raise ValueError(
                f"stride={stride} must be >= 0 and smaller than max_length - {n_special} special tokens "
                f"= {max_length - n_special}; it is the number of tokens consecutive windows share"
            )
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.stride = stride
        self._direct: bool | None = None  # straight from the Rust tokenizer, once checked to agree

    def windows(self, texts: Sequence[str]) -> list[Window]:
        """All windows of all texts, in document order."""
        if not texts:
            return []
        if self._direct is None:
            self._direct = self._direct_works()
        ids, offsets, special, doc_of = self._encode_direct(texts) if self._direct else self._encode_wrapped(texts)
        return self._build(texts, ids, offsets, special, doc_of)

    def _encode_wrapped(self, texts: Sequence[str]) -> tuple[list, list, list, list]:
        """Through the transformers tokenizer: (ids, offsets, special-token masks, text index) per window."""
        enc = self.tokenizer(
            list(texts),
            max_length=self.max_length,
            truncation=True,
            stride=self.stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
            add_special_tokens=True,
        )
        return enc["input_ids"], enc["offset_mapping"], enc["special_tokens_mask"], list(enc["overflow_to_sample_mapping"])

    def _encode_direct(self, texts: Sequence[str]) -> tuple[list, list, list, list]:
        """The same straight from the Rust tokenizer, truncation and stride set as transformers sets
        them (a text's overflowing windows follow it): no per-window dictionaries in between."""
        backend = self.tokenizer.backend_tokenizer
        target = {"max_length": self.max_length, "stride": self.stride, "strategy": "longest_first"}
        target["direction"] = self.tokenizer.truncation_side
        current = backend.truncation
        if current is None or any(current.get(k) != v for k, v in target.items()):
            backend.enable_truncation(**target)
        if backend.padding is not None:
            backend.no_padding()
        ids, offsets, special, doc_of = [], [], [], []
        for d, first in enumerate(backend.encode_batch(list(texts), add_special_tokens=True)):
            for e in (first, *first.overflowing):
                ids.append(e.ids)
                offsets.append(e.offsets)
                special.append(e.special_tokens_mask)
                doc_of.append(d)
        return ids, offsets, special, doc_of

    def _direct_works(self) -> bool:
        """Whether the direct path gives exactly what the transformers call gives on probe texts
        (long ones overflow into several windows); a tokenizer class that adds its own steps keeps
        the transformers call."""
        if not hasattr(self.tokenizer, "backend_tokenizer") or not hasattr(self.tokenizer, "truncation_side"):
            return False
        probe = [_PROBE, _PROBE * (self.max_length // 4 + 2), "", " "]
        try:
            direct, wrapped = self._encode_direct(probe), self._encode_wrapped(probe)
        except Exception:  # noqa: BLE001 - any difference keeps the transformers call
            return False
        return all(_plain(x) == _plain(y) for x, y in zip(direct, wrapped))

    def _build(self, texts: Sequence[str], ids: list, offsets: list, special: list, doc_of: list[int]) -> list[Window]:
        """Windows from per-window token ids, offsets and special masks, the content positions of all
        windows computed in one numpy pass (:func:`content_positions`)."""
        lengths = [len(x) for x in ids]
        starts, ends = content_positions(offsets, special, lengths, [texts[d] for d in doc_of])
        out: list[Window] = []
        for w, doc in enumerate(doc_of):
            out.append(
                Window(
                    doc_index=doc,
                    input_ids=list(ids[w]),
                    token_starts=starts[w],
                    token_ends=ends[w],
                    is_first=w == 0 or doc_of[w - 1] != doc,
                    is_last=w == len(doc_of) - 1 or doc_of[w + 1] != doc,
                )
            )
        return out


def _plain(value: Any) -> Any:
    """Nested sequences as lists, to compare the two paths' outputs."""
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


_PROBE = "Zürich’s José (Josée) met 北京 🤖 co-op e\u0301 A.I. résumés—ok?  "


def align_span(window: Window, start: int, end: int, policy: AlignPolicy = "expand") -> tuple[int, int] | None:
    """Token positions ``(i, j)`` (inclusive) of char span ``[start, end)`` in ``window``.

    ``strict``: both ends must fall on token boundaries. ``expand``: grow to the tokens that
    touch the span. ``contract``: shrink to the tokens wholly inside it. Returns None when the
    policy cannot place the span or the span is not wholly inside this window's text.
    """
    pos = window.content
    if len(pos) == 0 or start < window.char_start or end > window.char_end or end <= start:
        return None
    ts, te = window._content_starts, window._content_ends
    if policy == "strict":
        a = np.flatnonzero(ts == start)
        b = np.flatnonzero(te == end)
        if len(a) == 0 or len(b) == 0:
            return None
        a, b = a[0], b[-1]
    elif policy == "expand":
        a = int(np.searchsorted(te, start, side="right"))  # first token ending after `start`
        b = int(np.searchsorted(ts, end, side="left")) - 1  # last token starting before `end`
    elif policy == "contract":
        a = int(np.searchsorted(ts, start, side="left"))  # first token starting at/after `start`
        b = int(np.searchsorted(te, end, side="right")) - 1  # last token ending at/before `end`
    else:
        raise ValueError(f"unknown alignment policy {policy!r}; choose one of {ALIGN_POLICIES}")
    if not (0 <= a <= b < len(pos)):
        return None
    return int(pos[a]), int(pos[b])


def token_span_to_chars(window: Window, i: int, j: int) -> tuple[int, int]:
    """Character span ``[start, end)`` of inclusive token positions ``i..j``."""
    return int(window.token_starts[i]), int(window.token_ends[j])


def at_cut(window: Window, i: np.ndarray, j: np.ndarray, link: bool = False) -> np.ndarray:
    """(N,) which token spans i..j (or, with ``link``, pairs of tokens i, j) touch an edge where
    the text was cut into another window. Only a span's first token at a left cut or its last
    token at a right cut can be truncated; a link cell is suspect when either token is at a cut."""
    pos = window.content
    if len(pos) == 0:
        return np.zeros(len(i), dtype=bool)
    left, right = (not window.is_first), (not window.is_last)
    if not link:
        return (left & (i == pos[0])) | (right & (j == pos[-1]))
    at = np.zeros(len(i), dtype=bool)
    for x in (i, j):
        at |= (left & (x == pos[0])) | (right & (x == pos[-1]))
    return at


def touches_cut(window: Window, i: int, j: int) -> bool:
    """Whether token span i..j touches an edge where the text was cut into another window."""
    return bool(at_cut(window, np.array([i]), np.array([j]))[0])


def windows_by_document(windows: Sequence[Window], n_docs: int) -> list[list[int]]:
    """The indices of each document's windows, in text order."""
    by_doc: list[list[int]] = [[] for _ in range(n_docs)]
    for k, w in enumerate(windows):
        by_doc[w.doc_index].append(k)
    return by_doc


class WindowIndex:
    """The windows of one document, searchable by character range (windows are in text order)."""

    def __init__(self, windows: Sequence[Window]) -> None:
        self.windows = list(windows)
        self.starts = np.array([w.char_start for w in self.windows], dtype=np.int64)  # non-decreasing

    def owners(self, start: int, end: int) -> list[int]:
        """Windows holding ``[start, end)`` wholly and away from their cut edges."""
        out = []
        last = int(np.searchsorted(self.starts, start, side="right"))  # windows starting at or before `start`
        for k in range(last - 1, -1, -1):
            w = self.windows[k]
            if w.char_end < start:  # earlier windows end even sooner
                break
            if end > w.char_end:
                continue
            span = align_span(w, start, end, "expand")
            if span is not None and not touches_cut(w, *span):
                out.append(k)
        return sorted(out)

    def held_elsewhere(self, k: int, *spans: tuple[int, int]) -> bool:
        """Whether a window other than ``k`` holds all ``spans`` away from its cut edges."""
        common = None
        for s, e in spans:
            mine = set(self.owners(s, e))
            common = mine if common is None else common & mine
        return bool(common - {k}) if common is not None else False
