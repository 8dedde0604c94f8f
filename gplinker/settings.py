"""The settings of the library, as typed values: training, the saved model, the server.

Each field is declared with :func:`gplinker.options.option`, its help text and command-line flag
beside its default, so the command line is generated from these classes and every default is
written once. Nothing here imports torch: reading settings and building the command line stay light.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from gplinker.options import option

PRECISION_NAMES = ("fp32", "bf16", "fp16")
ALIGN_POLICIES: tuple[str, ...] = ("strict", "expand", "contract")  # how gold spans off token boundaries meet tokens


def default_stride(max_length: int) -> int:
    """Tokens consecutive windows share when none is given: a quarter of the window, at most 64."""
    return min(64, max_length // 4)


API_KEY_ENV = "GPLINKER_API_KEY"  # the server's API key when --api-key is not given


@dataclass
class TrainConfig:
    """Hyper-parameters of :func:`train`."""

    epochs: int = option(3, "passes over the training data", flag="--epochs", minimum=1)
    max_steps: int | None = option(None, "train exactly this many steps (overrides --epochs)", flag="--max-steps", minimum=1)
    batch_size: int = option(16, "windows per optimizer step", flag="--batch-size", minimum=1)
    lr: float = option(2e-5, "encoder learning rate", flag="--lr", minimum=0.0, above=True)
    head_lr: float = option(1e-3, "learning rate of the GlobalPointer heads", flag="--head-lr", minimum=0.0, above=True)
    weight_decay: float = option(0.01, "AdamW weight decay", flag="--weight-decay", minimum=0.0)
    warmup_ratio: float = option(0.1, "share of the steps with a linear warm-up", flag="--warmup-ratio", minimum=0.0)
    max_grad_norm: float = option(1.0, "gradient norm clipped to this")
    seed: int = option(42, "random seed (initialisation, batch order)", flag="--seed")
    eval_batch_size: int = option(32, "windows per forward pass when evaluating")
    freeze_embeddings: bool = option(False, "do not train the word-embedding matrix", flag="--freeze-embeddings")
    factorized_loss: bool = option(True, "Efficient GlobalPointer: the loss without the [B, H, n, n] logits")
    precision: str = option(
        "fp32",
        "autocast for the encoder and heads (fp16 with a gradient scaler; the loss is computed in fp32/fp64)",
        flag="--precision",
        choices=("fp32", "bf16", "fp16"),
    )
    grad_accum: int = option(
        1,
        "batches per optimizer step; the effective batch is batch size x this x processes (torchrun)",
        flag="--grad-accum",
        minimum=1,
    )
    eval_every: int | None = option(None, "evaluate every N steps (default: after each epoch)", flag="--eval-every", minimum=1)
    patience: int | None = option(
        None, "stop when dev F1 has not improved for this many evaluations (default: never)", flag="--patience", minimum=1
    )
    save_every: int | None = option(
        None, "write a resumable checkpoint to OUTPUT/checkpoint every N steps (atomically)", flag="--save-every", minimum=1
    )
    resume: bool = option(
        False,
        "continue from OUTPUT/checkpoint (same command otherwise); with --seeds, keep the seeds that finished and go on with the rest",
        flag="--resume",
    )
    log_every: int = option(
        10, "record the training loss and learning rates every N steps (history.jsonl, curves.png)", flag="--log-every", minimum=1
    )
    report_to: str = option(
        "none",
        "also write TensorBoard event files to OUTPUT/tensorboard (needs the tensorboard extra)",
        flag="--report-to",
        choices=("none", "tensorboard"),
    )
    tune_link_threshold: bool = option(
        True,
        "relation, event: choose the link heads' threshold on --dev after training (off: keep it at 0)",
        negate="--no-tune-link-threshold",
    )

    def __post_init__(self) -> None:
        if self.precision not in PRECISION_NAMES:
            raise ValueError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISION_NAMES)}")
        if self.report_to not in ("none", "tensorboard"):
            raise ValueError(f"unknown report_to {self.report_to!r}; choose none or tensorboard")
        for name in ("batch_size", "grad_accum", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("eval_every", "patience", "save_every", "max_steps"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")


@dataclass
class ModelSettings:
    """Settings saved beside the weights; enough to rebuild the model offline."""

    head_type: str = option(
        "efficient",
        "Efficient GlobalPointer (shared projection, factorised loss) or the original GlobalPointer",
        flag="--head",
        choices=("efficient", "standard"),
    )
    head_size: int = option(64, "dimension of the heads' queries and keys", flag="--head-size", minimum=1)
    max_length: int = option(256, "tokens per window, special tokens included", flag="--max-length", minimum=1)
    stride: int | None = option(
        None,
        "tokens shared by consecutive windows of a long text (default: max length / 4, at most 64)",
        flag="--stride",
        minimum=0,
    )
    align: str = option(
        "expand",
        "how gold spans off token boundaries are placed on tokens (they are counted in the log)",
        flag="--align",
        choices=("expand", "strict", "contract"),
    )
    link_threshold: float = option(0.0, "logit above which a link head's cell fires (chosen on dev by train)")
    temperature: float = option(1.0, "scores are σ(2·logit / temperature); fitted on dev by `gplinker calibrate`")
    label_sharing: bool = option(
        True,
        "give every label its own bias only (default: event argument labels also share one "
        "with their event type's labels and one with their role's labels)",
        negate="--no-label-sharing",
    )

    def __post_init__(self) -> None:
        if self.stride is None and _is_int(self.max_length):
            self.stride = default_stride(self.max_length)
        problem = self.problem()
        if problem:
            raise ValueError(problem)

    def problem(self) -> str | None:
        """What is wrong with these settings (types and ranges, as a saved file may hold anything), or None."""
        if self.head_type not in ("efficient", "standard"):
            return f"unknown head type {self.head_type!r}; choose efficient or standard"
        if not (_is_int(self.head_size) and 2 <= self.head_size <= MAX_HEAD_SIZE and self.head_size % 2 == 0):
            return f"head_size must be an even number from 2 to {MAX_HEAD_SIZE} (RoPE rotates pairs), got {self.head_size!r}"
        if not (_is_int(self.max_length) and 8 <= self.max_length <= MAX_LENGTH):
            return f"max_length must be a whole number from 8 to {MAX_LENGTH}, got {self.max_length!r}"
        if not (_is_int(self.stride) and 0 <= self.stride <= self.max_length - 4):
            return f"stride must be a whole number from 0 to max_length - 4 ({self.max_length - 4}), got {self.stride!r}"
        if self.align not in ALIGN_POLICIES:
            return f"unknown alignment policy {self.align!r}; choose one of {', '.join(ALIGN_POLICIES)}"
        if not _is_real(self.link_threshold):
            return f"link_threshold must be a finite number, got {self.link_threshold!r}"
        if not (_is_real(self.temperature) and self.temperature > 0):
            return f"temperature must be a finite number above 0, got {self.temperature!r}"
        if not isinstance(self.label_sharing, bool):
            return f"label_sharing must be true or false, got {self.label_sharing!r}"
        return None


MAX_HEAD_SIZE = 4096
MAX_LENGTH = 65536


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class ServeSettings:
    """Limits and behaviour of the server (the ``serve`` command's options)."""

    host: str = option("127.0.0.1", "address to bind (127.0.0.1: this machine only)", flag="--host")
    port: int = option(8000, "port to listen on", flag="--port", minimum=0)

    max_batch: int = option(32, "most texts gathered into one model call", flag="--max-batch", minimum=1)
    max_wait_ms: float = option(
        10.0, "how long a request waits for others to batch with (0: no batching)", flag="--max-wait-ms", minimum=0.0
    )
    max_chars: int = option(100_000, "longest text accepted (413 beyond)", flag="--max-chars", minimum=1)
    max_texts: int = option(256, "most texts in one request (413 beyond)", flag="--max-texts", minimum=1)
    threshold: float = option(0.0, "default probability threshold")
    api_key: str | None = option(
        None, "require 'Authorization: Bearer KEY' (default: $GPLINKER_API_KEY, none when unset)", flag="--api-key"
    )
    batch_size: int = option(
        32,
        "most rows per forward pass (a row: one window, or several short ones packed); a gathered "
        "batch runs as length-sorted forwards of at most this size, cut where padding would cost more "
        "than another call",
        flag="--batch-size",
        minimum=1,
    )
    idle_gap_ms: float = option(2.0, "stop gathering once no text arrived for this long")
    max_body_bytes: int = option(0, "largest request body (0: derived from max_chars and max_texts)")
    max_queue: int = option(
        1024, "most texts waiting for the model; beyond it requests get 503 with Retry-After", flag="--max-queue", minimum=1
    )
    timeout_s: float = option(
        60.0,
        "seconds a request may take; then 504, and its texts not yet run are dropped",
        flag="--timeout",
        minimum=0.0,
        above=True,
    )
    allowed_hosts: tuple[str, ...] | None = option(
        None,
        "a Host name the server answers (repeat; '*' for any). Default: "
        "the names of --host (127.0.0.1: 127.0.0.1, localhost, ::1), any when "
        "bound to 0.0.0.0",
        flag="--allowed-host",
        metavar="NAME",
    )

    def __post_init__(self) -> None:
        if not self.max_body_bytes:
            self.max_body_bytes = 4 * self.max_chars * min(self.max_texts, 64) + 65536
        for name in ("max_batch", "max_chars", "max_texts", "batch_size", "max_body_bytes", "max_queue"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}")
        for name in ("max_wait_ms", "idle_gap_ms", "timeout_s", "threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number of at least 0, got {value!r}")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be above 0, got {self.timeout_s!r}")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("the API key is empty (an unset variable?); give a key, or none at all to serve without one")

    def host_names(self) -> frozenset[str] | None:
        """The Host header names (port left out, lower case) this server answers; None: any. A
        server bound to loopback answers only loopback names, so a page of another site cannot
        reach it through DNS rebinding."""
        if self.allowed_hosts is not None:
            names = frozenset(h.lower().strip("[]") for h in self.allowed_hosts)
            return None if "*" in names else names
        if self.host in ("0.0.0.0", "::", ""):
            return None
        if self.host in LOOPBACK:
            return frozenset(LOOPBACK)
        return frozenset({self.host.lower().strip("[]")})
