"""Seeds of the training run's random streams, and the fixed seeds of the validation and test sets.

Every stream is seeded from ``(run seed, *keys)``, so a step's randomness never depends on what
came before it and a resumed run redraws exactly what it would have drawn. Data batches are keyed
``(seed, batch)``; every other stream keys ``(seed, a, b, stream)`` with a non-zero stream id
last (``SeedSequence`` pads short keys with zeros, so ``(seed, 3)`` and ``(seed, 3, 0)`` would be
the same stream).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "BENCHMARK_CALIBRATION_SEEDS",
    "CALIBRATION_SEED",
    "DRAW_BLOCK",
    "DROPOUT_STREAM",
    "LABEL_STATS_STREAM",
    "REALISM_SEED",
    "TEST_SEED",
    "VALIDATION_SEED",
    "step_generator",
    "step_seed",
]

#: Fixed seeds of the validation and test sets (independent of the run seed), so every run and
#: :mod:`training.engine.datasets` draw the same ones for the same prior and noise settings.
VALIDATION_SEED, TEST_SEED = 20_240_001, 20_240_002
#: Fixed seed of the spectra ``training/publish.py`` calibrates σ on (the evaluation sets' posterior
#: samples use 20_240_003 and 20_240_004).
CALIBRATION_SEED = 20_240_005
#: Fixed seeds of the spectra ``training/publish.py`` also calibrates σ on when asked: fresh draws
#: of the faint ideal test set's distribution and of the mixed realism set's (never their stars).
BENCHMARK_CALIBRATION_SEEDS = (20_240_007, 20_240_008)
#: Fixed seed of the realism test set's stars (:mod:`training.evaluation.realism`).
REALISM_SEED = 20_240_006
#: Spectra drawn per seeded generator (``step_generator(seed, b)`` for block ``b``) when a fixed
#: set is drawn block by block: the data sets of ``make-dataset``, the evaluation sets, the
#: baselines' training spectra and the calibration spectra. Changing it changes all of them.
DRAW_BLOCK = 4096
#: Stream ids of the non-data streams: dropout (keys rank, step) and the label-statistics sample.
DROPOUT_STREAM, LABEL_STATS_STREAM = 1, 2


def step_seed(seed: int, *keys: int) -> int:
    """A 64-bit seed mixed from ``seed`` and integer ``keys`` (e.g. rank, step).

    Distinct key tuples give statistically independent streams (NumPy's ``SeedSequence``
    hashing), unlike ``seed + rank`` schemes whose streams overlap.
    """
    state = np.random.SeedSequence([int(seed), *(int(k) for k in keys)]).generate_state(
        2, np.uint32
    )
    return int(state[0]) << 32 | int(state[1])


def step_generator(seed: int, *keys: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with :func:`step_seed` ``(seed, *keys)``."""
    return torch.Generator(device=device).manual_seed(step_seed(seed, *keys))
