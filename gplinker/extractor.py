"""Extractor: one task's model, from texts to structures; saved to and loaded from a model directory.

Prediction runs featurize -> model -> :func:`gplinker.alignment.merge_windows` -> ``task.decode``,
the same path for evaluation during training, ``predict``, ``pipeline`` and the server.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from gplinker import __version__, model_dir
from gplinker.alignment import merge_windows
from gplinker.atomic import atomic_directory
from gplinker.batching import forward_batches
from gplinker.cells import DocumentCells, HeadCells
from gplinker.model import GPLinkerModel, collate, to_device
from gplinker.offsets import Featurizer, Window, windows_by_document
from gplinker.packing import ROW_TOKENS, collate_packed, pack_rows, packing_works, position_offset, should_pack
from gplinker.settings import ModelSettings
from gplinker.structures import Document
from gplinker.task import MAX_LABELS, Task

if TYPE_CHECKING:
    from gplinker.registry import TaskRegistry

logger = logging.getLogger(__name__)

OVERLAP_TEXTS = 256  # texts per piece when featurisation and decoding overlap the device (Extractor.predict)
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # autocast dtype of each precision


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` checked against this machine: a clear error instead of torch's assertion."""
    if device is None:
        return default_device()
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {device!r} asked for, but this torch build has no CUDA GPU available "
                f"(torch {torch.__version__}); use --device cpu or install a CUDA build of torch"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} asked for, but only {torch.cuda.device_count()} GPU(s) are visible")
    return dev


