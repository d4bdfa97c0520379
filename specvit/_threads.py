"""The worker threads specvit spreads CPU work over (one pool per process).

Two users: :mod:`specvit.preprocessing` runs blocks of rows of numpy work in them, and
:class:`specvit.inference.Predictor` runs slices of a batch through the whole prediction, one
slice per thread. Each worker computes torch with one intra-op thread (torch's thread count is
per thread here: the caller's own setting is untouched), so ``k`` slices in ``k`` workers use
``k`` cores without threads waiting on each other: on the 2-core CPU of the throughput
benchmark, torch's own two threads speed the model's forward pass up 1.3×, two slices in two
workers 1.7× (``benchmarks/predict_throughput.py``).

A worker never submits to the pool (with one torch thread the row blocks of
:mod:`specvit.preprocessing` run inline), so nested use cannot deadlock.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import torch

__all__ = ["cpu_workers", "thread_pool"]


def _one_torch_thread() -> None:
    torch.set_num_threads(1)


@functools.cache
def _pool(pid: int) -> ThreadPoolExecutor:
    """The pool of process ``pid`` (a forked child, whose copy of its parent's pool has no
    threads, gets its own); threads start as work comes, up to the cores."""
    return ThreadPoolExecutor(
        os.cpu_count() or 1,
        thread_name_prefix="specvit",
        initializer=_one_torch_thread,
    )


def thread_pool() -> ThreadPoolExecutor:
    """This process's worker threads (each computing torch on one intra-op thread)."""
    return _pool(os.getpid())


def cpu_workers() -> int:
    """How many workers CPU work may use from this thread: torch's intra-op thread count here
    (``torch.set_num_threads``, ``OMP_NUM_THREADS``), at most the pool's size; 1 inside a
    worker."""
    return max(1, min(torch.get_num_threads(), os.cpu_count() or 1))
