"""Relation triples: oracle round trips per reader and hard cases, the set decoder, readers, training."""

import numpy as np
import pytest
from conftest import ROOT, oracle_predict, read

from gplinker.io import DataError
from gplinker.structures import Document, Relation, Span
from gplinker.tasks import load as load_model
from gplinker.tasks.readers.relation import LocateStats, place_triple
from gplinker.tasks.relation import RelationOptions, RelationTask, link_pairs

REL = ROOT / "data" / "relation"


@pytest.mark.parametrize(
    "name,fmt",
    [
        ("en_train.jsonl", "jsonl"),
        ("spert_sample.json", "spert"),
        ("webnlg_sample.json", "casrel"),
        ("duie_sample.jsonl", "duie"),
    ],
)
@pytest.mark.parametrize("mode", ["typed", "subject-object"])
def test_oracle_round_trip_per_reader(tokenizer, name, fmt, mode):
    gold = read("relation", REL / name, fmt)
    task = RelationTask.from_documents(gold, RelationOptions(entity_mode=mode))
    pred, _ = oracle_predict(task, tokenizer, gold, max_length=64, stride=16, policy="strict")
    m = task.evaluate(gold, pred)
    for level in ("triples", "triples_boundary", "triples_text", "entities"):
        assert m[level]["f1"] == 1.0, (level, m[level])
    if mode == "typed":
        assert [d.relations for d in pred] == [d.relations for d in gold]
        assert [d.entities for d in pred] == [d.entities for d in gold]


def _doc(text, triples, extra=()):
    """Build a document from (subject, s_type, predicate, object, o_type, s_occurrence, o_occurrence)."""
    rels = []
    for s, st, p, o, ot, si, oi in triples:
        ss = [k for k in range(len(text)) if text.startswith(s, k)][si]
        oo = [k for k in range(len(text)) if text.startswith(o, k)][oi]
        rels.append(Relation(Span(ss, ss + len(s), st), p, Span(oo, oo + len(o), ot)))
    ents = {x for r in rels for x in (r.head, r.tail)} | set(extra)
    return Document(text, tuple(ents), tuple(rels))


HARD = [
    # subject follows its object
    _doc("北京是张伟的家乡。", [("张伟", "人", "家乡", "北京", "地", 0, 0)]),
    # one entity in several triples; two triples sharing both entities with different predicates
    _doc(
        "李娜是王芳的老师也是王芳的邻居，李娜住在上海。",
        [
            ("李娜", "人", "老师", "王芳", "人", 0, 0),
            ("李娜", "人", "邻居", "王芳", "人", 0, 0),
            ("李娜", "人", "住在", "上海", "地", 1, 0),
        ],
    ),
    # overlapping entities (SEO / nested): 北京 inside 北京大学, and both related
    _doc("北京大学位于北京。", [("北京大学", "机", "位于", "北京", "地", 0, 1), ("北京大学", "机", "简称", "北京", "地", 0, 0)]),
    # repeated strings: the second mention of 张伟 is the subject
    _doc(
        "张伟出生在上海，张伟在华为工作。",
        [("张伟", "人", "出生地", "上海", "地", 0, 0), ("张伟", "人", "就职于", "华为", "机", 1, 0)],
    ),
    # a typed entity outside every triple
    _doc("王芳去了杭州。", [("王芳", "人", "去", "杭州", "地", 0, 0)], extra=[Span(0, 1, "姓")]),
]


@pytest.mark.parametrize("mode", ["typed", "subject-object"])
def test_oracle_hard_cases(tokenizer, mode):
    task = RelationTask.from_documents(HARD, RelationOptions(entity_mode=mode))
    pred, _ = oracle_predict(task, tokenizer, HARD)
    m = task.evaluate(HARD, pred)
    assert m["triples"]["f1"] == 1.0 and m["entities"]["f1"] == 1.0
    if mode == "typed":
        assert [d.relations for d in pred] == [d.relations for d in HARD]


def test_triple_across_a_window_boundary_on_long_text(tokenizer):
    filler = "今天天气很好我们去公园散步吧"
    cut_inside = 0
    for shift in range(0, 12, 2):  # slide the triple across window cuts
        text = filler[:shift] + filler * 3 + "张伟出生在上海" + filler * 3
        doc = _doc(text, [("张伟", "人", "出生地", "上海", "地", 0, 0)])
        docs = [doc, HARD[1]]
        task = RelationTask.from_documents(docs)
        for stride in (8, 12):
            pred, windows = oracle_predict(task, tokenizer, docs, max_length=24, stride=stride)
            mine = [w for w in windows if w.doc_index == 0]
            s, e = doc.relations[0].head.start, doc.relations[0].tail.end
            cut_inside += any(w.char_start < s < w.char_end < e for w in mine)
            assert len(mine) > 4
            assert [d.relations for d in pred] == [d.relations for d in docs], (shift, stride)
    assert cut_inside >= 3  # the round trip was exercised with a window edge inside the triple


