"""Reading and writing records, with errors that name the file, the line and the fix."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from gplinker.structures import Document


class DataError(ValueError):
    """Bad input data: says which file, which line (1-based), what is wrong and how to fix it."""

    def __init__(self, path: str | Path, line: int | None, problem: str, fix: str = "") -> None:
        self.path, self.line, self.problem, self.fix = str(path), line, problem, fix
        where = f"{path}, line {line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}" + (f" — {fix}" if fix else ""))


def read_text(path: str | Path) -> str:
    """The whole file as UTF-8 (a BOM is dropped); a decoding error names the line."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(path, line, f"byte {data[e.start]:#x} is not valid UTF-8", "save the file as UTF-8") from e


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object) for each non-blank line of a JSONL file."""
    for no, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield no, json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(path, no, f"not valid JSON ({e.msg} at column {e.colno})",
                            "each line must be one JSON object") from e


def load_json_records(path: str | Path) -> Iterator[tuple[int | None, Any]]:
    """Records of a JSON array file or of a JSONL file, with line numbers where known."""
    text = read_text(path)
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(path, e.lineno, f"not valid JSON ({e.msg} at column {e.colno})",
                            "the file must hold one JSON array, or one JSON object per line") from e
        # Line numbers of array elements: position of each top-level element is not kept by
        # json; report the element index instead, 1-based, in the message.
        for k, rec in enumerate(records, start=1):
            yield -k, rec
    else:
        yield from iter_jsonl(path)


def where(path: str | Path, no: int | None) -> tuple[str, int | None, str]:
    """Normalise a record position: negative numbers are 1-based array element indices."""
    if no is not None and no < 0:
        return str(path), None, f" (record {-no} of the JSON array)"
    return str(path), no, ""


def record_error(path: str | Path, no: int | None, problem: str, fix: str = "") -> DataError:
    p, line, suffix = where(path, no)
    return DataError(p, line, problem + suffix, fix)


def check_surface(path: str | Path, no: int | None, text: str, start: int, end: int, surface: str | None,
                  what: str = "span", fix: str = "check the offsets") -> None:
    """A DataError unless ``[start, end)`` lies in ``text`` and reads ``surface`` (when given)."""
    if not (0 <= start < end <= len(text)):
        raise record_error(path, no, f"{what} {surface!r} at [{start}, {end}) is outside the text of length {len(text)}", fix)
    if surface is not None and text[start:end] != surface:
        raise record_error(path, no, f"{what} {surface!r} does not match the text at its offsets ({text[start:end]!r})", fix)


def read_documents_jsonl(path: str | Path) -> list[Document]:
    """Canonical gplinker JSONL: ``{"text", "entities": [{"start", "end", "label"}], ...}``."""
    docs = []
    for no, obj in load_json_records(path):
        try:
            if not isinstance(obj, dict):
                raise ValueError("record is not a JSON object")
            docs.append(Document.from_json(obj))
        except (KeyError, TypeError, ValueError) as e:
            raise record_error(path, no, f"bad record: {e}",
                               'expected {"text": ..., "entities": [{"start": int, "end": int, "label": str}]} '
                               "with character offsets, end exclusive") from e
    return docs


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    """Write one JSON object per line (UTF-8, not ASCII-escaped); returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    return n


Reader = Callable[[str | Path], list[Document]]
Sniffer = Callable[[str | Path, str], bool]


def resolve_format(path: str | Path, fmt: str, readers: dict, sniffers: dict[str, Sniffer], task: str) -> str:
    """The format to read ``path`` with: ``fmt`` checked against ``readers``, or detected when ``auto``."""
    if not Path(path).is_file():
        raise DataError(path, None, "no such file", "check the path")
    if fmt == "auto":
        fmt = detect_format(path, sniffers)
        logging.getLogger(__name__).info("%s: detected format %s", path, fmt)
    if fmt not in readers:
        raise ValueError(f"unknown {task} format {fmt!r}; choose one of auto, {', '.join(readers)}")
    return fmt


def detect_format(path: str | Path, sniffers: dict[str, Sniffer]) -> str:
    """The first format whose sniffer accepts the file's head; a DataError naming the choices if none."""
    head = read_text(path)[:20000]
    for name, sniff in sniffers.items():
        if sniff(path, head):
            return name
    raise DataError(path, None, "could not detect the dataset format",
                    f"pass --format with one of: {', '.join(sniffers)}")


def tokens_to_text(tokens: list[str] | tuple[str, ...], sep: str = " ") -> tuple[str, list[int], list[int]]:
    """Join tokens; returns the text and each token's character start and end (exclusive)."""
    starts, ends, pos = [], [], 0
    for k, tok in enumerate(tokens):
        if k:
            pos += len(sep)
        starts.append(pos)
        pos += len(tok)
        ends.append(pos)
    return sep.join(tokens), starts, ends


def _is_word_char(c: str) -> bool:
    """Letters and digits of scripts that separate words with spaces (not CJK)."""
    return c.isalnum() and not ("\u2e80" <= c <= "\u9fff" or "\uf900" <= c <= "\ufaff" or "\U00020000" <= c)


def find_occurrences(text: str, surface: str) -> list[tuple[int, int]]:
    """Every ``[start, end)`` where ``surface`` occurs in ``text`` without cutting a word.

    Overlapping occurrences count. A match may not start or end inside a run of letters/digits
    (so "12" is found in "Apollo 12" but not in "2012"); CJK text has no such boundaries.
    """
    if not surface:
        return []
    out, k = [], text.find(surface)
    while k != -1:
        e = k + len(surface)
        left_ok = k == 0 or not (_is_word_char(text[k - 1]) and _is_word_char(text[k]))
        right_ok = e == len(text) or not (_is_word_char(text[e - 1]) and _is_word_char(text[e]))
        if left_ok and right_ok:
            out.append((k, e))
        k = text.find(surface, k + 1)
    if not out:  # a surface glued to other letters (e.g. "U.S.-based"): accept raw matches
        k = text.find(surface)
        while k != -1:
            out.append((k, k + len(surface)))
            k = text.find(surface, k + 1)
    return out