class Extractor:
    """Predicts structures for texts with one task's model; load with :meth:`from_pretrained`."""

    def __init__(
        self,
        model: GPLinkerModel,
        tokenizer,
        task: Task,
        settings: ModelSettings,
        device: str | torch.device | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.model, self.tokenizer, self.task, self.settings = model, tokenizer, task, settings
        self.featurizer = Featurizer(tokenizer, settings.max_length, settings.stride)
        self.device = resolve_device(device)
        self.model.to(self.device)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.info: dict[str, Any] = dict(info or {})  # training data, dev scores, encoder: shown by `gplinker info`
        self._packs: dict[int, bool] = {}  # id(encoder) -> whether it computes packed rows right (checked once)
        self.precision = "fp32"  # autocast of prediction's forward passes (:meth:`set_precision`)

    def set_precision(self, name: str) -> "Extractor":
        """Predict under autocast: ``fp32`` (none), ``bf16`` or ``fp16`` (the encoder's and heads'
        matrix products in that type; decisions and scores are then read in fp32)."""
        if name not in PRECISIONS:
            raise ValueError(f"unknown precision {name!r}; choose one of {', '.join(PRECISIONS)}")
        self.precision = name
        return self

    def _autocast(self):
        dtype = PRECISIONS[self.precision]
        return torch.autocast(self.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()

    def can_pack(self) -> bool:
        """Whether this extractor's encoder gives packed windows the states each gets alone
        (checked once per encoder: an ONNX session or an encoder without 4D masks cannot)."""
        key = id(self.model.encoder)
        if key not in self._packs:
            vocab = int(getattr(self.model.encoder.config, "vocab_size", 100) or 100)
            self._packs[key] = packing_works(self.model.encoder, self.pad_id, vocab, self.device)
        return self._packs[key]

    @classmethod
    def build(
        cls,
        encoder_name: str,
        task: Task,
        settings: ModelSettings,
        device: str | torch.device | None = None,
        seed: int | None = None,
    ) -> "Extractor":
        """A fresh (untrained heads) extractor on a pretrained encoder; ``seed`` makes the heads'
        random initialisation reproducible (training seeds only what comes after it)."""
        from gplinker.encoders import load_encoder

        encoder, tokenizer = load_encoder(encoder_name)
        if seed is not None:
            torch.manual_seed(seed)
        ex = cls(
            GPLinkerModel(encoder, task.head_specs(), settings.head_type, settings.head_size, settings.label_sharing),
            tokenizer,
            task,
            settings,
            device,
        )
        ex.info["encoder"] = encoder_name
        return ex

    # ---- persistence -------------------------------------------------------------------------
    def save_pretrained(self, path: str | Path) -> None:
        """Write ``gplinker.json``, ``heads.safetensors`` and ``encoder/`` atomically: a crash at
        any moment leaves the previous complete model (or none), never a mix of two saves."""
        with atomic_directory(path) as tmp:
            self.model.encoder.save_pretrained(tmp / model_dir.ENCODER_DIR, safe_serialization=True)
            self.tokenizer.save_pretrained(tmp / model_dir.ENCODER_DIR)
            heads = {k: v.detach().cpu().contiguous() for k, v in self.model.heads.state_dict().items()}
            save_file(heads, str(tmp / model_dir.HEADS_NAME))
            config = {
                "format_version": model_dir.FORMAT_VERSION,
                "gplinker_version": __version__,
                "task": self.task.name,
                "task_config": self.task.config(),
                **asdict(self.settings),
                "info": self.info,
                "fingerprint": model_dir.fingerprint(tmp),
            }
            (tmp / model_dir.CONFIG_NAME).write_text(json.dumps(config, ensure_ascii=False, indent=2), encoding="utf-8")

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        device: str | torch.device | None = None,
        registry: "TaskRegistry | None" = None,
        revision: str | None = None,
    ) -> "Extractor":
        """Load a directory written by :meth:`save_pretrained`, or a Hugging Face Hub repository
        holding one (``"org/name"``, at ``revision`` or ``"org/name@revision"``; from the hub cache,
        downloaded there when missing and the hub is reachable). Imports nothing the directory
        names and runs none of its code. Every file is checked before a module is built from it
        (:mod:`gplinker.model_dir`); any problem is one :class:`ModelDirError`.
        ``registry``: where the task is looked up, by the name the directory gives
        (``gplinker.tasks.default_registry()`` for the built-ins; ``gplinker.tasks.load(path)``
        passes it for you)."""
        if registry is None:
            raise TypeError(
                "Extractor.from_pretrained needs registry=: the tasks a model may name, e.g. "
                "gplinker.tasks.default_registry(); or load with gplinker.tasks.load(path)"
            )
        path = model_dir.resolve(path, revision)
        config = model_dir.read_config(path, registry.names())
        task, settings = task_and_settings(path, config, registry)
        encoder, tokenizer = _load_encoder(path / model_dir.ENCODER_DIR, settings)
        heads = _load_heads(path / model_dir.HEADS_NAME, task, settings, encoder.config)
        model = GPLinkerModel(encoder.float(), task.head_specs(), settings.head_type, settings.head_size, settings.label_sharing)
        model.heads.load_state_dict(heads)
        model.eval()
        return cls(
            model, tokenizer, task, settings, device, info=config.get("info") if isinstance(config.get("info"), dict) else None
        )

    # ---- prediction --------------------------------------------------------------------------
    @torch.no_grad()
    def window_cells(
        self,
        windows: Sequence[Window],
        batch_size: int = 32,
        progress: bool = False,
        sort: bool = True,
        thresholds: dict[str, float] | None = None,
        pack: bool | None = None,
    ) -> list[dict[str, HeadCells]]:
        """Positive cells (token positions) of every window.

        Windows are sorted by length and cut into forward batches of at most ``batch_size`` where
        padding would cost more than another call (:func:`gplinker.batching.forward_batches`); with
        ``pack`` short windows are first packed into rows of up to 128 tokens (a longer window is a
        row alone) when the encoder allows it, and the rows are batched so; by default (None) only
        where the packed plan is estimated to cost less (:mod:`gplinker.packing`).
        With ``sort`` False, fixed batches in input order, unpacked. ``thresholds``: per-head
        logits to use instead of the model's (0 for spans, the link threshold for links). The
        logits returned are divided by the model's temperature (decisions are made before)."""
        was_training = self.model.training
        self.model.eval()
        if thresholds is None:
            thresholds = self.link_thresholds()
        pack, rows, order, ranges = self.forward_plan(windows, batch_size, sort, pack)
        out: list[dict[str, HeadCells]] = [{} for _ in windows]
        bar = tqdm(total=len(windows), desc="predict", unit="win", disable=not progress, leave=False)
        for b0, b1 in ranges:
            batch_rows = [rows[r] for r in order[b0:b1]]
            with self._autocast():
                if pack:
                    self._packed_cells(windows, batch_rows, thresholds, out)
                else:
                    self._padded_cells(windows, [r[0] for r in batch_rows], thresholds, out)
            bar.update(sum(len(r) for r in batch_rows))
        bar.close()
        self.model.train(was_training)
        return out

    def link_thresholds(self) -> dict[str, float]:
        """The model's logit threshold of each link head (spans use 0)."""
        return {s.name: self.settings.link_threshold for s in self.task.head_specs() if s.axes != "span"}

    def forward_plan(
        self, windows: Sequence[Window], batch_size: int = 32, sort: bool = True, pack: bool | None = None
    ) -> tuple[bool, list[list[int]], list[int], list[tuple[int, int]]]:
        """How :meth:`window_cells` runs ``windows``: (packed?, rows of window indices, the rows'
        order, forward batches as ranges of that order)."""
        lengths = [len(w) for w in windows]
        packable = sort and pack is not False and len(windows) > 1 and self.can_pack()
        rows = pack_rows(lengths, min(ROW_TOKENS, self.settings.max_length)) if packable else []
        if pack is None and packable:  # by default only where the packed plan is estimated cheaper
            packable = should_pack(lengths, rows, batch_size, self.model.encoder.config.hidden_size)
        pack = packable and len(rows) < len(windows)
        if not pack:
            rows = [[k] for k in range(len(windows))]
        sizes = [sum(lengths[k] for k in r) for r in rows]
        order = sorted(range(len(rows)), key=sizes.__getitem__) if sort else list(range(len(rows)))
        ranges = (
            forward_batches([sizes[r] for r in order], batch_size)
            if sort
            else [(b, min(b + batch_size, len(order))) for b in range(0, len(order), batch_size)]
        )
        return pack, rows, order, ranges

    def _padded_cells(
        self, windows: Sequence[Window], idx: list[int], thresholds: dict[str, float], out: list[dict[str, HeadCells]]
    ) -> None:
        """One forward call over windows ``idx``, one padded row each; fills ``out[k]``."""
        batch = collate([windows[k] for k in idx], self.pad_id)  # (B, n) padded windows
        per_head = self.model.positive_cells(**batch.inputs(self.device), thresholds=thresholds)
        for name, (found, values) in per_head.items():  # (N, 4) rows (b, h, i, j), (N,) logits
            values = values.float().cpu().numpy() / self.settings.temperature
            cells = found.cpu().numpy()
            bounds = np.searchsorted(cells[:, 0], np.arange(len(idx) + 1))  # rows come sorted by batch row
            for r, k in enumerate(idx):
                out[k][name] = HeadCells(cells[bounds[r] : bounds[r + 1], 1:], values[bounds[r] : bounds[r + 1]])

    def _packed_cells(
        self, windows: Sequence[Window], rows: list[list[int]], thresholds: dict[str, float], out: list[dict[str, HeadCells]]
    ) -> None:
        """One forward call over packed ``rows`` (lists of window indices); fills ``out[k]`` with
        each window's cells in its own token positions."""
        members = [k for r in rows for k in r]
        local = {k: x for x, k in enumerate(members)}
        packed = collate_packed(
            [windows[k] for k in members], [[local[k] for k in r] for r in rows], self.pad_id, position_offset(self.model.encoder)
        )
        tensors = {k: to_device(v, self.device) for k, v in packed.tensors.items()}
        per_head = self.model.positive_cells(
            tensors["input_ids"],
            tensors["attention_mask"],
            tensors["span_mask"],
            thresholds=thresholds,
            position_ids=tensors["position_ids"],
        )
        segments = packed.tensors["span_mask"].numpy()  # (B, n) segment id of each text position
        window_of = np.zeros((len(rows), 1 + int(packed.segment.max())), dtype=np.int64)  # (B, S+1) -> local window
        window_of[packed.row, packed.segment] = np.arange(len(members))
        for name, (found, values) in per_head.items():  # (N, 4) rows (b, h, i, j), (N,) logits
            values = values.float().cpu().numpy() / self.settings.temperature
            cells = found.cpu().numpy()
            win = window_of[cells[:, 0], segments[cells[:, 0], cells[:, 2]]]  # (N,) local window of each cell
            shift = packed.offset[win]
            rel = np.stack([cells[:, 1], cells[:, 2] - shift, cells[:, 3] - shift], axis=1)  # (N, 3) in window positions
            by = np.argsort(win, kind="stable")  # keeps (h, i, j) order within a window
            bounds = np.searchsorted(win[by], np.arange(len(members) + 1))
            for x, k in enumerate(members):
                sel = by[bounds[x] : bounds[x + 1]]
                out[k][name] = HeadCells(rel[sel], values[sel])

    def document_cells(
        self, texts: Sequence[str], batch_size: int = 32, progress: bool = False, thresholds: dict[str, float] | None = None
    ) -> list[DocumentCells]:
        """Each text's positive cells in characters, its windows merged: what the task decodes."""
        windows = self.featurizer.windows(list(texts))
        cells = self.window_cells(windows, batch_size, progress, thresholds=thresholds)
        by_doc = windows_by_document(windows, len(texts))
        specs = self.task.head_specs()
        return [merge_windows(specs, [windows[k] for k in ks], [cells[k] for k in ks]) for ks in by_doc]

    def predict(
        self, inputs: Sequence[str | Document], batch_size: int = 32, progress: bool = False, overlap: bool | None = None
    ) -> list[Document]:
        """One predicted :class:`Document` per input text (ids and extra fields of documents kept).

        ``overlap`` (default: on a GPU): cut the inputs into pieces of :data:`OVERLAP_TEXTS` and
        featurise the next piece and decode the previous one on host threads while the device runs
        the current one (:func:`gplinker.pipelining.pipelined`); the items are the same either way."""
        bare = [
            Document(text=d.text, id=d.id, meta=dict(d.meta)) if isinstance(d, Document) else Document(text=d) for d in inputs
        ]
        if overlap is None:
            overlap = self.device.type == "cuda"
        if not overlap or len(bare) <= OVERLAP_TEXTS:
            cells = self.document_cells([d.text for d in bare], batch_size, progress)
            return [self.task.decode(d, c) for d, c in zip(bare, cells)]  # each decoded from a fresh, unannotated document
        return self._predict_overlapped(bare, batch_size, progress)

    def _predict_overlapped(self, bare: list[Document], batch_size: int, progress: bool) -> list[Document]:
        from gplinker.pipelining import pipelined

        thresholds, specs = self.link_thresholds(), self.task.head_specs()
        bar = tqdm(total=len(bare), desc="predict", unit="text", disable=not progress, leave=False)

        def prepare(piece: list[Document]) -> list[Window]:
            return self.featurizer.windows([d.text for d in piece])

        def finish(piece: list[Document], windows: list[Window], cells: list[dict[str, HeadCells]]) -> list[Document]:
            by_doc = windows_by_document(windows, len(piece))
            merged = [merge_windows(specs, [windows[k] for k in ks], [cells[k] for k in ks]) for ks in by_doc]
            bar.update(len(piece))
            return [self.task.decode(d, c) for d, c in zip(piece, merged)]

        pieces = [bare[k : k + OVERLAP_TEXTS] for k in range(0, len(bare), OVERLAP_TEXTS)]
        try:
            return pipelined(pieces, prepare, lambda w: self.window_cells(w, batch_size, thresholds=thresholds), finish)
        finally:
            bar.close()

    def __call__(self, texts: Sequence[str], batch_size: int = 32) -> list[Document]:
        return self.predict(texts, batch_size)


def _damaged(file: Path, e: BaseException, what: str = "the file is damaged") -> model_dir.ModelDirError:
    text = str(e).strip()
    first = text.splitlines()[0][:200] if text else ""
    return model_dir.ModelDirError(
        f"{file}: {what} ({type(e).__name__}{': ' + first if first else ''}) — copy or train the model again"
    )


def task_and_settings(path: Path, config: dict[str, Any], registry: "TaskRegistry") -> tuple[Task, ModelSettings]:
    """The task (labels checked) and the model settings (types and ranges checked) of gplinker.json."""
    cfg_file = path / model_dir.CONFIG_NAME
    try:
        task = registry.task_from_config(config["task"], config["task_config"])
        settings = ModelSettings(**{f.name: config[f.name] for f in fields(ModelSettings) if f.name in config})
    except (KeyError, TypeError, ValueError) as e:
        raise model_dir.ModelDirError(
            f"{cfg_file}: bad task or model settings ({type(e).__name__}: {e}) — the file is "
            "damaged; save or copy the model again"
        ) from e
    if "label_sharing" not in config:  # saved before labels shared biases: its heads have none
        settings.label_sharing = False
    for spec in task.head_specs():
        if spec.channels > MAX_LABELS:
            raise model_dir.ModelDirError(
                f"{cfg_file}: {spec.channels} labels for head {spec.name!r}, over the "
                f"{MAX_LABELS} gplinker supports — the file is damaged"
            )
    return task, settings


def _load_encoder(enc_dir: Path, settings: ModelSettings):
    """(encoder, fast tokenizer) of a checked model directory: sizes checked against the weights'
    headers first, local files only, no custom code; any failure is a ModelDirError."""
    from transformers import AutoModel, AutoTokenizer

    cfg = model_dir.load_json(enc_dir / "config.json", "encoder config")  # checked by read_config
    weights = enc_dir / "model.safetensors"
    shapes = model_dir.safetensors_shapes(weights)
    model_dir.check_encoder_sizes(enc_dir, cfg, shapes)
    positions = cfg.get("max_position_embeddings")
    if isinstance(positions, int) and positions > 0 and settings.max_length > positions:
        raise model_dir.ModelDirError(
            f"{enc_dir.parent / model_dir.CONFIG_NAME}: max_length {settings.max_length} is over "
            f"the encoder's {positions} positions — the file is damaged; save or copy the model again"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(enc_dir, use_fast=True, local_files_only=True, trust_remote_code=False)
    except Exception as e:  # noqa: BLE001 - the tokenizers library raises plain Exceptions for damaged files
        raise _damaged(enc_dir / model_dir.TOKENIZER_NAME, e, "the tokenizer cannot be loaded") from e
    if not getattr(tokenizer, "is_fast", False):
        raise model_dir.ModelDirError(
            f"{enc_dir / model_dir.TOKENIZER_NAME}: not a fast tokenizer (character offsets need "
            "one) — copy or train the model again"
        )
    vocab = cfg.get("vocab_size")
    if isinstance(vocab, int) and len(tokenizer) > vocab:
        raise model_dir.ModelDirError(
            f"{enc_dir / model_dir.TOKENIZER_NAME}: {len(tokenizer)} tokens but the encoder embeds "
            f"{vocab} — the tokenizer and the encoder do not belong together; copy or train the model again"
        )
    try:
        try:
            encoder = AutoModel.from_pretrained(
                enc_dir, add_pooling_layer=False, use_safetensors=True, local_files_only=True, trust_remote_code=False
            )
        except TypeError:
            encoder = AutoModel.from_pretrained(enc_dir, use_safetensors=True, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, RuntimeError, SafetensorError, json.JSONDecodeError) as e:
        raise _damaged(enc_dir, e, "the encoder checkpoint cannot be loaded") from e
    return encoder, tokenizer


class _ConfigOnly(torch.nn.Module):
    """An encoder stand-in carrying only a config: heads are built on the meta device around it."""

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config


def _load_heads(heads_file: Path, task: Task, settings: ModelSettings, encoder_config) -> dict[str, torch.Tensor]:
    """The heads' tensors, their shapes in the file's header checked against the heads the labels
    and settings make (built on the meta device: no memory) before anything is read."""
    shapes = model_dir.safetensors_shapes(heads_file)
    with torch.device("meta"):
        probe = GPLinkerModel(
            _ConfigOnly(encoder_config), task.head_specs(), settings.head_type, settings.head_size, settings.label_sharing
        )
    expected = probe.heads.state_dict()
    for key in sorted(set(expected) | set(shapes)):
        if key not in shapes or key not in expected or shapes[key] != tuple(expected[key].shape):
            got = shapes.get(key, "missing")
            want = tuple(expected[key].shape) if key in expected else "not expected"
            raise model_dir.ModelDirError(
                f"{heads_file}: tensor {key!r} is {got}, but the labels and settings in "
                f"{model_dir.CONFIG_NAME} need {want} — the weights and the label lists do "
                "not belong together; copy or train the model again"
            )
    try:
        return load_file(str(heads_file))
    except (SafetensorError, OSError) as e:
        raise _damaged(heads_file, e, "cannot be read") from e
