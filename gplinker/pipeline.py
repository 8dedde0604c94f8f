"""Extractor: a saved model directory in, structures out. Shared by training-time evaluation."""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from gplinker.model import GPLinkerModel, collate
from gplinker.offsets import Featurizer, Window
from gplinker.structures import Document
from gplinker.task import LOGIT_SUFFIX, Cells, Task, load_task

logger = logging.getLogger(__name__)

CONFIG_NAME = "gplinker.json"
HEADS_NAME = "heads.safetensors"
ENCODER_DIR = "encoder"


@dataclass
class ModelSettings:
    """Settings saved beside the weights; enough to rebuild the model offline."""

    head_type: str = "efficient"
    head_size: int = 64
    max_length: int = 256
    stride: int = 64
    align: str = "expand"


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Extractor:
    """Predicts structures for texts with one task's model; load with :meth:`from_pretrained`."""

    def __init__(self, model: GPLinkerModel, tokenizer, task: Task, settings: ModelSettings, device: str | torch.device | None = None) -> None:
        self.model, self.tokenizer, self.task, self.settings = model, tokenizer, task, settings
        self.featurizer = Featurizer(tokenizer, settings.max_length, settings.stride)
        self.device = torch.device(device) if device is not None else default_device()
        self.model.to(self.device)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    @classmethod
    def build(cls, encoder_name: str, task: Task, settings: ModelSettings, device: str | torch.device | None = None) -> "Extractor":
        """A fresh (untrained heads) extractor on a pretrained encoder."""
        from gplinker.encoders import load_encoder

        encoder, tokenizer = load_encoder(encoder_name)
        return cls(GPLinkerModel(encoder, task.head_specs(), settings.head_type, settings.head_size), tokenizer, task, settings, device)

    # ---- persistence -------------------------------------------------------------------------
    def save_pretrained(self, path: str | Path) -> None:
        """Write ``gplinker.json``, ``heads.safetensors`` and ``encoder/`` (HF checkpoint + tokenizer)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.encoder.save_pretrained(path / ENCODER_DIR)
        self.tokenizer.save_pretrained(path / ENCODER_DIR)
        heads = {k: v.detach().cpu().contiguous() for k, v in self.model.heads.state_dict().items()}
        save_file(heads, str(path / HEADS_NAME))
        config = {"task": self.task.import_path(), "task_config": self.task.config(), **asdict(self.settings)}
        (path / CONFIG_NAME).write_text(json.dumps(config, ensure_ascii=False, indent=2), encoding="utf-8")

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device | None = None) -> "Extractor":
        """Load a directory written by :meth:`save_pretrained`; needs no network."""
        from transformers import AutoModel, AutoTokenizer

        path = Path(path)
        if not (path / CONFIG_NAME).is_file():
            raise ValueError(f"{path} is not a gplinker model directory (no {CONFIG_NAME}); "
                             "pass the model/ folder that 'run.py train' wrote")
        config: dict[str, Any] = json.loads((path / CONFIG_NAME).read_text(encoding="utf-8"))
        task = load_task(config.pop("task"), config.pop("task_config"))
        settings = ModelSettings(**{k: v for k, v in config.items() if k in ModelSettings.__dataclass_fields__})
        tokenizer = AutoTokenizer.from_pretrained(path / ENCODER_DIR, use_fast=True)
        try:
            encoder = AutoModel.from_pretrained(path / ENCODER_DIR, add_pooling_layer=False)
        except TypeError:
            encoder = AutoModel.from_pretrained(path / ENCODER_DIR)
        encoder = encoder.float()
        model = GPLinkerModel(encoder, task.head_specs(), settings.head_type, settings.head_size)
        model.heads.load_state_dict(load_file(str(path / HEADS_NAME)))
        model.eval()
        return cls(model, tokenizer, task, settings, device)

    # ---- prediction --------------------------------------------------------------------------
    @torch.no_grad()
    def window_cells(self, windows: Sequence[Window], batch_size: int = 32, progress: bool = False,
                     sort: bool = True) -> list[Cells]:
        """Positive cells of every window; batches are formed from length-sorted windows (less
        padding) unless ``sort`` is False."""
        was_training = self.model.training
        self.model.eval()
        order = sorted(range(len(windows)), key=lambda k: len(windows[k])) if sort else list(range(len(windows)))
        out: list[Cells] = [{} for _ in windows]
        bar = tqdm(total=len(windows), desc="predict", unit="win", disable=not progress, leave=False)
        for b0 in range(0, len(order), batch_size):
            idx = order[b0 : b0 + batch_size]
            batch = collate([windows[k] for k in idx], self.pad_id)
            per_head = self.model.positive_cells(**{k: v.to(self.device) for k, v in batch.items()})
            for name, (found, values) in per_head.items():  # (N, 4) rows (b, h, i, j), (N,) logits
                values = values.float().cpu().numpy()
                cells = found.cpu().numpy()
                bounds = np.searchsorted(cells[:, 0], np.arange(len(idx) + 1))  # rows come sorted by batch row
                for r, k in enumerate(idx):
                    out[k][name] = cells[bounds[r] : bounds[r + 1], 1:]
                    out[k][name + LOGIT_SUFFIX] = values[bounds[r] : bounds[r + 1]]
            bar.update(len(idx))
        bar.close()
        self.model.train(was_training)
        return out

    def predict(self, inputs: Sequence[str | Document], batch_size: int = 32, progress: bool = False) -> list[Document]:
        """One predicted :class:`Document` per input text (ids and extra fields of documents kept)."""
        docs = [d if isinstance(d, Document) else Document(text=d) for d in inputs]
        windows = self.featurizer.windows([d.text for d in docs])
        cells = self.window_cells(windows, batch_size, progress)
        by_doc: list[list[int]] = [[] for _ in docs]
        for k, w in enumerate(windows):
            by_doc[w.doc_index].append(k)
        out = []
        for d, ks in zip(docs, by_doc):
            bare = Document(text=d.text, id=d.id, meta=dict(d.meta))
            out.append(self.task.decode(bare, [windows[k] for k in ks], [cells[k] for k in ks]))
        return out

    def __call__(self, texts: Sequence[str], batch_size: int = 32) -> list[Document]:
        return self.predict(texts, batch_size)

