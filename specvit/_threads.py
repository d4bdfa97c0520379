"""The worker threads specvit spreads CPU work over (one pool per process).

Two users: :mod:`specvit.preprocessing` runs blocks of rows of numpy work in them, and
:class:`specvit.inference.Predictor` runs slices of a batch through the whole prediction, one
slice per thread. Each task computes torch on one intra-op thread (torch's thread count is per
thread here: the caller's own setting is untouched), so ``k`` slices in ``k`` workers use ``k``
cores without threads waiting on each other, where torch's own threads speed up only the large
operations (``benchmarks/predict_throughput.py`` measures the whole path).

Work inside a worker never goes back to the pool (:func:`cpu_workers` is 1 there), so nested
use cannot deadlock.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

__all__ = ["cpu_workers", "map_in_workers"]

T = TypeVar("T")
R = TypeVar("R")

_local = threading.local()


@functools.cache
def _pool(pid: int) -> ThreadPoolExecutor:
    """The pool of process ``pid`` (a forked child, whose copy of its parent's pool has no
    threads, gets its own); threads start as work comes, up to the cores."""
    return ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="specvit")


def _task(fn: Callable[[T], R], item: T) -> R:
    _local.worker = True
    torch.set_num_threads(1)  # each task: torch may have reset a new thread's count
    return fn(item)


def map_in_workers(fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
    """``fn`` of each item, computed at once in this process's worker threads (each on one torch
    thread); the results in the items' order (a worker's exception is raised here)."""
    return _pool(os.getpid()).map(functools.partial(_task, fn), items)


def cpu_workers() -> int:
    """How many workers CPU work may use from this thread: torch's intra-op thread count here
    (``torch.set_num_threads``, ``OMP_NUM_THREADS``), at most the pool's size; 1 inside a
    worker."""
    if getattr(_local, "worker", False):
        return 1
    return max(1, min(torch.get_num_threads(), os.cpu_count() or 1))
