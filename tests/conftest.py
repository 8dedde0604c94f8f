"""Shared fixtures: a tiny random BERT and its WordPiece tokenizer, built in-process, offline."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "ner"
sys.path.insert(0, str(ROOT))

from gplinker.alignment import align_targets, merge_windows  # noqa: E402
from gplinker.cells import HeadCells  # noqa: E402
from gplinker.decoding import positive_cells  # noqa: E402
from gplinker.heads import span_mask  # noqa: E402
from gplinker.offsets import Featurizer  # noqa: E402
from gplinker.tasks import default_registry  # noqa: E402

REGISTRY = default_registry()


def read(task: str, path, fmt: str = "auto", labelled: bool = True):
    """Documents of a data file through the task registry (as the CLI reads them)."""
    return REGISTRY[task].read(path, fmt, labelled)


EN_WORDS = ["john", "smith", "mary", "johnson", "paris", "boston", "new", "york", "the", "in", "of", "and", "said"]
EN_PIECES = ["un", "##believ", "##able", "##son", "pet", "##rova", "glob", "##ex"]


def build_tiny_encoder(path: Path, texts: list[str] = (), seed: int = 0, dropout: float = 0.1) -> Path:
    """Write a 2-layer, hidden-32 random BERT with a vocabulary covering ``texts`` to ``path``."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    chars = sorted({c.lower() for t in texts for c in t if not c.isspace()} | set("abcdefghijklmnopqrstuvwxyz0123456789.,"))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + EN_WORDS + EN_PIECES
    vocab += [c for c in chars if c not in vocab] + [f"##{c}" for c in chars if f"##{c}" not in vocab]
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    # transformers 5: BertTokenizerFast(vocab_file=...) ignores the file; from_pretrained(dir) reads it.
    tokenizer = BertTokenizerFast.from_pretrained(str(path))
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    BertModel(config, add_pooling_layer=False).save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


def all_texts() -> list[str]:
    """Every shipped example file's content (all tasks, all formats): the tiny vocabulary then
    covers every character the tests use, so no test learns from [UNK] positions alone."""
    return [f.read_text(encoding="utf-8") for f in sorted((ROOT / "data").rglob("*")) if f.is_file() and f.suffix != ".py"]


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> Path:
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny_bert"), all_texts() + ["患者头颅中耳炎阿莫西林胃溃疡腹水硬化"])


@pytest.fixture(scope="session")
def trained_ner(tiny_encoder, tmp_path_factory):
    """(model directory, documents): one tiny NER model fitted to the Chinese examples (dev = train,
    best F1 1.0 kept), shared by every test that needs a trained model but does not test training.
    Read it, never write into it: copy it first."""
    from gplinker.extractor import Extractor, ModelSettings
    from gplinker.tasks import ner
    from gplinker.training import TrainConfig, train

    docs = read("ner", DATA / "zh_train.jsonl")[:8]
    settings = ModelSettings(head_size=16, max_length=32, stride=8)
    ex = Extractor.build(str(tiny_encoder), ner.NERTask.from_documents(docs), settings, "cpu", seed=1)
    out = tmp_path_factory.mktemp("trained_ner")
    summary = train(ex, docs, docs, TrainConfig(epochs=40, batch_size=4, lr=5e-3, head_lr=1e-2, warmup_ratio=0.0), out)
    assert summary["best"]["f1"] == 1.0
    return out / "model", docs


def fitted(task: str, encoder, out: Path, n: int, epochs: int):
    """(model directory, documents): a tiny model fitted to the first ``n`` English examples of
    ``task`` (its predictions are then close to the gold: entities, relations and events to carry)."""
    from gplinker.extractor import Extractor, ModelSettings
    from gplinker.training import TrainConfig, train

    docs = read(task, ROOT / "data" / task / "en_train.jsonl")[:n]
    entry = default_registry()[task]
    ex = Extractor.build(
        str(encoder), entry.task_class.from_documents(docs), ModelSettings(head_size=16, max_length=48), "cpu", seed=1
    )
    train(ex, docs, docs, TrainConfig(epochs=epochs, batch_size=4, lr=5e-3, head_lr=1e-2, warmup_ratio=0.0), out)
    return out / "model", docs


@pytest.fixture(scope="session")
def fitted_relation(tiny_encoder, tmp_path_factory):
    """A relation model fitted to 8 English examples (shared; read it, never write into it)."""
    return fitted("relation", tiny_encoder, tmp_path_factory.mktemp("fitted_relation"), 8, 60)


@pytest.fixture(scope="session")
def fitted_event(tiny_encoder, tmp_path_factory):
    """An event model fitted to 6 English examples (shared; read it, never write into it)."""
    return fitted("event", tiny_encoder, tmp_path_factory.mktemp("fitted_event"), 6, 80)


@pytest.fixture(scope="session")
def tokenizer(tiny_encoder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_encoder))


@pytest.fixture
def exploding_decoder(monkeypatch):
    """The NER decoder raises on any text containing "BOOM" (a model failing on one text)."""
    from gplinker.tasks import ner

    real = ner.NERTask.decode

    def decode(self, doc, cells):
        if "BOOM" in doc.text:
            raise RuntimeError("decoder exploded")
        return real(self, doc, cells)

    monkeypatch.setattr(ner.NERTask, "decode", decode)


def oracle_predict(task, tokenizer, docs, max_length=64, stride=16, policy="expand"):
    """Gold -> the library's token targets -> perfect logits (+10 at gold cells, -10 elsewhere,
    heads' masks applied) -> positive cells -> windows merged by the library -> task.decode."""
    fz = Featurizer(tokenizer, max_length, stride)
    windows = fz.windows([d.text for d in docs])
    specs = task.head_specs()
    by_doc = [[k for k, w in enumerate(windows) if w.doc_index == i] for i in range(len(docs))]
    from gplinker.structures import Document

    out = []
    for d, ks in zip(docs, by_doc):
        ws = [windows[k] for k in ks]
        targets = align_targets(specs, d, task.targets(d), ws, policy)
        cells = []
        for w, t in zip(ws, targets):
            n = len(w)
            per_head = {}
            for spec in specs:
                logits = torch.full((1, spec.channels, n, n), -10.0)
                for c, i, j in t.get(spec.name, np.zeros((0, 3), dtype=np.int64)):
                    logits[0, c, i, j] = 10.0
                mask = torch.from_numpy(w.token_starts >= 0)[None]
                logits = logits.masked_fill(~span_mask(mask, spec.tril_mask), -1e12)
                found = positive_cells(logits)
                per_head[spec.name] = HeadCells(
                    found[:, 1:].numpy(), logits[found[:, 0], found[:, 1], found[:, 2], found[:, 3]].numpy()
                )
            cells.append(per_head)
        out.append(task.decode(Document(text=d.text, id=d.id), merge_windows(specs, ws, cells)))
    return out, windows
