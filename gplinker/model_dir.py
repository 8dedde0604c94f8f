"""A saved model is a directory of data: JSON and safetensors, nothing executable.

``gplinker.json`` names the task by its registry name and holds its labels, the model settings,
training information, and a SHA-256 fingerprint of every weight file; ``heads.safetensors`` holds
the GlobalPointer heads; ``encoder/`` is a standard Hugging Face checkpoint (safetensors) with its
tokenizer. Saving is atomic (:func:`gplinker.atomic.atomic_directory`); loading validates every
part and refuses a directory whose files do not belong together, naming the file and the fix.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from gplinker.atomic import recover_directory

logger = logging.getLogger(__name__)

CONFIG_NAME = "gplinker.json"
HEADS_NAME = "heads.safetensors"
ENCODER_DIR = "encoder"
FORMAT_VERSION = 1


class ModelDirError(ValueError):
    """A model directory that cannot be loaded: which file, what is wrong, how to fix it."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weight_files(path: Path) -> list[str]:
    """Relative paths of the weight files of a model directory (what the fingerprint covers)."""
    files = [HEADS_NAME] if (path / HEADS_NAME).is_file() else []
    enc = path / ENCODER_DIR
    if enc.is_dir():
        files += sorted(f"{ENCODER_DIR}/{p.name}" for p in enc.iterdir() if p.suffix in (".safetensors", ".bin", ".pt", ".pth"))
    return files


def fingerprint(path: Path) -> dict[str, str]:
    return {rel: sha256(path / rel) for rel in weight_files(path)}


def resolve(path: str | Path) -> Path:
    """The model directory to load: ``path``, or the complete previous version an interrupted save
    left beside it; a clear error when it is neither."""
    p = Path(path)
    if not p.exists():
        previous = recover_directory(p)
        if previous is not None:
            logger.warning("%s is missing but %s holds the complete previous model (a save was interrupted); loading that",
                           p, previous)
            return previous
        raise ModelDirError(f"{p}: the model directory does not exist — pass the model/ folder that 'train' wrote "
                            "(for example runs/quickstart/ner/model)")
    if not p.is_dir():
        raise ModelDirError(f"{p}: is a file, not a model directory — pass the folder holding {CONFIG_NAME}")
    if not (p / CONFIG_NAME).is_file():
        hint = f" (did you mean {p / 'model'}?)" if (p / "model" / CONFIG_NAME).is_file() else ""
        raise ModelDirError(f"{p}: not a gplinker model directory, no {CONFIG_NAME}{hint} — pass the model/ folder that 'train' wrote")
    return p


def read_config(path: Path, task_names: list[str]) -> dict[str, Any]:
    """``gplinker.json`` parsed and checked: a known task name, its config, the weight files
    present and matching their fingerprints."""
    file = path / CONFIG_NAME
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelDirError(f"{file}: not valid JSON ({e}) — the file is damaged; save or copy the model again") from e
    if not isinstance(config, dict):
        raise ModelDirError(f"{file}: not a JSON object — the file is damaged; save or copy the model again")
    task = config.get("task")
    if not isinstance(task, str) or task not in task_names:
        raise ModelDirError(f"{file}: \"task\" is {task!r}, not a registered task ({', '.join(task_names)}) — a model "
                            "directory names its task, and a task of your own must be registered in Python before loading")
    if not isinstance(config.get("task_config"), dict):
        raise ModelDirError(f"{file}: no \"task_config\" object — the file is damaged; save or copy the model again")
    if not (path / HEADS_NAME).is_file():
        raise ModelDirError(f"{path / HEADS_NAME}: missing — the model directory is incomplete; copy or train it again")
    if not (path / ENCODER_DIR / "config.json").is_file():
        raise ModelDirError(f"{path / ENCODER_DIR}: no encoder checkpoint (config.json) — the model directory is incomplete")
    unsafe = [rel for rel in weight_files(path) if not rel.endswith(".safetensors")]
    if unsafe:
        raise ModelDirError(f"{path / unsafe[0]}: pickle-based weights are refused (they can run code when loaded) — "
                            "convert them to safetensors")
    expected = config.get("fingerprint")
    if expected is not None:
        if not isinstance(expected, dict):
            raise ModelDirError(f"{file}: \"fingerprint\" is not an object — the file is damaged")
        actual = fingerprint(path)
        for rel in sorted(set(expected) | set(actual)):
            if expected.get(rel) != actual.get(rel):
                what = "is missing" if rel not in actual else "was not saved with this model" if rel not in expected \
                    else "does not match the fingerprint saved in gplinker.json"
                raise ModelDirError(f"{path / rel}: {what} — the directory mixes files of different saves (an "
                                    "interrupted copy?); copy or train the model again")
    else:
        logger.warning("%s has no weight fingerprint (saved by an older gplinker); its files are not checked", file)
    return config
