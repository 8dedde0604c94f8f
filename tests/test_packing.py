"""Packed prediction rows give every window the cells it gets alone."""

from __future__ import annotations

import pytest
import torch
from conftest import ROOT, read
from hypothesis import given, settings
from hypothesis import strategies as st

from gplinker.extractor import Extractor, ModelSettings
from gplinker.heads import span_mask
from gplinker.packing import pack_rows
from gplinker.tasks import event, ner, relation

LOW = -9.0  # a threshold under the heads' initial logits, so random heads give many cells


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 40), max_size=30), st.integers(1, 64))
def test_pack_rows_places_every_window_once_within_the_row_size(lengths, row_tokens):
    rows = pack_rows(lengths, row_tokens)
    assert sorted(k for r in rows for k in r) == list(range(len(lengths)))
    for r in rows:
        assert len(r) == 1 or sum(lengths[k] for k in r) <= row_tokens
    # a window opens a row only when no row has room for it: no two rows could have been one
    totals = sorted(sum(lengths[k] for k in r) for r in rows)
    assert len(totals) < 2 or totals[0] + totals[1] > row_tokens


def test_segment_ids_keep_cells_inside_one_segment():
    seg = torch.tensor([[0, 1, 1, 0, 2, 2, 0]])  # two packed windows, special tokens 0
    allowed = span_mask(seg, tril=True)[0, 0]
    assert allowed[1, 2] and allowed[4, 5] and allowed[1, 1]
    assert not allowed[1, 4] and not allowed[2, 5] and not allowed[0, 1] and not allowed[2, 1]
    assert torch.equal(span_mask(seg > 0, tril=False), span_mask((seg > 0).long(), tril=False))


def _cells(ex: Extractor, texts: list[str], pack: bool) -> dict:
    windows = ex.featurizer.windows(texts)
    thresholds = {s.name: LOW for s in ex.task.head_specs()}
    out = {}
    for k, cells in enumerate(ex.window_cells(windows, batch_size=4, thresholds=thresholds, pack=pack)):
        for name, hc in cells.items():
            for row, logit in zip(hc.rows.tolist(), hc.logits.tolist()):
                out[(k, name, *row)] = logit
    return out


def _tasks():
    return {
        "ner": ner.NERTask.from_documents(read("ner", ROOT / "data/ner/en_train.jsonl")),
        "relation": relation.RelationTask.from_documents(read("relation", ROOT / "data/relation/en_train.jsonl")),
        "event": event.EventTask.from_documents(read("event", ROOT / "data/event/en_train.jsonl")),
    }


@pytest.mark.parametrize("head", ["efficient", "standard"])
@pytest.mark.parametrize("name", ["ner", "relation", "event"])
def test_packed_rows_give_each_window_its_own_cells(tiny_encoder, name, head):
    task = _tasks()[name]
    ex = Extractor.build(
        str(tiny_encoder), task, ModelSettings(head_type=head, head_size=16, max_length=32, stride=8), "cpu", seed=3
    )
    assert ex.can_pack()
    texts = [d.text for d in read(name, ROOT / f"data/{name}/en_dev.jsonl")][:12]
    texts += ["john smith said " * 12, "paris", "", "mary johnson of boston and new york"]  # several windows, short, empty
    packed, alone = _cells(ex, texts, pack=True), _cells(ex, texts, pack=False)
    assert len(alone) > 50  # the low threshold makes the comparison cover many cells of every head
    assert {k[1] for k in alone} == {s.name for s in task.head_specs()}
    for key in packed.keys() ^ alone.keys():  # only cells on the threshold may differ, by rounding
        assert abs(packed.get(key, alone.get(key)) - LOW) < 1e-4, key
    common = packed.keys() & alone.keys()
    assert max(abs(packed[k] - alone[k]) for k in common) < 1e-4


def test_an_encoder_that_cannot_take_packed_rows_keeps_padded_batches(tiny_encoder):
    docs = read("ner", ROOT / "data/ner/en_train.jsonl")
    ex = Extractor.build(
        str(tiny_encoder), ner.NERTask.from_documents(docs), ModelSettings(head_size=16, max_length=32, stride=8), "cpu", seed=3
    )
    real = ex.model.encoder

    class TwoDimensionalOnly(torch.nn.Module):  # as an ONNX session: ids and a 2D mask, nothing else
        def __init__(self):
            super().__init__()
            self.real, self.config = real, real.config

        def forward(self, input_ids, attention_mask):
            return self.real(input_ids=input_ids, attention_mask=attention_mask)

    texts = [d.text for d in docs]
    assert ex.can_pack()
    before = _cells(ex, texts, pack=True)  # packed: the encoder allows it
    ex.model.encoder = TwoDimensionalOnly()
    assert not ex.can_pack()
    after = _cells(ex, texts, pack=True)  # padded (asked to pack, but the encoder cannot), and the same cells
    assert len(before) > 50
    assert all(abs(before.get(k, after.get(k)) - LOW) < 1e-4 for k in before.keys() ^ after.keys())
    assert max(abs(before[k] - after[k]) for k in before.keys() & after.keys()) < 1e-4


def test_packing_is_chosen_where_it_saves_padding():
    from gplinker.packing import should_pack

    mixed = [40, 8, 9, 35, 7, 10, 38, 6, 12, 9, 11, 8]  # a server's micro-batch: short and long texts mixed
    assert should_pack(mixed, pack_rows(mixed, 128), 32, 384)
    even = [37] * 64  # a large input of similar lengths: sorted padded batches waste nothing
    assert not should_pack(even, pack_rows(even, 128), 32, 384)


def test_the_packing_check_is_made_in_eval_mode_and_leaves_the_mode_alone(tiny_encoder):
    docs = read("ner", ROOT / "data/ner/en_train.jsonl")
    ex = Extractor.build(
        str(tiny_encoder), ner.NERTask.from_documents(docs), ModelSettings(head_size=16, max_length=32, stride=8), "cpu", seed=3
    )
    ex.model.train()  # dropout on: two calls differ, yet the encoder can pack
    assert ex.can_pack() and ex.model.encoder.training
