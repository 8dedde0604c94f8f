"""A saved model is a directory of data: JSON and safetensors, nothing executable.

``gplinker.json`` names the task by its registry name and holds its labels, the model settings,
training information, and a SHA-256 fingerprint of every other file of the directory (weights,
encoder and tokenizer configs, vocabulary); ``heads.safetensors`` holds the GlobalPointer heads;
``encoder/`` is a standard Hugging Face checkpoint (safetensors) with its tokenizer. Saving is
atomic (:func:`gplinker.atomic.atomic_directory`); loading checks every part before anything is
built from it -- sizes, types, the safetensors headers against the configs, the fingerprints --
and refuses a directory that is damaged, mixed or hostile, naming the file and the fix. Nothing a
directory holds is ever run: no module it names is imported, no custom code of an encoder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import struct
from pathlib import Path
from typing import Any

from gplinker.atomic import recover_directory

logger = logging.getLogger(__name__)

CONFIG_NAME = "gplinker.json"
HEADS_NAME = "heads.safetensors"
ENCODER_DIR = "encoder"
TOKENIZER_NAME = "tokenizer.json"
FORMAT_VERSION = 2  # 2: the fingerprint covers every file; 1: weight files only
KNOWN_FORMATS = (1, 2)
DERIVED = ("encoder.onnx",)  # written beside a model after its save (``--onnx``); not part of the fingerprint
MAX_JSON_BYTES = 64 << 20  # gplinker.json, config.json, tokenizer_config.json
MAX_HEADER_BYTES = 100 << 20  # a safetensors header (safetensors' own limit)
SAFETENSORS_DTYPES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
# encoder config values that size the modules built from it: they must agree with the weights
CODE_SUFFIXES = (".py", ".pyc", ".pyo", ".so", ".pyd", ".dll", ".dylib", ".sh", ".exe")
LAYER_KEYS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")


class ModelDirError(ValueError):
    """A model directory that cannot be loaded: which file, what is wrong, how to fix it."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weight_files(path: Path) -> list[str]:
    """Relative paths of the weight files of a model directory."""
    files = [HEADS_NAME] if (path / HEADS_NAME).is_file() else []
    enc = path / ENCODER_DIR
    if enc.is_dir():
        files += sorted(f"{ENCODER_DIR}/{p.name}" for p in enc.iterdir() if p.suffix in (".safetensors", ".bin", ".pt", ".pth"))
    return files


def model_files(path: Path) -> list[str]:
    """Relative paths of every file the fingerprint covers: all but ``gplinker.json`` itself and
    files derived after the save (``encoder.onnx``), hidden files and temporary ones included."""
    out = []
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(path).as_posix()
        if rel == CONFIG_NAME or rel in DERIVED or rel.startswith(tuple(d + "." for d in DERIVED)):
            continue
        if p.is_symlink() or not p.is_dir():
            out.append(rel)
    return out


def fingerprint(path: Path) -> dict[str, str]:
    """SHA-256 of every file of a model directory being saved (see :func:`model_files`)."""
    return {rel: sha256(path / rel) for rel in model_files(path)}


def resolve(path: str | Path, revision: str | None = None) -> Path:
    """The model directory to load: ``path``; a hub repository id (``org/name[@revision]``) as its
    folder in the Hugging Face cache (downloaded if needed); or the complete previous version an
    interrupted save left beside ``path``. A clear error when it is none of these."""
    from gplinker import hub

    p = Path(path)
    if not p.exists():
        previous = recover_directory(p)
        if previous is None and hub.is_repo_id(str(path)):
            try:
                return resolve(hub.download(str(path), revision))
            except hub.HubError as e:
                raise ModelDirError(f"{p}: no such model folder here; as a Hugging Face Hub repository id: {e}") from e
        if previous is not None:
            logger.warning(
                "%s is missing but %s holds the complete previous model (a save was interrupted); loading that", p, previous
            )
            return previous
        raise ModelDirError(
            f"{p}: the model directory does not exist — pass the model/ folder that 'train' wrote "
            "(for example runs/quickstart/ner/model)"
        )
    if not p.is_dir():
        raise ModelDirError(f"{p}: is a file, not a model directory — pass the folder holding {CONFIG_NAME}")
    if not (p / CONFIG_NAME).is_file():
        hint = f" (did you mean {p / 'model'}?)" if (p / "model" / CONFIG_NAME).is_file() else ""
        raise ModelDirError(
            f"{p}: not a gplinker model directory, no {CONFIG_NAME}{hint} — pass the model/ folder that 'train' wrote"
        )
    return p


