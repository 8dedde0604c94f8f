"""Decoding hand-written logits, and micro/per-label scoring."""

import numpy as np
import pytest
import torch

from gplinker.cells import probability
from gplinker.decoding import positive_cells
from gplinker.heads import span_mask
from gplinker.metrics import score
from gplinker.offsets import Featurizer
from gplinker.structures import Document, Span
from gplinker.tasks import ner


def test_positive_cells_on_hand_written_logits():
    logits = torch.full((2, 3, 4, 4), -1.0)
    logits[0, 2, 1, 3] = 0.5
    logits[1, 0, 0, 0] = 2.0
    logits[1, 1, 2, 2] = 0.0  # not > 0
    assert positive_cells(logits).tolist() == [[0, 2, 1, 3], [1, 0, 0, 0]]


def test_channel_chunks_keep_order():
    torch.manual_seed(0)
    logits = torch.randn(3, 10, 5, 5)
    assert torch.equal(positive_cells(logits, channel_chunk=3), positive_cells(logits, channel_chunk=64))
    assert torch.equal(positive_cells(logits), (logits > 0).nonzero())


def test_special_tokens_and_padding_never_decoded(tokenizer):
    task = ner.NERTask(["a", "b"], "nested")
    (w,) = Featurizer(tokenizer, 32, 8).windows(["北京上海"])
    n = len(w)
    logits = torch.full((1, 2, n + 3, n + 3), 5.0)  # every cell fires, padding included
    mask = torch.zeros(1, n + 3, dtype=torch.bool)
    mask[0, :n] = torch.from_numpy(w.token_starts >= 0)
    logits = logits.masked_fill(~span_mask(mask, True), -1e12)
    cells = positive_cells(logits)[:, 1:].numpy()
    assert cells[:, 1:].min() >= 1 and cells[:, 1:].max() <= n - 2  # never [CLS] (0), [SEP] (n-1) or padding
    from gplinker.alignment import merge_windows
    from gplinker.cells import HeadCells

    merged = merge_windows(task.head_specs(), [w], [{"entities": HeadCells(cells, np.full(len(cells), 5.0))}])
    doc = ner.NERTask(["a", "b"], "nested").decode(Document("北京上海"), merged)
    assert len(doc.entities) == 2 * (4 * 5 // 2)  # every span of 4 characters, for both labels
    assert all(0 <= s.start < s.end <= 4 for s in doc.entities)


def test_probability_is_sigmoid_of_twice_the_logit():
    s = np.array([-3.0, 0.0, 1.5])
    assert np.allclose(probability(s), 1 / (1 + np.exp(-2 * s)))
    assert probability(np.array([0.0]))[0] == 0.5


def test_micro_and_per_label_scores():
    gold = [{("PER", 0, 2), ("LOC", 3, 5)}, {("PER", 1, 3)}]
    pred = [{("PER", 0, 2), ("LOC", 3, 6)}, {("PER", 1, 3), ("ORG", 0, 1)}]
    m = score(gold, pred, label_of=lambda t: t[0])
    assert (m["tp"], m["n_pred"], m["n_gold"]) == (2, 4, 3)
    assert m["precision"] == pytest.approx(0.5) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert m["per_label"]["PER"]["f1"] == 1.0 and m["per_label"]["LOC"]["f1"] == 0.0
    assert m["per_label"]["ORG"]["precision"] == 0.0 and m["per_label"]["ORG"]["n_gold"] == 0
    empty = score([set()], [set()])
    assert empty["f1"] == 0.0


def test_ner_evaluate_is_strict_on_label_and_both_ends():
    task = ner.NERTask(["a", "b"])
    gold = [Document("abcdef", (Span(0, 2, "a"), Span(2, 4, "b")))]
    pred = [Document("abcdef", (Span(0, 2, "a"), Span(2, 5, "b"), Span(2, 4, "a")))]
    m = task.evaluate(gold, pred)["entities"]
    assert (m["tp"], m["n_pred"], m["n_gold"]) == (1, 3, 2)


def test_an_unknown_head_name_is_an_error_not_empty_cells():
    import pytest

    from gplinker.cells import DocumentCells, HeadCells

    cells = DocumentCells({"entities": HeadCells([[0, 0, 4]], [1.0])})
    assert len(cells["entities"]) == 1
    with pytest.raises(KeyError, match="no head 'entites'; this document's heads are entities"):
        cells["entites"]
