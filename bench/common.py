"""What the bench scripts share: random encoders of a given size, and the marked section of a docs
page each benchmark writes its table into."""

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


def random_bert(tokenizer_dir: str, out: Path, hidden: int, layers: int, heads: int, intermediate: int) -> Path:
    """A randomly initialised BERT of the given size (no pooler) saved with the tokenizer of
    ``tokenizer_dir``, so it reads real text with a real vocabulary."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=512,
        pad_token_id=tok.pad_token_id,
    )
    BertModel(cfg, add_pooling_layer=False).save_pretrained(out)
    tok.save_pretrained(out)
    return out
