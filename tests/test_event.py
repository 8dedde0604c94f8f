"""Events: oracle round trips per reader and hard cases, clique decoding, readers, training."""

import numpy as np
import pytest
from conftest import ROOT, oracle_predict, read

from gplinker.io import DataError
from gplinker.structures import Argument, Document, Event
from gplinker.tasks import event
from gplinker.tasks import load as load_model
from gplinker.tasks.event import EventTask, drop_subsets, events_from_graph
from gplinker.tasks.readers import event as event_readers

EV = ROOT / "data" / "event"


@pytest.mark.parametrize(
    "name,fmt",
    [("zh_train.jsonl", "jsonl"), ("fewfc_sample.jsonl", "fewfc"), ("duee_sample.jsonl", "duee"), ("phee_sample.jsonl", "phee")],
)
def test_oracle_round_trip_per_reader(tokenizer, name, fmt):
    gold = read("event", EV / name, fmt)
    task = EventTask.from_documents(gold)
    # an event is decoded inside one window: the window must hold the whole event
    pred, _ = oracle_predict(task, tokenizer, gold, max_length=160, stride=32, policy="strict")
    assert [d.events for d in pred] == [d.events for d in gold]
    m = task.evaluate(gold, pred)
    assert m["events"]["f1"] == m["arguments"]["f1"] == m["triggers"]["f1"] == 1.0


def ev(label, *args):
    return Event(label, tuple(Argument(*a) for a in args))


def test_two_events_of_one_type_sharing_an_argument(tokenizer):
    text = "张伟起诉华为公司，李娜也起诉了华为公司。"
    gold = [
        Document(
            text,
            events=(
                ev("起诉", ("trigger", 2, 4), ("sub", 0, 2), ("obj", 4, 8)),
                ev("起诉", ("trigger", 12, 14), ("sub", 9, 11), ("obj", 15, 19)),
            ),
        )
    ]
    shared = [
        Document(
            "张伟和李娜分别起诉了华为公司。",
            events=(
                ev("起诉", ("trigger", 7, 9), ("sub", 0, 2), ("obj", 10, 14)),
                ev("起诉", ("trigger", 7, 9), ("sub", 3, 5), ("obj", 10, 14)),
            ),
        )
    ]
    for docs in (gold, shared):
        task = EventTask.from_documents(docs)
        pred, _ = oracle_predict(task, tokenizer, docs)
        assert pred[0].events == docs[0].events


def test_event_without_trigger_kept_or_dropped(tokenizer):
    docs = [
        Document(
            "华为公司，十亿元，收购方为华为。", events=(ev("收购", ("sub-org", 13, 15), ("money", 5, 8), ("obj-org", 0, 4)),)
        )
    ]
    keep = EventTask.from_documents(docs)
    pred, _ = oracle_predict(keep, tokenizer, docs)
    assert pred[0].events == docs[0].events  # also nested: 华为 inside 华为公司
    drop = EventTask(keep.labels, keep_triggerless=False)
    pred, _ = oracle_predict(drop, tokenizer, docs)
    assert pred[0].events == ()


def test_span_with_two_roles_in_one_event(tokenizer):
    docs = [Document("华为公司回购华为公司股份。", events=(ev("回购", ("trigger", 4, 6), ("sub", 0, 4), ("obj", 0, 4)),))]
    task = EventTask.from_documents(docs)
    pred, _ = oracle_predict(task, tokenizer, docs)
    assert pred[0].events == docs[0].events


def test_shared_span_with_different_roles_makes_no_spurious_events(tokenizer):
    # 华为 is the subject of the first suit and the object of the second one
    text = "华为起诉小米，又被小米起诉。"
    e1 = ev("起诉", ("trigger", 2, 4), ("sub", 0, 2), ("obj", 4, 6))
    e2 = ev("起诉", ("trigger", 11, 13), ("sub", 9, 11), ("obj", 0, 2))
    docs = [Document(text, events=(e1, e2))]
    task = EventTask.from_documents(docs)
    pred, _ = oracle_predict(task, tokenizer, docs)
    events = pred[0].events
    assert len(events) == 2  # (role, span) nodes would give four role-mixed events here
    for got, want in zip(sorted(events, key=lambda e: e.arguments[-1]), (e1, e2)):
        assert set(want.arguments) <= set(got.arguments)
        extra = set(got.arguments) - set(want.arguments)
        assert {(a.start, a.end) for a in extra} == {(0, 2)}  # the shared span, with its other role
    m = task.evaluate(docs, pred)
    assert m["triggers"]["f1"] == 1.0 and m["arguments"]["recall"] == 1.0


