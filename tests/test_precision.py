"""Prediction under autocast (--precision): the same items as fp32 on trained models, scores within
a stated tolerance; the option on the command line."""

import json

import pytest

from gplinker.cli import main
from gplinker.tasks import load

SCORE_TOLERANCE = 0.02  # bf16 keeps 8 bits of mantissa: a probability moves by about 1e-2 at most here


def items(doc):
    return (
        {(s.start, s.end, s.label) for s in doc.entities},
        {(r.head.start, r.label, r.tail.start) for r in doc.relations},
        {(e.label, tuple((a.role, a.start, a.end) for a in e.arguments)) for e in doc.events},
    )


def scores(doc):
    return sorted([s.score for s in doc.entities] + [r.score for r in doc.relations] + [e.score for e in doc.events])


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("fixture", ["trained_ner", "fitted_relation", "fitted_event"])
def test_autocast_predicts_the_items_of_fp32(request, fixture, precision):
    model, docs = request.getfixturevalue(fixture)
    ex = load(model, device="cpu")
    texts = [d.text for d in docs]
    want = ex.predict(texts)
    got = ex.set_precision(precision).predict(texts)
    assert [items(d) for d in got] == [items(d) for d in want]
    assert sum(len(x) for d in want for x in items(d)) >= len(docs)  # items were predicted: not vacuous
    for a, b in zip(got, want):
        assert max((abs(x - y) for x, y in zip(scores(a), scores(b))), default=0.0) <= SCORE_TOLERANCE
    assert ex.set_precision("fp32").predict(texts) == want  # and back


def test_the_command_line_option(trained_ner, tmp_path, capsys):
    model, docs = trained_ner
    src = tmp_path / "in.txt"
    src.write_text("\n".join(d.text for d in docs) + "\n", encoding="utf-8")
    outs = {}
    for p in ("fp32", "bf16"):
        argv = [
            "predict",
            "--model",
            str(model),
            "--input",
            str(src),
            "--output",
            str(tmp_path / f"{p}.jsonl"),
            "--device",
            "cpu",
        ]
        assert main(argv + ["--precision", p]) == 0
        outs[p] = [json.loads(x) for x in (tmp_path / f"{p}.jsonl").read_text().splitlines()]
    strip = [[(e["start"], e["end"], e["label"]) for e in r["entities"]] for r in outs["fp32"]]
    assert strip == [[(e["start"], e["end"], e["label"]) for e in r["entities"]] for r in outs["bf16"]]
    assert (
        main(["predict", "--model", str(model), "--input", str(src), "--output", str(tmp_path / "x"), "--precision", "fp8"]) == 2
    )
    assert "invalid choice: 'fp8'" in capsys.readouterr().err


def test_an_unknown_precision_is_refused(trained_ner):
    with pytest.raises(ValueError, match="choose one of fp32, bf16, fp16"):
        load(trained_ner[0], device="cpu").set_precision("int4")


def test_attention_runs_through_sdpa(trained_ner):
    """Loaded models attend through torch's scaled-dot-product attention (fused kernels on a GPU)
    where the encoder allows it, not the eager matmul-softmax path."""
    from gplinker.tasks import load

    model_dir, _ = trained_ner
    assert load(model_dir, "cpu").model.encoder.config._attn_implementation == "sdpa"
