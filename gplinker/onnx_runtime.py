"""Run the encoder with ONNX Runtime on CPU; the GlobalPointer heads and decoding stay in torch.

The encoder is exported once (``torch.onnx.export`` with the dynamo exporter, dynamic batch and
length) to ``encoder.onnx`` beside the saved model, then every prediction path (``predict``,
``evaluate``, ``pipeline``) uses it unchanged. Needs ``pip install onnx onnxruntime onnxscript``
(the ``onnx`` extra).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from gplinker.extras import require

logger = logging.getLogger(__name__)

ONNX_NAME = "encoder.onnx"


def _require():
    require(["onnxruntime"], "ONNX inference needs onnxruntime, onnx and onnxscript", "onnx")


class _HiddenStates(nn.Module):
    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, n, D)


def export_encoder(encoder: nn.Module, path: str | Path) -> Path:
    """Write ``encoder`` (a Hugging Face model) as ONNX: (input_ids, attention_mask) -> hidden states."""
    _require()
    path = Path(path)
    wrapper = _HiddenStates(encoder).eval()
    was_training = encoder.training
    encoder.eval()
    ids = torch.ones(2, 16, dtype=torch.long)
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length", max=encoder.config.max_position_embeddings)
    t0 = time.time()
    tmp = path.with_name(path.name + ".partial")
    torch.onnx.export(
        wrapper,
        (ids, torch.ones_like(ids)),
        str(tmp),
        input_names=["input_ids", "attention_mask"],
        output_names=["last_hidden_state"],
        dynamo=True,
        optimize=True,
        external_data=False,
        dynamic_shapes={"input_ids": {0: batch, 1: length}, "attention_mask": {0: batch, 1: length}},
    )
    tmp.replace(path)
    encoder.train(was_training)
    logger.info("exported the encoder to %s in %.0fs", path, time.time() - t0)
    return path


class OnnxEncoder(nn.Module):
    """Drop-in for the Hugging Face encoder inside :class:`GPLinkerModel`, inference only."""

    def __init__(self, path: str | Path, config, threads: int | None = None) -> None:
        super().__init__()
        _require()
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.config = config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
        out = self.session.run(None, {"input_ids": input_ids.cpu().numpy(), "attention_mask": attention_mask.cpu().numpy()})[0]
        return SimpleNamespace(last_hidden_state=torch.from_numpy(out))  # (B, n, D)


def use_onnx(extractor, model_dir: str | Path, threads: int | None = None):
    """Switch ``extractor`` (loaded from ``model_dir``) to an ONNX Runtime encoder, exporting it
    to ``model_dir/encoder.onnx`` on first use. Returns the extractor."""
    path = Path(model_dir) / ONNX_NAME
    if extractor.device.type != "cpu":
        raise ValueError("ONNX inference runs on CPU; drop --onnx or pass --device cpu")
    if not path.is_file():
        try:
            export_encoder(extractor.model.encoder, path)
        except OSError as e:
            raise ValueError(f"cannot write {path} ({e}); copy the model to a writable folder first") from e
    extractor.model.encoder = OnnxEncoder(path, extractor.model.encoder.config, threads)
    return extractor