def test_long_text_events_across_windows(tokenizer):
    base = "张伟起诉华为公司。"
    text = "今天天气很好。" * 5 + base + "今天天气很好。" * 5 + base
    o1, o2 = 35, 35 + len(base) + 35
    docs = [
        Document(
            text,
            events=(
                ev("起诉", ("trigger", o1 + 2, o1 + 4), ("sub", o1, o1 + 2), ("obj", o1 + 4, o1 + 8)),
                ev("起诉", ("trigger", o2 + 2, o2 + 4), ("sub", o2, o2 + 2), ("obj", o2 + 4, o2 + 8)),
            ),
        )
    ]
    task = EventTask.from_documents(docs)
    for stride in (10, 14):  # windows share at least as many tokens as one event spans
        pred, windows = oracle_predict(task, tokenizer, docs, max_length=24, stride=stride)
        assert len(windows) > 4
        assert pred[0].events == docs[0].events


def test_clique_decoding_on_hand_written_links():
    # spans a=(1,2), b=(4,4), c=(6,8), d=(10,10); events {a,b,c} and {c,d} of type T
    args = [("T", "trigger", 1, 2), ("T", "x", 4, 4), ("T", "y", 6, 8), ("T", "z", 10, 10), ("U", "trigger", 4, 4)]
    heads = np.array([[1, 4], [1, 6], [4, 6], [6, 10]])
    tails = np.array([[2, 4], [2, 8], [4, 8], [8, 10]])
    got = {(t, m) for t, m in events_from_graph(args, heads, tails)}
    assert got == {
        ("T", frozenset({("trigger", 1, 2), ("x", 4, 4), ("y", 6, 8)})),
        ("T", frozenset({("y", 6, 8), ("z", 10, 10)})),
        ("U", frozenset({("trigger", 4, 4)})),
    }
    # a head link without its tail link is no edge
    got = events_from_graph(args[:2], np.array([[1, 4]]), np.array([[2, 5]]))
    assert sorted(len(m) for _, m in got) == [1, 1]


@pytest.mark.parametrize("seed", range(6))
def test_clique_decoding_matches_brute_force_on_random_graphs(seed):
    """Every event is a maximal set of spans of one type whose every pair has both its head link
    (min, max of starts) and its tail link (min, max of ends); roles of a span come along."""
    import itertools

    rng = np.random.default_rng(seed)
    n = 24
    args = sorted(
        {
            (f"T{rng.integers(0, 2)}", f"r{rng.integers(0, 3)}", int(i), int(i + rng.integers(0, 3)))
            for i in rng.integers(0, n - 3, 14)
        }
    )
    heads = np.argwhere(np.triu(rng.random((n, n)) < 0.35))
    tails = np.argwhere(np.triu(rng.random((n, n)) < 0.35))
    hs, ts = set(map(tuple, heads.tolist())), set(map(tuple, tails.tolist()))
    got = {(t, m) for t, m in events_from_graph(args, heads, tails)}
    want = set()
    for etype in {a[0] for a in args}:
        spans = sorted({(i, j) for t, _, i, j in args if t == etype})
        ok = lambda a, b: (min(a[0], b[0]), max(a[0], b[0])) in hs and (min(a[1], b[1]), max(a[1], b[1])) in ts  # noqa: E731
        cliques = [
            set(c)
            for r in range(1, len(spans) + 1)
            for c in itertools.combinations(spans, r)
            if all(ok(a, b) for a, b in itertools.combinations(c, 2))
        ]
        for c in cliques:
            if not any(c < d for d in cliques):
                want.add((etype, frozenset((r, i, j) for t, r, i, j in args if t == etype and (i, j) in c)))
    assert got == want and got


def test_subsets_dropped_per_type():
    big = ev("T", ("trigger", 0, 1), ("a", 2, 3), ("b", 4, 5))
    small = ev("T", ("trigger", 0, 1), ("a", 2, 3))
    other = ev("U", ("trigger", 0, 1), ("a", 2, 3))
    assert drop_subsets({big, small, other}) == {big, other}


