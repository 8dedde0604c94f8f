"""The literature's metrics beside ours, each against a hand-computed example."""

import pytest

from gplinker.metrics import char_f1, soft_score
from gplinker.structures import Argument, Document, Event, Relation, Span
from gplinker.tasks import EventTask, RelationTask


def rel(text, s, p, o, st="X", ot="Y"):
    a, b = text.index(s), text.index(o)
    return Relation(Span(a, a + len(s), st), p, Span(b, b + len(o), ot))


def test_spert_macro_and_partial_match_on_a_hand_computed_example():
    text = "Anna works for Acme in New York City , United States ."
    gold = Document(
        text, relations=(rel(text, "Anna", "Work_For", "Acme"), rel(text, "New York City", "Located_In", "United States"))
    )
    pred = Document(
        text,
        relations=(
            rel(text, "Anna", "Work_For", "Acme"),  # right
            rel(text, "Anna", "Work_For", "Acme"),  # duplicate: counted once
            rel(text, "York City", "Located_In", "United States"),  # subject cut: partial match only
            rel(text, "Anna", "Located_In", "New York City", "X", "Z"),
        ),
    )  # wrong
    m = RelationTask(["X", "Y", "Z"], ["Located_In", "Work_For"]).evaluate([gold], [pred])
    assert (m["triples"]["tp"], m["triples"]["n_pred"], m["triples"]["n_gold"]) == (1, 3, 2)
    assert m["triples"]["f1"] == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))  # micro 0.4
    # macro: Work_For P=R=F1=1; Located_In P=0/2, R=0/1, F1=0 -> mean F1 0.5
    assert m["triples"]["macro"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5})
    # last word of each entity: "City" == "City", so the cut subject counts; "Anna"/"City" does not
    assert (m["triples_partial"]["tp"], m["triples_partial"]["n_pred"]) == (2, 3)
    assert m["triples_text"]["tp"] == 1


def test_casee_trigger_and_argument_identification_and_classification():
    text = "张伟起诉华为公司索赔百万"
    gold = Document(text, events=(Event("起诉", (Argument("trigger", 2, 4), Argument("原告", 0, 2), Argument("被告", 4, 8))),))
    pred = Document(
        text,
        events=(
            Event("起诉", (Argument("trigger", 2, 4), Argument("原告", 4, 8), Argument("被告", 0, 2))),  # roles swapped
            Event("投资", (Argument("trigger", 2, 4), Argument("被告", 4, 8))),  # wrong type
        ),
    )
    m = EventTask([("起诉", "trigger"), ("起诉", "原告"), ("起诉", "被告"), ("投资", "trigger"), ("投资", "被告")]).evaluate(
        [gold], [pred]
    )
    assert (m["trigger_identification"]["tp"], m["trigger_identification"]["n_pred"]) == (1, 1)  # one span, both events
    assert (m["trigger_classification"]["tp"], m["trigger_classification"]["n_pred"]) == (1, 2)
    assert (
        m["argument_identification"]["tp"],
        m["argument_identification"]["n_pred"],
        m["argument_identification"]["n_gold"],
    ) == (2, 3, 2)
    assert (m["argument_classification"]["tp"], m["argument_classification"]["n_pred"]) == (0, 3)
    assert m["argument_classification"]["f1"] == m["arguments"]["f1"] == 0.0 and m["events"]["tp"] == 0


def test_duee_character_level_argument_score():
    assert char_f1("华为技术", "华为技术有限公司") == pytest.approx(2 * 1.0 * 0.5 / 1.5)
    assert char_f1("abc", "xyz") == 0.0
    gold = [{("起诉", "被告"): ["华为技术有限公司"], ("起诉", "原告"): ["张伟"]}]
    pred = [{("起诉", "被告"): ["华为技术", "小米"], ("起诉", "原告"): ["张伟"]}]
    m = soft_score(gold, pred)
    # 华为技术 takes the gold 被告 (0.6667); 小米 finds no gold left (0); 张伟 exact (1)
    assert m["matched"] == pytest.approx(2 / 3 + 1.0)
    assert m["precision"] == pytest.approx((2 / 3 + 1) / 3) and m["recall"] == pytest.approx((2 / 3 + 1) / 2)
    # through the task: a duplicate predicted argument counts once, a partial one scores its overlap
    text = "张伟起诉华为技术有限公司"
    g = Document(text, events=(Event("起诉", (Argument("trigger", 2, 4), Argument("被告", 4, 12))),))
    p = Document(
        text,
        events=(
            Event("起诉", (Argument("trigger", 2, 4), Argument("被告", 4, 8))),
            Event("起诉", (Argument("trigger", 2, 4), Argument("被告", 4, 8), Argument("原告", 0, 2))),
        ),
    )
    m = EventTask([("起诉", "trigger"), ("起诉", "被告"), ("起诉", "原告")]).evaluate([g], [p])["arguments_duee"]
    assert (m["n_pred"], m["n_gold"]) == (2, 1) and m["matched"] == pytest.approx(2 / 3)


def test_gold_cells_decode_back_to_the_gold_exactly():
    """The oracle assembly setting: gold character-level cells decode to the gold documents."""
    from conftest import ROOT, read

    from gplinker.alignment import gold_cells

    for task_name, path in (
        ("relation", ROOT / "data" / "relation" / "en_train.jsonl"),
        ("event", ROOT / "data" / "event" / "zh_train.jsonl"),
        ("event", ROOT / "data" / "event" / "phee_sample.jsonl"),
    ):
        docs = read(task_name, path)
        task = (RelationTask if task_name == "relation" else EventTask).from_documents(docs)
        for d in docs:
            got = task.decode(Document(d.text), gold_cells(task.head_specs(), task.targets(d)))
            assert got.relations == d.relations and got.events == d.events, d.text


def test_temperature_fit_recovers_a_known_miscalibration_and_ece_sees_it():
    import numpy as np

    from gplinker.calibration import Outcomes, ece, fit_temperature, probabilities, reliability

    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 3.0, 20000)
    for true_t in (0.5, 1.0, 2.5):
        correct = rng.random(len(logits)) < probabilities(logits, true_t)  # right as often as σ(2s/T) says
        t = fit_temperature([Outcomes("h", logits, correct, 0)])
        assert abs(np.log(t / true_t)) < 0.08, (t, true_t)
        calibrated = ece(probabilities(logits, true_t), correct)
        assert calibrated < 0.02  # calibrated at the true T ...
        if true_t != 1.0:
            assert ece(probabilities(logits, 1.0), correct) > 3 * calibrated  # ... and visibly not at T = 1
    pts = reliability(np.array([0.05, 0.15, 0.95, 0.95]), np.array([False, True, True, False]))
    assert pts == [(0.05, 0.0, 1), (0.15, 1.0, 1), (0.95, 0.5, 2)]


def test_the_main_level_is_named_by_the_task_not_guessed():
    import pytest

    from gplinker.metrics import Metrics
    from gplinker.tasks import EventTask, NERTask, RelationTask

    assert (NERTask.main_level, RelationTask.main_level, EventTask.main_level) == ("entities", "triples", "events")
    levels = {"arguments": {"f1": 0.9, "n_pred": 9, "n_gold": 10}, "events": {"f1": 0.2, "n_pred": 3, "n_gold": 2}}
    m = Metrics(levels, "events")  # not the first level with an f1
    assert m.f1 == 0.2 and m.count_ratio == 1.5
    with pytest.raises(KeyError, match="main level 'triples'"):
        Metrics(levels, "triples")
