"""gplinker inside spaCy pipelines: the entry-point factory, entities on doc.ents and doc.spans,
relations and events with Span parts, the alignment policy, nlp.pipe against one by one, displaCy."""

import pytest

spacy = pytest.importorskip("spacy")

from gplinker.spacy_component import SPANS_KEY, GPLinkerComponent  # noqa: E402
from gplinker.structures import Argument, Document, Event, Relation, Span  # noqa: E402


def r5(score):
    return None if score is None else round(score, 5)  # batching moves scores by ~1e-8 (padding), items never


def offsets(doc):
    """Everything the component set, in characters (comparable across Docs)."""

    def sp(s):
        return None if s is None else (s.start_char, s.end_char, s.label_, r5(s._.gplinker_score))

    return (
        [sp(s) for s in doc.ents],
        [sp(s) for s in doc.spans[SPANS_KEY]],
        [(sp(r.head), r.label, sp(r.tail), r5(r.score)) for r in doc._.relations],
        [(e.label, r5(e.score), sp(e.trigger), [(role, sp(s), r5(p)) for role, s, p in e.arguments]) for e in doc._.events],
        doc._.gplinker_unaligned,
    )


@pytest.fixture(scope="module")
def en(fitted_relation, fitted_event):
    nlp = spacy.blank("en")
    nlp.add_pipe("gplinker", name="relations", config={"model": str(fitted_relation[0]), "device": "cpu"})
    nlp.add_pipe("gplinker", name="events", config={"model": str(fitted_event[0]), "device": "cpu"})
    return nlp


def test_relations_and_events_on_an_english_doc(en, fitted_relation):
    _, docs = fitted_relation
    doc = en.pipeline[0][1](en.make_doc(docs[0].text))  # the relation component alone
    gold = docs[0]
    assert {(s.start_char, s.end_char, s.label_) for s in doc.spans[SPANS_KEY]} == {
        (s.start, s.end, s.label) for s in gold.entities
    }
    assert {(r.head.start_char, r.label, r.tail.start_char) for r in doc._.relations} == {
        (r.head.start, r.label, r.tail.start) for r in gold.relations
    }
    assert all(isinstance(r.head, spacy.tokens.Span) and 0 < r.score <= 1 for r in doc._.relations)
    assert all(s._.gplinker_score > 0.5 for s in doc.ents)


def test_events_carry_span_triggers_and_arguments(en, fitted_event):
    _, docs = fitted_event
    doc = en(docs[0].text)  # the whole pipeline: the event component runs last and sets the Doc's events
    gold = docs[0].events[0]
    event = next(e for e in doc._.events if e.label == gold.label)
    trigger = next(a for a in gold.arguments if a.role == "trigger")
    assert (event.trigger.start_char, event.trigger.end_char) == (trigger.start, trigger.end)
    assert {(role, s.start_char, s.end_char) for role, s, _ in event.arguments} == {
        (a.role, a.start, a.end) for a in gold.arguments if a.role != "trigger"
    }


def test_nlp_pipe_equals_one_by_one(en, fitted_relation, fitted_event):
    texts = [d.text for d in fitted_relation[1] + fitted_event[1]] * 2
    piped = [offsets(d) for d in en.pipe(texts, batch_size=5)]
    assert piped == [offsets(en(t)) for t in texts]
    assert sum(len(p[0]) for p in piped) > len(texts) // 2  # entities were found: the comparison is not vacuous


def test_a_chinese_pipeline(trained_ner):
    model, docs = trained_ner
    nlp = spacy.blank("zh")  # character segmentation: every span falls on tokens
    nlp.add_pipe("gplinker", config={"model": str(model), "device": "cpu"})
    for d in docs[:4]:
        doc = nlp(d.text)
        assert {(s.start_char, s.end_char, s.label_) for s in doc.spans[SPANS_KEY]} == {
            (s.start, s.end, s.label) for s in d.entities
        }
        assert doc._.gplinker_unaligned == 0


class Fixed:
    """An extractor that predicts a given document (the alignment cases need exact spans)."""

    def __init__(self, pred: Document) -> None:
        self.pred = pred

    def predict(self, texts, batch_size=32):
        return [self.pred.with_annotations() for _ in texts]