def test_evaluate_levels():
    gold = [Document("abcdefgh", events=(ev("T", ("trigger", 0, 1), ("a", 2, 3), ("b", 4, 5)),))]
    pred = [Document("abcdefgh", events=(ev("T", ("trigger", 0, 1), ("a", 2, 3)),))]
    m = EventTask([("T", "trigger"), ("T", "a"), ("T", "b")]).evaluate(gold, pred)
    assert m["events"]["tp"] == 0 and m["triggers"]["f1"] == 1.0
    assert (m["arguments"]["tp"], m["arguments"]["n_gold"]) == (1, 2)


def test_schema_file(tmp_path):
    p = tmp_path / "schema.jsonl"
    p.write_text('{"event_type": "收购", "role_list": [{"role": "sub-org"}, {"role": "obj-org"}]}\n', encoding="utf-8")
    assert event_readers.read_schema(p) == [("收购", "obj-org"), ("收购", "sub-org"), ("收购", "trigger")]
    task = EventTask.from_documents([], options=event.EventOptions(schema=str(p)))
    assert task.head_specs()[0].channels == 3


@pytest.mark.parametrize(
    "fmt,content,line",
    [
        (
            "fewfc",
            '{"content": "华为收购", "events": []}\n{"content": "华为收购", "events": [{"type": "收购", "mentions": [{"word": "收购", "span": [0, 2], "role": "trigger"}]}]}\n',
            2,
        ),
        (
            "duee",
            '{"text": "华为收购", "event_list": [{"event_type": "收购", "trigger": "收购", "trigger_start_index": 9, "arguments": []}]}\n',
            1,
        ),
        (
            "phee",
            '{"context": "abc", "annotations": [{"events": [{"event_type": "A", "Trigger": {"text": [["b"]], "start": [[0]]}}]}]}\n',
            1,
        ),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, fmt, content, line):
    p = tmp_path / f"bad.{fmt}"
    p.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as err:
        read("event", p, fmt)
    assert err.value.line == line and str(p) in str(err.value)


def test_overfit_save_load(tiny_encoder, tmp_path):
    from gplinker.extractor import Extractor, ModelSettings
    from gplinker.training import TrainConfig, train

    docs = read("event", EV / "zh_train.jsonl")[:4] + read("event", EV / "zh_train.jsonl")[-2:]
    task = EventTask.from_documents(docs)
    ex = Extractor.build(str(tiny_encoder), task, ModelSettings(head_size=16, max_length=40, stride=8), "cpu")
    summary = train(ex, docs, docs, TrainConfig(epochs=200, batch_size=6, lr=5e-3, head_lr=1e-2, warmup_ratio=0.0), tmp_path)
    assert summary["best"]["f1"] == 1.0, summary["history"][-1]
    loaded = load_model(tmp_path / "model", device="cpu")
    assert (
        [d.events for d in loaded.predict(docs, batch_size=1)] == [d.events for d in ex.predict(docs)] == [d.events for d in docs]
    )


def test_early_training_explosion_is_capped_not_hung(caplog):
    caplog.set_level("DEBUG")
    n = 40
    i, j = np.triu_indices(n)
    args = [("T", "r", int(a), int(b)) for a, b in zip(i, j)]  # every span fires: 820 arguments
    cells = np.column_stack([i, j])  # every link fires
    events = events_from_graph(args, cells, cells, {a: 0.6 for a in args})
    assert 0 < len(events) <= event.MAX_EVENTS_PER_TYPE and "capped" in caplog.text


def test_link_threshold_is_chosen_on_dev_saved_and_reproduced(tiny_encoder, tmp_path):
    import json

    from gplinker.extractor import Extractor, ModelSettings
    from gplinker.training import LINK_THRESHOLDS, TrainConfig, main_f1, train

    docs = read("event", EV / "zh_train.jsonl")
    ex = Extractor.build(
        str(tiny_encoder), EventTask.from_documents(docs), ModelSettings(head_size=16, max_length=40, stride=8), "cpu", seed=3
    )
    summary = train(
        ex, docs, docs[:6], TrainConfig(epochs=12, batch_size=6, lr=5e-3, head_lr=1e-2), tmp_path
    )  # links half learnt
    tuned = summary["link_threshold"]
    scores = {float(t): f for t, f in tuned["dev_f1"].items()}
    assert set(scores) == set(LINK_THRESHOLDS)
    ratios = {float(t): r for t, r in tuned["dev_count_ratio"].items()}
    within = [t for t in scores if 0.8 <= ratios[t] <= 1.25] or list(scores)  # events not fragmented, where possible
    assert tuned["chosen"] == max(within, key=lambda t: (scores[t], -abs(t)))  # then the best dev F1; ties nearest 0
    saved = json.loads((tmp_path / "model" / "gplinker.json").read_text())
    assert saved["link_threshold"] == tuned["chosen"]
    loaded = load_model(tmp_path / "model", device="cpu")
    assert main_f1(loaded.task.evaluate(docs[:6], loaded.predict(docs[:6])), loaded.task.main_level) == pytest.approx(
        scores[tuned["chosen"]]
    )
    assert summary["best"]["metrics"]["events"]["f1"] == pytest.approx(scores[tuned["chosen"]])


def test_label_sharing_saved_loaded_and_kept_off_for_older_models(tiny_encoder, tmp_path, capsys):
    """A model saved before label sharing (no ``label_sharing`` key, no shared weights) loads and
    predicts as before; a new one saves its shared biases and loads them; fine-tuning with a new
    event type keeps the trained rows of every group it already had."""
    import json

    import torch

    from gplinker.extractor import Extractor, ModelSettings
    from gplinker.finetune import extend_extractor
    from gplinker.structures import Argument, Document, Event

    docs = read("event", EV / "zh_train.jsonl")
    texts = [d.text for d in docs]
    low = {"arguments": -9.0, "heads": -9.0, "tails": -9.0}
    for sharing in (False, True):
        ex = Extractor.build(
            str(tiny_encoder),
            EventTask.from_documents(docs),
            ModelSettings(head_size=16, max_length=40, stride=8, label_sharing=sharing),
            "cpu",
            seed=3,
        )
        assert (ex.model.heads["arguments"].shared is not None) == sharing
        ex.save_pretrained(tmp_path / f"m{sharing}")
        if not sharing:  # as an older gplinker wrote it
            cfg = tmp_path / "mFalse" / "gplinker.json"
            config = json.loads(cfg.read_text())
            del config["label_sharing"]
            cfg.write_text(json.dumps(config))
        loaded = load_model(tmp_path / f"m{sharing}", device="cpu")
        assert loaded.settings.label_sharing == sharing
        from gplinker import cli

        assert cli.main(["info", str(tmp_path / f"m{sharing}"), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["label_sharing"] == sharing
        a, b = ex.document_cells(texts, thresholds=low), loaded.document_cells(texts, thresholds=low)
        assert sum(len(c["arguments"]) for c in a) > 20
        assert all(np.array_equal(x["arguments"].rows, y["arguments"].rows) for x, y in zip(a, b))
    base = load_model(tmp_path / "mTrue", device="cpu")
    with torch.no_grad():
        base.model.heads["arguments"].shared.dense.weight.normal_()  # as if trained
    new = EventTask.from_documents([Document("甲公司起诉乙公司", events=(Event("新类型", (Argument("原告", 0, 3),)),))])
    grown = extend_extractor(base, new)
    old, now = base.model.heads["arguments"].shared, grown.model.heads["arguments"].shared
    assert set(old.names) < set(now.names) and "type=新类型" in now.names
    for g in old.names:
        assert torch.equal(now.dense.weight[2 * now.names.index(g)], old.dense.weight[2 * old.names.index(g)])


def test_link_threshold_prefers_event_counts_near_gold():
    """A threshold with more F1 but twice the gold events (fragments) loses to one inside 0.8-1.25;
    with none inside, the best F1 wins."""
    from types import SimpleNamespace

    from gplinker.training import tune_link_threshold

    def level(f1, n_pred):
        return {"events": {"f1": f1, "n_pred": n_pred, "n_gold": 100}}

    for by_t, expect in (
        ({0.0: level(0.05, 270), -1.0: level(0.08, 214), -4.0: level(0.07, 97), -5.0: level(0.06, 87)}, -4.0),
        ({0.0: level(0.05, 270), -1.0: level(0.08, 214)}, -1.0),
    ):
        task = EventTask([("T", "trigger")])
        scores = iter(by_t.values())  # evaluate is called once per candidate, in order
        task.evaluate = lambda gold, pred: next(scores)
        ex = SimpleNamespace(task=task, settings=SimpleNamespace(link_threshold=0.0), document_cells=lambda texts, batch_size: [])
        chosen, _ = tune_link_threshold(ex, [], candidates=tuple(by_t))
        assert chosen == expect and ex.settings.link_threshold == expect
