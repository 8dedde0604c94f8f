"""Optional dependencies (the package's extras): one check, one message naming the install."""

from __future__ import annotations

import importlib
from typing import Sequence


def require(modules: Sequence[str], what: str, extra: str) -> None:
    """Import ``modules`` or raise ValueError: ``what`` (e.g. "serving needs FastAPI and uvicorn")
    and the pip command that installs the ``extra``."""
    try:
        for name in modules:
            importlib.import_module(name)
    except ImportError as e:
        raise ValueError(f'{what}: pip install -e ".[{extra}]"') from e
