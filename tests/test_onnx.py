"""The ONNX Runtime encoder predicts what the torch encoder predicts (skipped without onnxruntime)."""

import pytest
import torch
from conftest import ROOT, read

from gplinker.extractor import Extractor, ModelSettings
from gplinker.tasks import load as load_model
from gplinker.tasks import ner

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def test_onnx_encoder_gives_the_same_predictions_and_is_exported_once(tiny_encoder, tmp_path):
    from gplinker.onnx_runtime import ONNX_NAME, OnnxEncoder, use_onnx

    docs = read("ner", ROOT / "data" / "ner" / "en_dev.jsonl")
    task = ner.NERTask.from_documents(docs)
    ex = Extractor.build(str(tiny_encoder), task, ModelSettings(max_length=32, stride=8), "cpu")
    with torch.no_grad():  # random heads that fire on some cells, so there is something to compare
        ex.model.heads["entities"].q_dense.bias.fill_(0.5)
    ex.save_pretrained(tmp_path / "model")
    loaded = load_model(tmp_path / "model", "cpu")
    want = loaded.predict(docs)
    assert sum(len(d.entities) for d in want) > 0
    use_onnx(loaded, tmp_path / "model")
    assert isinstance(loaded.model.encoder, OnnxEncoder)
    onnx_file = tmp_path / "model" / ONNX_NAME
    stamp = onnx_file.stat().st_mtime_ns
    got = loaded.predict(docs)  # windows of several lengths and batch sizes go through one exported graph
    assert [{(s.start, s.end, s.label) for s in d.entities} for d in got] == [
        {(s.start, s.end, s.label) for s in d.entities} for d in want
    ]
    for g, w in zip(got, want):
        assert [s.score for s in sorted(g.entities)] == pytest.approx([s.score for s in sorted(w.entities)], abs=1e-4)
    use_onnx(load_model(tmp_path / "model", "cpu"), tmp_path / "model")
    assert onnx_file.stat().st_mtime_ns == stamp  # reused, not exported again
