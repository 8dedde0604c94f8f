"""Reading and writing records, with errors that name the file, the line and the fix."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from gplinker import atomic
from gplinker.structures import Document, text_problem
from gplinker.structures import _offset as as_offset  # noqa: F401 - readers' strict offsets

READ_ERRORS = (
    KeyError,
    TypeError,
    ValueError,
    AttributeError,
    IndexError,
    RecursionError,
)  # a malformed record, as readers see it

logger = logging.getLogger(__name__)


class DataError(ValueError):
    """Bad input data: says which file, which line (1-based), what is wrong and how to fix it."""

    def __init__(self, path: str | Path, line: int | None, problem: str, fix: str = "") -> None:
        self.path, self.line, self.problem, self.fix = str(path), line, problem, fix
        where = f"{path}, line {line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}" + (f" — {fix}" if fix else ""))


def read_text(path: str | Path) -> str:
    """The whole file as UTF-8 (a BOM is dropped); a decoding error names the line."""
    data = read_bytes(path)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(path, line, f"byte {data[e.start]:#x} is not valid UTF-8", "save the file as UTF-8") from e


def read_bytes(path: str | Path) -> bytes:
    """The file's bytes; a missing file or a directory is a DataError naming the fix."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError as e:
        raise DataError(path, None, "no such file", "check the path") from e
    except IsADirectoryError as e:
        raise DataError(path, None, "is a directory, not a file", "pass one file") from e
    except PermissionError as e:
        raise DataError(path, None, "cannot be read (permission denied)", "check the file's permissions") from e


