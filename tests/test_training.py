"""System tests: overfit a few documents, save, reload, identical predictions; batch invariance."""

import pytest
import torch
from conftest import DATA, read

from gplinker.extractor import Extractor, ModelSettings
from gplinker.tasks import load as load_model
from gplinker.tasks import ner
from gplinker.training import TrainConfig, train


@pytest.fixture(scope="module")
def trained(tiny_encoder, tmp_path_factory):
    docs = read("ner", DATA / "zh_train.jsonl")[:8]
    task = ner.NERTask.from_documents(docs)
    ex = Extractor.build(
        str(tiny_encoder), task, ModelSettings(head_type="efficient", head_size=16, max_length=32, stride=8), "cpu"
    )
    out = tmp_path_factory.mktemp("run")
    summary = train(ex, docs, docs, TrainConfig(epochs=60, batch_size=4, lr=5e-3, head_lr=1e-2, warmup_ratio=0.0), out)
    return ex, docs, out, summary


def test_overfits_a_few_documents(trained):
    ex, docs, out, summary = trained
    assert summary["best"]["f1"] == 1.0, summary["history"][-1]
    pred = ex.predict(docs)
    assert [d.entities for d in pred] == [d.entities for d in docs]


def test_save_reload_identical_predictions(trained):
    ex, docs, out, _ = trained
    loaded = load_model(out / "model", device="cpu")
    texts = [d.text for d in docs] + ["王芳在杭州的小米公司工作了三年。" * 3]  # the last one spans several windows
    a, b = ex.predict(texts), loaded.predict(texts)
    assert [d.entities for d in a] == [d.entities for d in b]
    for name, head in ex.model.heads.state_dict().items():
        assert torch.equal(head, loaded.model.heads.state_dict()[name])
    assert (out / "model" / "gplinker.json").is_file() and (out / "model" / "encoder" / "config.json").is_file()
    assert (out / "model" / "heads.safetensors").is_file()


def test_batch_size_does_not_change_predictions(trained):
    ex, docs, _, _ = trained
    texts = [d.text for d in docs] + ["短", "", "王芳在杭州的小米公司工作了三年。" * 4]
    one = ex.predict(texts, batch_size=1)
    eight = ex.predict(texts, batch_size=8)
    assert [d.entities for d in one] == [d.entities for d in eight]
    assert len(one) == len(texts)


def test_every_parameter_gets_a_gradient(tiny_encoder):
    """Through the path training takes: the library's targets, collate, the factorised loss."""
    from gplinker.model import collate
    from gplinker.training import training_windows

    docs = read("ner", DATA / "zh_train.jsonl")[:4]
    task = ner.NERTask.from_documents(docs)
    for head in ("efficient", "standard"):
        ex = Extractor.build(str(tiny_encoder), task, ModelSettings(head_type=head, head_size=8, max_length=32, stride=8), "cpu")
        ws, targets, stats = training_windows(ex, docs)
        assert stats.total == sum(len(d.entities) for d in docs) and sum(len(t["entities"]) for t in targets) > 0
        batch = collate(ws, ex.pad_id, task.head_specs(), targets)
        loss, parts = ex.model.training_loss(**batch.inputs(), labels=batch.labels)
        assert loss.item() > 0 and set(parts) == {"entities"}
        loss.backward()
        missing = [n for n, p in ex.model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum())]
        # the only parameters allowed no gradient are embedding rows of unused tokens, which still get a zero-sum grad tensor
        assert all("embeddings" in n for n in missing), missing


