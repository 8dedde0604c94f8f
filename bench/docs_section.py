"""Where benchmarks write their tables: one marked section of a docs page, replaced in place."""

from __future__ import annotations

from pathlib import Path


def replace_section(doc: Path, name: str, body: str) -> None:
    """Put ``body`` between ``<!-- name -->`` and ``<!-- /name -->`` of ``doc`` (the markers are
    added at the end of the page the first time), atomically."""
    from gplinker import atomic

    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    text = doc.read_text(encoding="utf-8")
    block = f"{start}\n{body.strip()}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    atomic.write_text(doc, text)