def is_model_dir(path: Path) -> bool:
    """Whether ``path`` is (or is inside) a folder holding ``gplinker.json``."""
    return any((p / CONFIG_NAME).is_file() for p in (path, *path.parents))


def _regular_file(file: Path, what: str) -> None:
    """A regular file, not a link or a device: a model directory is plain files (a hub cache
    snapshot's links into its own blobs are its layout, see :func:`gplinker.hub.is_cache_link`)."""
    from gplinker import hub

    if file.is_symlink() and not hub.is_cache_link(file):
        raise ModelDirError(
            f"{file}: is a symbolic link — a model directory holds plain files; copy the model with "
            "its files (cp -rL) instead of linking them"
        )
    if not file.exists():
        raise ModelDirError(f"{file}: missing ({what}) — the model directory is incomplete; copy or train it again")
    if not file.is_file():
        raise ModelDirError(f"{file}: not a regular file ({what}) — the model directory is damaged; copy or train it again")


def load_json(file: Path, what: str) -> Any:
    """A JSON file of a model directory, bounded in size and depth; a ModelDirError otherwise."""
    _regular_file(file, what)
    size = file.stat().st_size
    if size > MAX_JSON_BYTES:
        raise ModelDirError(
            f"{file}: {size} bytes, over the {MAX_JSON_BYTES >> 20} MiB a {what} may have — the file is "
            "damaged; save or copy the model again"
        )
    try:
        return json.loads(file.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelDirError(f"{file}: not valid JSON ({e}) — the file is damaged; save or copy the model again") from e
    except RecursionError as e:
        raise ModelDirError(f"{file}: JSON nested too deeply — the file is damaged; save or copy the model again") from e


def safetensors_shapes(file: Path) -> dict[str, tuple[int, ...]]:
    """The tensors' shapes from a safetensors header, checked against the file's size before any
    tensor is read (a bogus header cannot make the loader allocate or seek anywhere)."""
    _regular_file(file, "weights")
    size = file.stat().st_size

    def bad(problem: str) -> ModelDirError:
        return ModelDirError(f"{file}: cannot be read ({problem}) — the file is damaged; copy or train the model again")

    with open(file, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise bad("shorter than a safetensors header")
        n = struct.unpack("<Q", head)[0]
        if n > min(MAX_HEADER_BYTES, size - 8):
            raise bad(f"header of {n} bytes in a file of {size}")
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise bad(f"header is not JSON: {type(e).__name__}") from e
    if not isinstance(header, dict):
        raise bad("header is not a JSON object")
    data = size - 8 - n
    shapes: dict[str, tuple[int, ...]] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict):
            raise bad(f"tensor {name!r} has no description")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in SAFETENSORS_DTYPES:
            raise bad(f"tensor {name!r} has dtype {dtype!r}")
        if not (isinstance(shape, list) and all(type(d) is int and 0 <= d for d in shape)):
            raise bad(f"tensor {name!r} has shape {shape!r}")
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(type(o) is int for o in offsets)
            and 0 <= offsets[0] <= offsets[1] <= data
        ):
            raise bad(f"tensor {name!r} lies outside the file ({offsets!r}, {data} data bytes)")
        if math.prod(shape) * SAFETENSORS_DTYPES[dtype] != offsets[1] - offsets[0]:
            raise bad(f"tensor {name!r} of shape {shape} and dtype {dtype} does not fill its {offsets[1] - offsets[0]} bytes")
        shapes[name] = tuple(shape)
    return shapes


