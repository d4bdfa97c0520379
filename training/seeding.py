"""Seeds derived from (run seed, rank, step), so a step's randomness never depends on history."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["step_generator", "step_seed"]


def step_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed mixed from ``seed`` and integer ``keys`` (e.g. rank, step).

    Distinct key tuples give statistically independent streams (NumPy's ``SeedSequence``
    hashing), unlike ``seed + rank`` schemes whose streams overlap.
    """
    state = np.random.SeedSequence([seed, *keys]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def step_generator(seed: int, *keys: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with :func:`step_seed` ``(seed, *keys)``."""
    return torch.Generator(device=device).manual_seed(step_seed(seed, *keys))