def split_lines(text: str) -> list[str]:
    """Lines split on ``\n`` only (a trailing ``\r`` dropped). ``str.splitlines`` also splits on
    U+2028, U+2029, U+0085 and control characters that JSON strings may hold raw, so gplinker
    could not read back its own output; line numbers then match every editor's."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object) for each non-blank line of a JSONL file."""
    for no, line in enumerate(split_lines(read_text(path)), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(path, no, f"not valid JSON ({e.msg} at column {e.colno})", "each line must be one JSON object") from e
        except RecursionError as e:
            raise DataError(path, no, "JSON nested too deeply", "each line must be one JSON object") from e
        yield no, obj


def load_json_records(path: str | Path) -> Iterator[tuple[int | None, Any]]:
    """Records of a JSON array file or of a JSONL file, with line numbers where known."""
    text = read_text(path)
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(
                path,
                e.lineno,
                f"not valid JSON ({e.msg} at column {e.colno})",
                "the file must hold one JSON array, or one JSON object per line",
            ) from e
        except RecursionError as e:
            raise DataError(path, None, "JSON nested too deeply", "the file must hold one JSON array of records") from e
        if not isinstance(records, list):
            raise DataError(path, None, "not a JSON array", "the file must hold one JSON array, or one JSON object per line")
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


def check_surface(
    path: str | Path,
    no: int | None,
    text: str,
    start: int,
    end: int,
    surface: str | None,
    what: str = "span",
    fix: str = "check the offsets",
) -> None:
    """A DataError unless ``[start, end)`` lies in ``text`` and reads ``surface`` (when given)."""
    if not isinstance(text, str):
        raise record_error(path, no, f"the text is {type(text).__name__}, not a string", "give every record a text string")
    start, end = as_offset(start, f"{what} start"), as_offset(end, f"{what} end")
    if not (0 <= start < end <= len(text)):
        raise record_error(path, no, f"{what} {surface!r} at [{start}, {end}) is outside the text of length {len(text)}", fix)
    if surface is not None and text[start:end] != surface:
        raise record_error(path, no, f"{what} {surface!r} does not match the text at its offsets ({text[start:end]!r})", fix)


def read_records(path: str | Path, parse: Callable[[Any, int | None], Document], what: str, expected: str) -> list[Document]:
    """The documents of a JSON array or JSONL file, one record at a time through ``parse(obj, no)``;
    a malformed record is one :class:`DataError` naming the file, the line (or array record), the
    format ``what`` and the ``expected`` shape. Every published-format reader is this loop."""
    docs = []
    for no, obj in load_json_records(path):
        try:
            docs.append(parse(obj, no))
        except DataError:
            raise
        except READ_ERRORS as e:
            raise record_error(path, no, f"not a {what} record ({type(e).__name__}: {e})", expected) from e
    return docs


def token_span(path: str | Path, no: int | None, starts: list[int], ends: list[int], start: Any, end: Any) -> tuple[int, int]:
    """Character ``(start, end)`` of the token range ``[start, end)`` (end exclusive) of tokens
    joined by :func:`tokens_to_text`; a DataError when the range is not inside the tokens."""
    a, b = as_offset(start, "start"), as_offset(end, "end")
    if not 0 <= a < b <= len(starts):
        raise record_error(
            path, no, f"entity token range [{a}, {b}) is outside the {len(starts)} tokens", "token end indices are exclusive"
        )
    return starts[a], ends[b - 1]


def read_documents_jsonl(path: str | Path) -> list[Document]:
    """Canonical gplinker JSONL: ``{"text", "entities": [{"start", "end", "label"}], ...}``."""
    docs = []
    for no, obj in load_json_records(path):
        try:
            if not isinstance(obj, dict):
                raise ValueError("record is not a JSON object")
            docs.append(Document.from_json(obj))
        except READ_ERRORS as e:
            raise record_error(
                path,
                no,
                f"bad record: {e}",
                'expected {"text": ..., "entities": [{"start": int, "end": int, "label": str}]} '
                "with character offsets, end exclusive",
            ) from e
    return docs


_LINE_BREAKS = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\u0085": "\\u0085"})


def dumps(obj: Any, indent: int | None = None) -> str:
    """JSON text safe for any line reader and any UTF-8 writer: U+2028, U+2029 and U+0085 (which
    many readers take for line breaks) escaped; a lone surrogate (not UTF-8) escaped as ``\\udXXX``
    by falling back to ASCII escapes for that object. Readers get the same strings back."""
    text = json.dumps(obj, ensure_ascii=False, indent=indent)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(obj, ensure_ascii=True, indent=indent)
    return text.translate(_LINE_BREAKS)


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    """Write one JSON object per line (UTF-8, not ASCII-escaped, see :func:`dumps`) atomically
    (``-``: standard output); returns the count."""
    n = 0
    with atomic.atomic_open(path, "w") as f:
        for rec in records:
            f.write(dumps(rec) + "\n")
            n += 1
    return n


def write_json_array(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    """Write a JSON array, one record a line, streamed and atomic (``-``: standard output); the
    form tools such as Label Studio import. Returns the count."""
    n = 0
    with atomic.atomic_open(path, "w") as f:
        f.write("[")
        for rec in records:
            f.write(("\n" if n == 0 else ",\n") + dumps(rec))
            n += 1
        f.write("\n]\n")
    return n


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented UTF-8 JSON atomically (``-``: standard output)."""
    with atomic.atomic_open(path, "w") as f:
        f.write(dumps(obj, indent=2) + "\n")


Sniffer = Callable[[str], bool]


def detect_format(path: str | Path, sniffers: dict[str, Sniffer]) -> str:
    """The first format whose sniffer accepts the file's head; a DataError naming the choices if none."""
    head = read_text(path)[:20000]
    for name, sniff in sniffers.items():
        if sniff(head):
            return name
    raise DataError(path, None, "could not detect the dataset format", f"pass --format with one of: {', '.join(sniffers)}")


INPUT_FORMATS = ("auto", "text", "jsonl")
_META_SKIP = ("text", "id", "entities", "relations", "events")


@dataclass
class InputRecord:
    """One record of a prediction input: its 1-based line and a document, or an error."""

    line: int
    doc: Document | None = None
    error: str | None = None


def _looks_like_jsonl(first: bytes) -> bool:
    try:
        return isinstance(json.loads(first.decode("utf-8")), dict)
    except (UnicodeDecodeError, ValueError):
        return False


def input_format(path: str | Path, fmt: str = "auto") -> str:
    """``text`` or ``jsonl`` for a prediction input: ``fmt`` unless ``auto``; then by extension
    (``.jsonl``, ``.ndjson``, ``.json`` / ``.txt``), else JSONL when the first non-blank line
    (BOM stripped) is a JSON object."""
    if fmt not in INPUT_FORMATS:
        raise ValueError(f"unknown input format {fmt!r}; choose one of {', '.join(INPUT_FORMATS)}")
    if fmt != "auto":
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix == ".txt":
        return "text"
    data = read_bytes(path)
    data = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    first = next((ln.strip() for ln in data.split(b"\n") if ln.strip()), b"")
    return "jsonl" if _looks_like_jsonl(first) else "text"


def iter_inputs(path: str | Path, fmt: str = "auto") -> Iterator[InputRecord]:
    """One :class:`InputRecord` per line of a plain-text (one text a line) or JSONL (objects with a
    ``text`` string) file, streamed; bad lines become records with an ``error`` naming the file,
    the line and the fix, so no input record is ever lost."""
    fmt = input_format(path, fmt)
    try:
        f = open(path, "rb")
    except FileNotFoundError as e:
        raise DataError(path, None, "no such file", "check the path") from e
    except IsADirectoryError as e:
        raise DataError(path, None, "is a directory, not a file", "pass one file") from e
    with f:
        no = 0
        pending = b""
        for chunk in iter(lambda: f.read(1 << 20), b""):
            parts = (pending + chunk).split(b"\n")
            pending = parts.pop()
            for raw in parts:
                no += 1
                yield input_record(path, no, raw, fmt)
        if pending:
            no += 1
            yield input_record(path, no, pending, fmt)


def input_record(path: str | Path, no: int, raw: bytes, fmt: str) -> InputRecord:
    """Line ``no`` of a prediction input (its raw bytes, ``fmt`` text or jsonl) as an InputRecord."""
    raw = raw[:-1] if raw.endswith(b"\r") else raw
    if no == 1 and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return InputRecord(no, error=f"{path}, line {no}: byte {raw[e.start]:#x} is not valid UTF-8 — save the file as UTF-8")
    if fmt == "text":
        problem = text_problem(line)
        if problem:
            return InputRecord(no, error=f"{path}, line {no}: {problem}")
        return InputRecord(no, Document(text=line))
    if not line.strip():
        return InputRecord(no, error=f"{path}, line {no}: empty line in a JSONL file — remove it or give it a record")
    try:
        obj = json.loads(line)
    except ValueError as e:
        return InputRecord(
            no,
            error=f"{path}, line {no}: not valid JSON ({e}) — each line must be one JSON object; "
            "pass --input-format text for plain text",
        )
    if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
        return InputRecord(
            no, error=f'{path}, line {no}: no string field "text" — each line must be a JSON object with a "text" string'
        )
    problem = text_problem(obj["text"])
    if problem:
        return InputRecord(no, error=f'{path}, line {no}: field "text": {problem}')
    meta = {k: v for k, v in obj.items() if k not in _META_SKIP}
    return InputRecord(no, Document(text=obj["text"], id=None if obj.get("id") is None else str(obj["id"]), meta=meta))


def token_list(value: Any) -> list[str]:
    """A record's ``tokens``: a list of non-empty strings (a string is not split into characters)."""
    if not isinstance(value, list) or not all(isinstance(t, str) and t for t in value):
        raise ValueError("tokens must be a list of non-empty strings")
    return value


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