def _brute(subjects, objects, heads, tails):
    hs, ts = {tuple(x) for x in heads.tolist()}, {tuple(x) for x in tails.tolist()}
    out = set()
    for si, sj in subjects.tolist():
        for oi, oj in objects.tolist():
            for p in range(4):
                if (p, si, oi) in hs and (p, sj, oj) in ts:
                    out.add((p, si, sj, oi, oj))
    return out


def test_link_pairs_equals_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = 12
        sp = lambda k: np.unique(np.sort(rng.integers(0, n, (k, 2)), axis=1), axis=0)  # noqa: E731
        subjects, objects = sp(8), sp(8)
        heads = np.unique(np.column_stack([rng.integers(0, 4, 60), rng.integers(0, n, 60), rng.integers(0, n, 60)]), axis=0)
        tails = np.unique(np.column_stack([rng.integers(0, 4, 60), rng.integers(0, n, 60), rng.integers(0, n, 60)]), axis=0)
        got = {tuple(x) for x in link_pairs(subjects, objects, heads, tails, n).tolist()}
        assert got == _brute(subjects, objects, heads, tails)


def test_link_pairs_on_hand_written_cells():
    subjects = np.array([[1, 2], [5, 5]])
    objects = np.array([[5, 5], [7, 9]])
    heads = np.array([[0, 1, 7], [1, 5, 1]])  # p0: (1..2)->(7..9); p1: (5..5)->(1..2)
    tails = np.array([[0, 2, 9], [1, 5, 2], [1, 5, 5]])
    got = link_pairs(subjects, objects, heads, tails, 12).tolist()
    assert got == [[0, 1, 2, 7, 9]]  # (5..5)->(1..2) needs (1,2) as an object: it is only a subject
    assert link_pairs(subjects, np.vstack([objects, [[1, 2]]]), heads, tails, 12).tolist() == [[0, 1, 2, 7, 9], [1, 5, 5, 1, 2]]


def test_early_training_explosion_is_capped_not_hung(caplog):
    caplog.set_level("DEBUG")
    n = 128
    i, j = np.triu_indices(n)
    spans = np.column_stack([i, j])  # every span fires: 8256 of them
    cells = np.column_stack([np.zeros(n * n, int), *np.divmod(np.arange(n * n), n)])  # every link fires
    out = link_pairs(spans, spans, cells, cells, n, max_pairs=200_000)
    assert 0 < len(out) <= 200_000 and "capped" in caplog.text


def test_place_triple_considers_every_occurrence():
    r = LocateStats()
    assert place_triple("北京大学位于北京。", "北京大学", "北京", r) == ((0, 4), (6, 8))
    assert place_triple("Apollo 12 flew in 2012 .", "12", "2012", r) == ((7, 9), (18, 22))
    assert place_triple("abc", "x", "a", r) is None
    assert (r.triples, r.ambiguous, r.not_located) == (3, 1, 1)


def test_duie_complex_objects_and_string_objects(tmp_path):
    p = tmp_path / "duie.jsonl"
    p.write_text(
        '{"text": "周迅在《如懿传》中饰演如懿", "spo_list": [{"subject": "周迅", "predicate": "饰演", "subject_type": "娱乐人物", '
        '"object": {"@value": "如懿", "inWork": "如懿传"}, "object_type": {"@value": "人物", "inWork": "影视作品"}}]}\n'
        '{"text": "张三生于北京", "spo_list": [{"subject": "张三", "predicate": "出生地", "object": "北京", "subject_type": "人物", "object_type": "地点"}]}\n',
        encoding="utf-8",
    )
    docs = read("relation", p)
    got = sorted((r.label, r.tail.text_in(d.text), r.tail.label) for d in docs for r in d.relations)
    assert got == [("出生地", "北京", "地点"), ("饰演", "如懿", "人物"), ("饰演_inWork", "如懿传", "影视作品")]


