"""Oracle round trip: gold -> perfect logits -> decode must give back exactly the gold."""
import pytest

from conftest import DATA, oracle_predict
from gplinker.structures import Document, Span
from tasks import ner

FIXTURES = [
    ("jsonl", "zh_train.jsonl"), ("jsonl", "en_train.jsonl"), ("cluener", "cluener_sample.json"),
    ("cmeee", "cmeee_sample.json"), ("conll", "resume_sample.char.bmes"), ("spert", "spert_sample.json"),
    ("genia", "genia_sample.jsonlines"),
]


@pytest.mark.parametrize("fmt,name", FIXTURES)
def test_oracle_round_trip_per_format(tokenizer, fmt, name):
    gold = ner.read(DATA / name, fmt)
    task = ner.NERTask.from_documents(gold)
    pred, _ = oracle_predict(task, tokenizer, gold, max_length=64, stride=16, policy="strict")
    assert [d.entities for d in pred] == [d.entities for d in gold]
    assert sum(len(d.entities) for d in gold) > 0


def test_nested_and_repeated_strings(tokenizer):
    text = "张伟说：北京是一座美丽的城市，张伟很喜欢北京。"
    ents = [Span(0, 2, "name"), Span(15, 17, "name"), Span(4, 6, "address"), Span(20, 22, "address"),
            Span(4, 7, "org"), Span(4, 5, "address")]  # nested: 北, 北京, 北京是
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
        ents += [Span(o, o + 2, "name"), Span(o + 3, o + 5, "address"), Span(o + 6, o + 10, "company"),
                 Span(o + 3, o + 10, "nested")]
    gold = [Document(text, tuple(ents)), Document("李娜在上海。", (Span(0, 2, "name"), Span(3, 5, "address")))]
    task = ner.NERTask.from_documents(gold)
    pred, windows = oracle_predict(task, tokenizer, gold, max_length=32, stride=12)
    assert sum(w.doc_index == 0 for w in windows) > 4
    assert [d.entities for d in pred] == [d.entities for d in gold]


def test_truncated_span_at_a_cut_is_dropped_when_another_window_holds_it(tokenizer):
    text = "北京上海杭州成都武汉西安南京广州" * 3
    task = ner.NERTask(["loc"])
    from gplinker.offsets import Featurizer
    import numpy as np

    fz = Featurizer(tokenizer, max_length=16, stride=6)
    ws = fz.windows([text])
    w0 = ws[0]
    last = w0.content[-1]
    # window 0 fires on a span cut at its right edge; window 1 holds the true, longer span
    s = int(w0.token_starts[last - 1])
    cells0 = {"entities": np.array([[0, last - 1, last]])}
    full = Span(s, s + 4, "loc")
    from gplinker.offsets import align_span

    i1, j1 = align_span(ws[1], full.start, full.end, "strict")
    cells1 = {"entities": np.array([[0, i1, j1]])}
    empty = {"entities": np.zeros((0, 3), dtype=np.int64)}
    pred = task.decode(Document(text), ws, [cells0, cells1] + [empty] * (len(ws) - 2))
    assert pred.entities == (full,)


def test_alignment_report_counts_misaligned_and_outside(tokenizer):
    from gplinker.offsets import Featurizer
    from gplinker.task import AlignmentReport

    text = "John Johnson saw Paris"
    doc = Document(text, (Span(0, 4, "PER"), Span(5, 9, "PER"), Span(17, 22, "LOC")))  # "John" inside "Johnson"
    task = ner.NERTask.from_documents([doc])
    ws = Featurizer(tokenizer, 64, 8).windows([text])
    report = AlignmentReport()
    task.check_alignment(doc, ws, "expand", report)
    assert (report.total, report.misaligned, report.outside_windows) == (3, 1, 0)
    report = AlignmentReport()
    task.check_alignment(doc, ws, "strict", report)
    assert report.unplaceable == 1
