"""Host work beside the device: prepare the next piece and finish the previous one on host
threads while the caller's thread runs the current one on the accelerator.

A GPU forward pass releases the interpreter while it waits for the device, so featurising the
next texts and decoding the last ones on two host threads keeps the device fed instead of idle
between calls (the host cost per text otherwise caps throughput, however fast the device is).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Sequence, TypeVar

T = TypeVar("T")  # a piece of the input
P = TypeVar("P")  # what preparing it gives (host)
C = TypeVar("C")  # what computing on that gives (device)
R = TypeVar("R")  # one output

AHEAD = 2  # finished pieces waiting to be collected before the caller waits for the oldest


def pipelined(
    pieces: Sequence[T],
    prepare: Callable[[T], P],
    compute: Callable[[P], C],
    finish: Callable[[T, P, C], list[R]],
) -> list[R]:
    """``finish(piece, prepare(piece), compute(prepare(piece)))`` for every piece, concatenated in
    input order: ``prepare`` of piece k+1 and ``finish`` of piece k-1 run on two host threads
    while ``compute`` of piece k runs on the calling thread (one queue place ahead each, so memory
    stays bounded). The first exception of any stage is raised once the running work is done."""
    if not pieces:
        return []
    with (
        ThreadPoolExecutor(1, thread_name_prefix="gplinker-prepare") as prep,
        ThreadPoolExecutor(1, thread_name_prefix="gplinker-finish") as fin,
    ):
        ahead: Future = prep.submit(prepare, pieces[0])
        finished: list[Future] = []
        for k, piece in enumerate(pieces):
            prepared = ahead.result()
            if k + 1 < len(pieces):
                ahead = prep.submit(prepare, pieces[k + 1])
            computed = compute(prepared)
            finished.append(fin.submit(finish, piece, prepared, computed))
            if len(finished) > AHEAD:
                finished[-AHEAD - 1].result()  # raise early, and never run far ahead of decoding
        return [r for f in finished for r in f.result()]
