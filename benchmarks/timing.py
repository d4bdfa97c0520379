"""Timing helpers shared by the benchmark scripts (run them as ``python benchmarks/NAME.py``)."""

from __future__ import annotations

import time

import torch

__all__ = ["matmul_gflops", "rate", "sync"]


def rate(fn, seconds: float, device: torch.device) -> float:
    """Calls per second of ``fn`` over about ``seconds`` (after one warm-up call)."""
    fn()
    sync(device)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        calls += 1
    sync(device)
    return calls / (time.perf_counter() - start)


def sync(device: torch.device) -> None:
    """Wait for queued GPU work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_gflops(device: torch.device, dtype: torch.dtype, seconds: float, n: int = 1024) -> float:
    """GFLOP/s of an n×n @ n×n matmul in ``dtype``."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    return rate(lambda: a @ b, seconds, device) * 2 * n**3 / 1e9
