"""The one place that maps characters to tokens and back, and cuts long texts into windows.

Public boundaries use character offsets (end exclusive); token indices ``(i, j)`` are inclusive
positions inside one window and never leave the library.
"""

from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass
from typing import Literal, Sequence

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

    def __post_init__(self) -> None:
        self.content = np.flatnonzero(self.token_starts >= 0)  # (m,) positions that hold text, in order
        c = self.content
        self.char_start = int(self.token_starts[c[0]]) if len(c) else 0  # text this window covers
        self.char_end = int(self.token_ends[c[-1]]) if len(c) else 0
        self._content_starts = self.token_starts[c]  # (m,) for alignment searches
        self._content_ends = self.token_ends[c]

    def __len__(self) -> int:
        return len(self.input_ids)


def _marks(text: str) -> set[str]:
    """The combining marks (Unicode category M) that occur in ``text`` (none in ASCII)."""
    if text.isascii():
        return set()
    return {c for c in set(text) if unicodedata.category(c).startswith("M")}


def _content_positions(offsets: Sequence[Sequence[int]], special: Sequence[int], text: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Per-position char offsets with non-content positions set to -1, computed with numpy over
    the whole window.

    A token's end is extended over combining marks (Unicode category M) that follow it and that
    no token covers: accent-stripping tokenizers drop the U+0301 of a decomposed "José", and a
    span could otherwise never end after it, cutting the grapheme."""
    off = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)  # (n, 2) character (start, end) per position
    keep = ~np.asarray(special, dtype=bool) & (off[:, 1] > off[:, 0])  # (n,)
    # A piece that shares its start with the next piece and is covered by it (XLM-R's lone "▁"
    # before a CJK character) would make two positions claim one character: keep the later one.
    lone = np.zeros_like(keep)
    lone[:-1] = keep[:-1] & keep[1:] & (off[1:, 0] == off[:-1, 0]) & (off[1:, 1] >= off[:-1, 1])
    keep &= ~lone
    starts = np.where(keep, off[:, 0], -1)  # (n,)
    ends = np.where(keep, off[:, 1], -1)  # (n,)
    marks = _marks(text)
    if marks:
        _extend_over_marks(starts, ends, text, marks)
    return starts, ends


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

    def windows(self, texts: Sequence[str]) -> list[Window]:
        """All windows of all texts, in document order."""
        if not texts:
            return []
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
        mapping = enc["overflow_to_sample_mapping"]
        out: list[Window] = []
        for w, doc in enumerate(mapping):
            starts, ends = _content_positions(enc["offset_mapping"][w], enc["special_tokens_mask"][w], texts[int(doc)])
            out.append(
                Window(
                    doc_index=int(doc),
                    input_ids=list(enc["input_ids"][w]),
                    token_starts=starts,
                    token_ends=ends,
                    is_first=w == 0 or mapping[w - 1] != doc,
                    is_last=w == len(mapping) - 1 or mapping[w + 1] != doc,
                )
            )
        return out


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