@pytest.mark.parametrize(
    "fmt,content,line",
    [
        (
            "spert",
            '[{"tokens": ["a", "b"], "entities": [{"type": "X", "start": 0, "end": 1}], "relations": [{"type": "R", "head": 0, "tail": 3}]}]',
            None,
        ),
        ("duie", '{"text": "ab", "spo_list": []}\n{"text": "ab", "spo_list": [{"predicate": "R"}]}\n', 2),
        ("casrel", '[{"text": "ab", "triple_list": [["a", "R"]]}]', None),
    ],
)
def test_malformed_records_name_file_and_place(tmp_path, fmt, content, line):
    p = tmp_path / f"bad.{fmt}"
    p.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as err:
        read("relation", p, fmt)
    assert str(p) in str(err.value)
    if line is None:
        assert "record 1" in str(err.value)
    else:
        assert err.value.line == line


def test_evaluate_levels():
    text = "张伟出生在上海"
    g = Document(text, relations=(Relation(Span(0, 2, "人"), "出生地", Span(5, 7, "地")),))
    p_type = Document(text, relations=(Relation(Span(0, 2, "机"), "出生地", Span(5, 7, "地")),))
    p_bound = Document(text, relations=(Relation(Span(0, 1, "人"), "出生地", Span(5, 7, "地")),))
    task = RelationTask(["人", "地", "机"], ["出生地"])
    m = task.evaluate([g, g], [p_type, p_bound])
    assert m["triples"]["tp"] == 0 and m["triples_boundary"]["tp"] == 1 and m["triples_text"]["tp"] == 1
    assert m["triples"]["n_gold"] == 2


@pytest.mark.parametrize("link_rope", [False, True])
def test_overfit_save_load(tiny_encoder, tmp_path, link_rope):
    from gplinker.extractor import Extractor, ModelSettings
    from gplinker.training import TrainConfig, train

    docs = HARD[:4]
    task = RelationTask.from_documents(docs, RelationOptions(link_rope=link_rope))
    ex = Extractor.build(str(tiny_encoder), task, ModelSettings(head_size=16, max_length=32, stride=8), "cpu")
    summary = train(ex, docs, docs, TrainConfig(epochs=200, batch_size=4, lr=5e-3, head_lr=1e-2, warmup_ratio=0.0), tmp_path)
    assert summary["best"]["f1"] == 1.0, summary["history"][-1]
    loaded = load_model(tmp_path / "model", device="cpu")
    assert loaded.task.link_rope is link_rope
    assert [loaded.model.heads[h].use_rope for h in ("entities", "heads", "tails")] == [True, link_rope, link_rope]
    a, b = ex.predict(docs), loaded.predict(docs)
    assert [d.relations for d in a] == [d.relations for d in b] == [d.relations for d in docs]
    one, eight = loaded.predict(docs, batch_size=1), loaded.predict(docs, batch_size=8)
    assert [d.relations for d in one] == [d.relations for d in eight]


def test_triples_from_logits_both_strategies_equal_brute_force():
    from bench.perf import triples_from_logits

    rng = np.random.default_rng(3)
    for frac in (0.01, 0.3):  # few entities (gathers) and many (cell join)
        ent = np.where(rng.random((2, 2, 12, 12)) < frac, 1.0, -1.0)
        ent[:, :, np.tril_indices(12, -1)[0], np.tril_indices(12, -1)[1]] = -1
        head = np.where(rng.random((2, 4, 12, 12)) < 0.3, 1.0, -1.0)
        tail = np.where(rng.random((2, 4, 12, 12)) < 0.3, 1.0, -1.0)
        got = triples_from_logits(ent, head, tail)
        for b in range(2):
            subj, obj = np.argwhere(ent[b, 0] > 0), np.argwhere(ent[b, 1] > 0)
            want = {
                (p, si, sj, oi, oj)
                for si, sj in subj.tolist()
                for oi, oj in obj.tolist()
                for p in range(4)
                if head[b, p, si, oi] > 0 and tail[b, p, sj, oj] > 0
            }
            assert got[b] == want


def test_link_rope_is_saved_and_older_models_load_without_it(caplog):
    task = RelationTask.from_documents(HARD, RelationOptions(link_rope=True))
    again = RelationTask.from_config(task.config())
    assert again.link_rope and [h.use_rope for h in again.head_specs()] == [True, True, True]
    old = {k: v for k, v in task.config().items() if k != "link_rope"}  # a model saved before the option existed
    assert [h.use_rope for h in RelationTask.from_config(old).head_specs()] == [True, False, False]
    grown = again.extended_with(RelationTask.from_documents(HARD[:1]))  # fine-tuning keeps the saved model's links
    assert grown.link_rope and not caplog.records
    plain = RelationTask.from_documents(HARD).extended_with(task)  # asked for on a model trained without it
    assert not plain.link_rope and "--link-rope is ignored" in caplog.text
