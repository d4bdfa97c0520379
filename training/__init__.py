"""specvit's training side, for maintainers (not shipped in the wheel; imports :mod:`specvit`).

Subpackages, each named for what it holds:

- :mod:`training.engine` — the data engine: simulated spectra, shards, training sources, batches;
- :mod:`training.trainer` — the training loop and its parts: config, losses, optimiser, EMA,
  checkpoints, the run folder, distributed set-up, the grid teacher;
- :mod:`training.evaluation` — the fixed evaluation sets, the scorer, σ calibration, model
  scores, the comparison with baselines, the design study;
- :mod:`training.cli` — the command-line entry points, one thin module each
  (``python -m training COMMAND``; ``python training/train.py`` is ``python -m training train``).

Beside them: :mod:`training.publish` (a checkpoint → a Hub-ready model folder) and
:mod:`training.paths` (where the repository and ``../shared`` are). The named training configs
are the YAML files of ``training/configs/``.
"""
