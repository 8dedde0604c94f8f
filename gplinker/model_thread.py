"""One thread for all of a process's torch work, when the caller's threads cannot be chosen.

OpenMP (torch's CPU threads) keeps a team of worker threads per thread that runs parallel torch
code. A server that loads its models in the main thread and runs them in a worker thread, or a Ray
Data actor (``__init__`` on the main thread, ``__call__`` in a thread pool), ends up with two teams;
libgomp then manages more threads than there are cores, stops spin-waiting between the many small
parallel regions of a forward pass, and every forward runs slower (about 20% on 2 cores, measured
in docs/serving.md). Loading and running the models in the same single thread keeps one team.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor


def model_thread(name: str = "gplinker-model") -> ThreadPoolExecutor:
    """A single-thread executor: submit the model loading and every model call to it."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