def _check_version(file: Path, config: dict[str, Any]) -> int:
    version = config.get("format_version", 1)
    if type(version) is not int or version not in KNOWN_FORMATS:
        raise ModelDirError(
            f'{file}: "format_version" is {version!r}; this gplinker reads versions '
            f"{', '.join(map(str, KNOWN_FORMATS))} — upgrade gplinker (pip install -U gplinker) to load it"
        )
    return version


def _check_fingerprint(path: Path, file: Path, config: dict[str, Any], version: int) -> None:
    """Every file present as it was saved: none missing, none changed, none added (version 2),
    or every weight file as it was saved (version 1)."""
    expected = config.get("fingerprint")
    if expected is None and version == 1:
        logger.warning("%s has no fingerprint (saved by an older gplinker); its files are not checked", file)
        return
    if not isinstance(expected, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in expected.items()):
        raise ModelDirError(
            f'{file}: "fingerprint" is missing or not an object of file hashes — the file is damaged; '
            "save or copy the model again"
        )
    covered = model_files(path) if version >= 2 else weight_files(path)
    if version == 1:
        logger.warning(
            "%s was saved by an older gplinker: only its weight files are fingerprinted; save it again to "
            "cover its tokenizer and configs too",
            file,
        )
    for rel in sorted(set(expected) | set(covered)):
        if rel not in covered:
            raise ModelDirError(f"{path / rel}: is missing — the model directory is incomplete; copy or train the model again")
        if rel not in expected:
            if version >= 2 and not rel.startswith(ENCODER_DIR + "/"):
                continue  # a file a person put beside the model (a README): never read
            raise ModelDirError(
                f"{path / rel}: was not saved with this model — the directory mixes files of different "
                "saves; remove the file, or copy or train the model again"
            )
        if (path / rel).is_symlink() or not (path / rel).is_file():
            _regular_file(path / rel, "a file of the model")
        if sha256(path / rel) != expected[rel]:
            raise ModelDirError(
                f"{path / rel}: does not match the fingerprint saved in {CONFIG_NAME} — the file was "
                "changed or the directory mixes files of different saves; copy or train the model again"
            )


def _check_encoder_config(enc: Path) -> dict[str, Any]:
    """``encoder/config.json`` and ``tokenizer_config.json``: a known architecture and no custom
    code (``auto_map``), so transformers never asks whether to run the directory's Python."""
    cfg_file = enc / "config.json"
    cfg = load_json(cfg_file, "encoder config")
    if not isinstance(cfg, dict):
        raise ModelDirError(f"{cfg_file}: not a JSON object — the file is damaged; copy or train the model again")
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    tok_cfg_file = enc / "tokenizer_config.json"
    tok_cfg = load_json(tok_cfg_file, "tokenizer config") if tok_cfg_file.exists() or tok_cfg_file.is_symlink() else {}
    for f, c in ((cfg_file, cfg), (tok_cfg_file, tok_cfg)):
        if isinstance(c, dict) and "auto_map" in c:
            raise ModelDirError(
                f'{f}: names custom code ("auto_map"); gplinker never runs code from a model directory — '
                "use an encoder architecture that transformers ships"
            )
    if not isinstance(tok_cfg, dict):
        raise ModelDirError(f"{tok_cfg_file}: not a JSON object — the file is damaged; copy or train the model again")
    model_type = cfg.get("model_type")
    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        raise ModelDirError(
            f'{cfg_file}: "model_type" {model_type!r} is not an architecture this transformers version '
            "ships; gplinker never runs custom model code — upgrade transformers or retrain on a supported encoder"
        )
    for key, value in cfg.items():
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ModelDirError(f'{cfg_file}: "{key}" is {value}; the file is damaged — copy or train the model again')
    return cfg


def _layers_in(shapes: dict[str, tuple[int, ...]]) -> int:
    """How many numbered blocks the weights hold (1 + the largest index in a tensor name)."""
    found = [int(m) for name in shapes for m in re.findall(r"\.(\d+)\.", f".{name}.")]
    return 1 + max(found) if found else 0


