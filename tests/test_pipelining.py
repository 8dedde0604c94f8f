"""Host stages beside the device: order kept, errors raised, predictions unchanged."""

import threading

import pytest

from gplinker import extractor as extractor_module
from gplinker.pipelining import pipelined


def test_pipelined_keeps_order_and_overlaps_threads():
    threads = {"prepare": set(), "compute": set(), "finish": set()}

    def prepare(x):
        threads["prepare"].add(threading.get_ident())
        return x * 10

    def compute(p):
        threads["compute"].add(threading.get_ident())
        return p + 1

    def finish(x, p, c):
        threads["finish"].add(threading.get_ident())
        return [(x, p, c)]

    out = pipelined(list(range(7)), prepare, compute, finish)
    assert out == [(x, 10 * x, 10 * x + 1) for x in range(7)]
    assert threads["compute"] == {threading.get_ident()}  # the device stage stays on the caller's thread
    assert not (threads["prepare"] | threads["finish"]) & threads["compute"]


@pytest.mark.parametrize("stage", ["prepare", "compute", "finish"])
def test_pipelined_raises_the_first_error(stage):
    def fail_at(name):
        def f(*args):
            if name == stage and args[0] in (3, 30):
                raise ValueError(f"{name} failed")
            return [args[0]] if name == "finish" else args[0] * 10 if name == "prepare" else args[0]

        return f

    with pytest.raises(ValueError, match=f"{stage} failed"):
        pipelined(list(range(6)), fail_at("prepare"), fail_at("compute"), fail_at("finish"))


def test_overlapped_prediction_equals_plain(fitted_relation, monkeypatch):
    """Pieces of 3 texts with featurisation and decoding on host threads: every item the same as
    one plain pass (offsets, labels), scores within 1e-5; texts longer than a window included."""
    from gplinker.tasks import load

    model_dir, docs = fitted_relation
    ex = load(model_dir, "cpu")
    texts = [d.text for d in docs] + [" ".join(d.text for d in docs)] * 2 + [d.text for d in reversed(docs)]
    assert max(len(w) for w in ex.featurizer.windows(texts)) == ex.settings.max_length  # some text spans windows
    monkeypatch.setattr(extractor_module, "OVERLAP_TEXTS", 3)
    plain = ex.predict(texts, batch_size=4, overlap=False)
    overlapped = ex.predict(texts, batch_size=4, overlap=True)

    def items(doc):
        return sorted((r.head.start, r.head.end, r.label, r.tail.start, r.tail.end) for r in doc.relations), sorted(
            (s.start, s.end, s.label) for s in doc.entities
        )

    assert [items(d) for d in overlapped] == [items(d) for d in plain]
    assert sum(len(d.relations) for d in plain) > 0
    for a, b in zip(plain, overlapped):
        sa = sorted((s.start, s.end, s.label, s.score) for s in a.entities)
        sb = sorted((s.start, s.end, s.label, s.score) for s in b.entities)
        assert all(x[3] == pytest.approx(y[3], abs=1e-5) for x, y in zip(sa, sb))