def test_nested_spans_go_to_spans_and_the_best_flat_ones_to_ents():
    nlp = spacy.blank("en")
    text = "Bank of China Beijing branch"
    pred = Document(text, (Span(0, 13, "ORG", 0.9), Span(8, 13, "LOC", 0.95), Span(14, 21, "LOC", 0.8)))
    doc = GPLinkerComponent(Fixed(pred))(nlp.make_doc(text))
    assert [(s.text, s.label_) for s in doc.spans[SPANS_KEY]] == [("Bank of China", "ORG"), ("China", "LOC"), ("Beijing", "LOC")]
    assert [(s.text, s.label_) for s in doc.ents] == [("China", "LOC"), ("Beijing", "LOC")]  # the higher score wins the overlap


@pytest.mark.parametrize("alignment, ents, unaligned", [("expand", ["Globexcorp"], 0), ("contract", [], 1), ("strict", [], 1)])
def test_spans_off_token_boundaries_follow_the_alignment_policy(alignment, ents, unaligned):
    nlp = spacy.blank("en")
    text = "Ann works for Globexcorp now"
    pred = Document(
        text,
        (Span(0, 3, "PER", 0.9), Span(14, 20, "ORG", 0.8)),  # "Globex": inside the token "Globexcorp"
        (Relation(Span(0, 3, "PER"), "works_for", Span(14, 20, "ORG"), 0.7),),
    )
    comp = GPLinkerComponent(Fixed(pred), alignment=alignment)
    doc = comp(nlp.make_doc(text))
    assert [s.text for s in doc.ents] == ["Ann", *ents]
    assert len(doc._.relations) == (1 if ents else 0) and doc._.gplinker_unaligned == unaligned == comp.unaligned


def test_triggerless_events_keep_their_arguments():
    nlp = spacy.blank("en")
    text = "Ann sued Bo"
    pred = Document(text, events=(Event("Lawsuit", (Argument("plaintiff", 0, 3, 0.9),), 0.6),))
    doc = GPLinkerComponent(Fixed(pred))(nlp.make_doc(text))
    assert doc._.events[0].trigger is None and [(r, s.text) for r, s, _ in doc._.events[0].arguments] == [("plaintiff", "Ann")]


def test_displacy_renders_the_entities(trained_ner):
    from spacy import displacy

    model, docs = trained_ner
    nlp = spacy.blank("zh")
    nlp.add_pipe("gplinker", config={"model": str(model), "device": "cpu"})
    doc = nlp(docs[0].text)
    html = displacy.render(doc, style="ent", page=False)
    assert doc.ents and all(s.label_ in html and s.text in html for s in doc.ents)


def test_components_add_up_and_keep_earlier_entities():
    nlp = spacy.blank("en")
    text = "Ann sued Bo in Rome"
    doc = nlp.make_doc(text)
    doc.ents = [doc.char_span(15, 19, label="GPE")]  # an earlier component's entity
    first = Document(
        text, (Span(0, 3, "PER", 0.9), Span(9, 19, "X", 0.99)), (Relation(Span(0, 3, "PER"), "r", Span(9, 19, "X"), 0.5),)
    )
    second = Document(text, (Span(9, 11, "PER", 0.9),), events=(Event("Lawsuit", (Argument("trigger", 4, 8, 0.8),), 0.8),))
    doc = GPLinkerComponent(Fixed(second))(GPLinkerComponent(Fixed(first))(doc))
    assert [(s.text, s.label_) for s in doc.ents] == [("Ann", "PER"), ("Bo", "PER"), ("Rome", "GPE")]
    assert [(s.text, s.label_) for s in doc.spans[SPANS_KEY]] == [("Ann", "PER"), ("Bo in Rome", "X"), ("Bo", "PER")]
    assert [r.label for r in doc._.relations] == ["r"] and [e.label for e in doc._.events] == ["Lawsuit"]


def test_a_bad_alignment_is_refused():
    with pytest.raises(ValueError, match="choose one of expand, contract, strict"):
        GPLinkerComponent(Fixed(Document("x")), alignment="fuzzy")
