"""Oracle round trip: gold -> perfect logits -> decode must give back exactly the gold."""

import pytest
from conftest import DATA, oracle_predict, read

from gplinker.structures import Document, Span
from gplinker.tasks import ner

FIXTURES = [
    ("jsonl", "zh_train.jsonl"),
    ("jsonl", "en_train.jsonl"),
    ("cluener", "cluener_sample.json"),
    ("cmeee", "cmeee_sample.json"),
    ("conll", "resume_sample.char.bmes"),
    ("spert", "spert_sample.json"),
    ("genia", "genia_sample.jsonlines"),
]


@pytest.mark.parametrize("fmt,name", FIXTURES)
def test_oracle_round_trip_per_format(tokenizer, fmt, name):
    gold = read("ner", DATA / name, fmt)
    task = ner.NERTask.from_documents(gold)
    pred, _ = oracle_predict(task, tokenizer, gold, max_length=64, stride=16, policy="strict")
    assert [d.entities for d in pred] == [d.entities for d in gold]
    assert sum(len(d.entities) for d in gold) > 0


def test_nested_and_repeated_strings(tokenizer):
    text = "张伟说：北京是一座美丽的城市，张伟很喜欢北京。"
    ents = [
        Span(0, 2, "name"),
        Span(15, 17, "name"),
        Span(4, 6, "address"),
        Span(20, 22, "address"),
        Span(4, 7, "org"),
        Span(4, 5, "address"),
    ]  # nested: 北, 北京, 北京是
    gold = [Document(text, tuple(ents))]
    task = ner.NERTask.from_documents(gold)
    pred, _ = oracle_predict(task, tokenizer, gold)
    assert pred[0].entities == gold[0].entities


def test_text_longer_than_one_window(tokenizer):
    base = "张伟在北京的华为公司工作了三年。"
    text = base * 12
    ents = []
    for k in range(12):
        o = k * len(base)
        ents += [
            Span(o, o + 2, "name"),
            Span(o + 3, o + 5, "address"),
            Span(o + 6, o + 10, "company"),
            Span(o + 3, o + 10, "nested"),
        ]
    gold = [Document(text, tuple(ents)), Document("李娜在上海。", (Span(0, 2, "name"), Span(3, 5, "address")))]
    task = ner.NERTask.from_documents(gold)
    pred, windows = oracle_predict(task, tokenizer, gold, max_length=32, stride=12)
    assert sum(w.doc_index == 0 for w in windows) > 4
    assert [d.entities for d in pred] == [d.entities for d in gold]


def test_truncated_span_at_a_cut_is_dropped_when_another_window_holds_it(tokenizer):
    """The library merges windows: a span cut at a window's right edge is dropped because the
    next window holds that stretch away from its edges, and the task sees characters only."""

    from gplinker.alignment import merge_windows
    from gplinker.cells import HeadCells
    from gplinker.offsets import Featurizer, align_span

    text = "北京上海杭州成都武汉西安南京广州" * 3
    task = ner.NERTask(["loc"])
    ws = Featurizer(tokenizer, max_length=16, stride=6).windows([text])
    w0 = ws[0]
    last = w0.content[-1]
    # window 0 fires on a span cut at its right edge; window 1 holds the true, longer span
    s = int(w0.token_starts[last - 1])
    full = Span(s, s + 4, "loc", 0.5)
    i1, j1 = align_span(ws[1], full.start, full.end, "strict")
    cells = [{"entities": HeadCells([[0, last - 1, last]], [3.0])}, {"entities": HeadCells([[0, i1, j1]], [0.0])}]
    cells += [{"entities": HeadCells()}] * (len(ws) - 2)
    merged = merge_windows(task.head_specs(), ws, cells)
    assert merged["entities"].rows.tolist() == [[0, full.start, full.end]]  # characters, the cut span gone
    pred = task.decode(Document(text), merged)
    assert pred.entities == (full,) and pred.entities[0].score == 0.5


def test_decoder_needs_no_tokenizer():
    """A task decodes character-level cells: hand-written cells give exact spans and scores,
    nested spans kept by nested decoding, the best of each overlap by flat decoding."""
    import math

    from gplinker.cells import DocumentCells, HeadCells

    text = "Elon Musk visited San Francisco ."
    cells = DocumentCells({"entities": HeadCells([[0, 0, 4], [0, 0, 9], [1, 18, 31], [1, 22, 31]], [0.5, 2.0, 1.0, 1.5])})
    nested = ner.NERTask(["PER", "LOC"], "nested").decode(Document(text), cells)
    assert [(s.text_in(text), s.label) for s in nested.entities] == [
        ("Elon", "PER"),
        ("Elon Musk", "PER"),
        ("San Francisco", "LOC"),
        ("Francisco", "LOC"),
    ]
    assert nested.entities[1].score == pytest.approx(1 / (1 + math.exp(-4.0)))
    flat = ner.NERTask(["PER", "LOC"], "flat").decode(Document(text), cells)
    assert [s.text_in(text) for s in flat.entities] == ["Elon Musk", "Francisco"]  # the better-scored of each overlap
    starts = [(s.start, s.end) for s in flat.entities]
    assert all(b[0] >= a[1] for a, b in zip(starts, starts[1:]))


def test_flat_decoding_is_the_default_only_for_flat_training_data():
    flat = [Document("ab cd", (Span(0, 2, "X"), Span(3, 5, "X")))]
    nested = [Document("ab cd", (Span(0, 5, "X"), Span(3, 5, "Y")))]
    assert ner.NERTask.from_documents(flat).decoding == "flat"
    assert ner.NERTask.from_documents(nested).decoding == "nested"
    assert ner.NERTask.from_documents(flat, ner.NEROptions(decode="nested")).decoding == "nested"


def test_alignment_stats_count_misaligned_and_outside(tokenizer):
    from gplinker.alignment import AlignmentStats, align_targets
    from gplinker.offsets import Featurizer

    text = "John Johnson saw Paris"
    doc = Document(text, (Span(0, 4, "PER"), Span(5, 9, "PER"), Span(17, 22, "LOC")))  # "John" inside "Johnson"
    task = ner.NERTask.from_documents([doc])
    ws = Featurizer(tokenizer, 64, 8).windows([text])
    stats = AlignmentStats()
    (cells,) = align_targets(task.head_specs(), doc, task.targets(doc), ws, "expand", stats)
    assert (stats.total, stats.misaligned, stats.outside_windows) == (3, 1, 0)
    assert len(cells["entities"]) == 3  # "John" in "Johnson" expanded onto its token
    stats = AlignmentStats()
    (cells,) = align_targets(task.head_specs(), doc, task.targets(doc), ws, "strict", stats)
    assert stats.unplaceable == 1 and len(cells["entities"]) == 2