def test_same_seed_same_weights(tiny_encoder):
    """--seed covers everything random: the heads' initialisation and the batch order."""
    docs = read("ner", DATA / "en_train.jsonl")[:8]
    states = []
    for _ in range(2):
        torch.manual_seed(1234)  # whatever happened before must not matter
        ex = Extractor.build(
            str(tiny_encoder), ner.NERTask.from_documents(docs), ModelSettings(max_length=64, stride=16), "cpu", seed=7
        )
        train(ex, docs, None, TrainConfig(max_steps=3, batch_size=4, seed=7))
        states.append(ex.model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    other = Extractor.build(
        str(tiny_encoder), ner.NERTask.from_documents(docs), ModelSettings(max_length=64, stride=16), "cpu", seed=8
    )
    assert not torch.equal(other.model.heads.state_dict()["entities.p_dense.weight"], states[0]["heads.entities.p_dense.weight"])


@pytest.mark.parametrize("max_steps", [3, 7])
def test_max_steps_overrides_epochs(tiny_encoder, max_steps):
    """--max-steps N trains exactly N steps whatever --epochs says, evaluating at each epoch end
    and at the last step (8 documents, batch 4: 2 steps per epoch)."""
    docs = read("ner", DATA / "en_train.jsonl")[:8]
    ex = Extractor.build(str(tiny_encoder), ner.NERTask.from_documents(docs), ModelSettings(max_length=64, stride=16), "cpu")
    summary = train(ex, docs, docs[:2], TrainConfig(epochs=1, max_steps=max_steps, batch_size=4))
    assert summary["steps"] == max_steps
    assert [h["step"] for h in summary["history"]] == list(range(2, max_steps, 2)) + [max_steps]


def test_training_resets_a_temperature_fitted_on_other_weights(tiny_encoder, tmp_path):
    import json

    docs = read("ner", DATA / "en_train.jsonl")[:8]
    ex = Extractor.build(str(tiny_encoder), ner.NERTask.from_documents(docs), ModelSettings(max_length=64, stride=16), "cpu")
    ex.settings.temperature = 2.5  # as a calibrated model given to --init-from carries
    train(ex, docs, None, TrainConfig(max_steps=2, batch_size=4), tmp_path)
    assert ex.settings.temperature == 1.0
    assert json.loads((tmp_path / "model" / "gplinker.json").read_text())["temperature"] == 1.0


@pytest.mark.parametrize("max_length, stride", [(32, 8), (128, 32), (256, 64), (512, 64)])
def test_default_stride_follows_the_window(tiny_encoder, max_length, stride):
    """A short window builds without naming a stride (the default was a fixed 64, longer than a
    32-token window, so ModelSettings(max_length=32) could not build an extractor)."""
    settings = ModelSettings(max_length=max_length)
    assert settings.stride == stride
    ex = Extractor.build(str(tiny_encoder), ner.NERTask.from_documents(read("ner", DATA / "en_train.jsonl")[:2]), settings, "cpu")
    assert ex.settings.stride == stride and ModelSettings(max_length=max_length, stride=0).stride == 0


def test_prefetched_batches_train_the_same_model(tiny_encoder, monkeypatch):
    """Batches collated ahead on a host thread while the step runs give the weights collating in
    the step gives; the collation does run on another thread."""
    import threading

    from gplinker import training

    docs = read("ner", DATA / "en_train.jsonl")[:8]
    threads = set()
    real = training._Prefetch._collate

    def spy(self, g):
        threads.add(threading.get_ident())
        return real(self, g)

    states = []
    for prefetch in (True, False):
        if not prefetch:  # collate inside the step instead: hand it (windows, targets)
            monkeypatch.setattr(
                training._Prefetch,
                "take",
                lambda self, g: [([self.run.windows[k] for k in s], [self.run.targets[k] for k in s]) for s in self.groups[g]],
            )
        else:
            monkeypatch.setattr(training._Prefetch, "_collate", spy)
        ex = Extractor.build(
            str(tiny_encoder), ner.NERTask.from_documents(docs), ModelSettings(max_length=64, stride=16), "cpu", seed=7
        )
        train(ex, docs, None, TrainConfig(max_steps=5, batch_size=4, seed=7))
        states.append(ex.model.state_dict())
    assert threads and threading.get_ident() not in threads
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_model_selection_breaks_ties_on_the_other_levels():
    """Evaluations with the same main F1 (0: no whole event right yet): the one whose other levels
    score higher is kept; a lower main F1 never wins on the other levels."""
    from gplinker.training import _Best

    def levels(events, arguments):
        return {name: {"precision": f1, "recall": f1, "f1": f1} for name, f1 in (("events", events), ("arguments", arguments))}

    model, best = torch.nn.Linear(2, 2), _Best()
    assert best.offer(0.0, levels(0.0, 0.02), 1, 10, model)
    assert best.offer(0.0, levels(0.0, 0.06), 2, 20, model) and best.step == 20
    assert not best.offer(0.0, levels(0.0, 0.04), 3, 30, model) and (best.step, best.since) == (20, 1)
    assert best.offer(0.1, levels(0.1, 0.01), 4, 40, model) and best.since == 0
    assert not best.offer(0.05, levels(0.05, 0.9), 5, 50, model) and best.step == 40