def check_encoder_sizes(enc: Path, cfg: dict[str, Any], shapes: dict[str, tuple[int, ...]]) -> None:
    """The encoder config's sizes against its weights, before a module is built: its layer count
    bounded by the blocks the weights hold, then every tensor of the architecture (built on the
    meta device: no memory) equal in shape to the weights'."""
    import torch
    from transformers import AutoConfig, AutoModel

    cfg_file = enc / "config.json"
    for key in LAYER_KEYS:
        value = cfg.get(key)
        if value is None:
            continue
        if type(value) is not int or not 1 <= value <= max(1, _layers_in(shapes)):
            raise ModelDirError(
                f'{cfg_file}: "{key}" is {value!r} but the weights hold {_layers_in(shapes)} layers — the '
                "encoder config and its weights do not belong together; copy or train the model again"
            )
    try:
        config = AutoConfig.from_pretrained(enc, local_files_only=True, trust_remote_code=False)
        with torch.device("meta"):
            try:
                meta = AutoModel.from_config(config, add_pooling_layer=False, trust_remote_code=False)
            except TypeError:
                meta = AutoModel.from_config(config, trust_remote_code=False)
    except Exception as e:  # noqa: BLE001 - any failure to describe the architecture is a damaged config
        raise ModelDirError(
            f"{cfg_file}: cannot describe an encoder ({type(e).__name__}: {_first_line(e)}) — the file is "
            "damaged; copy or train the model again"
        ) from e
    prefix = getattr(meta, "base_model_prefix", "") or ""

    def bare(name: str) -> str:
        return name[len(prefix) + 1 :] if prefix and name.startswith(prefix + ".") else name

    saved = {bare(k): v for k, v in shapes.items()}
    for name, tensor in meta.state_dict().items():
        got = saved.get(bare(name))
        if got is not None and got != tuple(tensor.shape):
            raise ModelDirError(
                f"{cfg_file}: the config makes {bare(name)!r} of shape {tuple(tensor.shape)} but the weights "
                f"hold {got} — the encoder config and its weights do not belong together; copy or "
                "train the model again"
            )
    missing = sum(tensor.numel() for name, tensor in meta.state_dict().items() if bare(name) not in saved)
    present = sum(math.prod(s) for s in saved.values())
    if missing > max(present // 10, 1 << 20):
        raise ModelDirError(
            f"{cfg_file}: the config describes {missing} parameters the weights do not hold — the encoder "
            "config and its weights do not belong together; copy or train the model again"
        )


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


def read_config(path: Path, task_names: list[str]) -> dict[str, Any]:
    """``gplinker.json`` parsed and checked: a known format and task name, its config, every file
    present, plain and matching its fingerprint, an encoder that needs no custom code."""
    file = path / CONFIG_NAME
    config = load_json(file, CONFIG_NAME)
    if not isinstance(config, dict):
        raise ModelDirError(f"{file}: not a JSON object — the file is damaged; save or copy the model again")
    version = _check_version(file, config)
    task = config.get("task")
    if not isinstance(task, str) or task not in task_names:
        raise ModelDirError(
            f'{file}: "task" is {task!r}, not a registered task ({", ".join(task_names)}) — a model '
            "directory names its task, and a task of your own must be registered in Python before loading"
        )
    if not isinstance(config.get("task_config"), dict):
        raise ModelDirError(f'{file}: no "task_config" object — the file is damaged; save or copy the model again')
    _regular_file(path / HEADS_NAME, "the heads' weights")
    enc = path / ENCODER_DIR
    _regular_file(enc / "config.json", "the encoder config")
    _regular_file(enc / TOKENIZER_NAME, "the tokenizer; without it the text would be split wrongly")
    unsafe = [rel for rel in weight_files(path) if not rel.endswith(".safetensors")]
    if unsafe:
        raise ModelDirError(
            f"{path / unsafe[0]}: pickle-based weights are refused (they can run code when loaded) — convert them to safetensors"
        )
    code = [rel for rel in model_files(path) if rel.endswith(CODE_SUFFIXES)]
    if code:
        raise ModelDirError(
            f"{path / code[0]}: a model directory holds data, not code — gplinker never runs it; remove "
            "the file, or copy or train the model again"
        )
    _check_fingerprint(path, file, config, version)
    _check_encoder_config(enc)
    return config
