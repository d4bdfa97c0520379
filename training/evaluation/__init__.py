"""How models are measured: the fixed evaluation sets and one scorer.

Modules: :mod:`~training.evaluation.eval_sets` (the test and validation sets with their
Bayes-optimal answers), :mod:`~training.evaluation.scoring` (the scorer, per SNR bin),
:mod:`~training.evaluation.calibration` (the σ-calibration fit),
:mod:`~training.evaluation.model_scores` (a model on an evaluation set),
:mod:`~training.evaluation.learning_curve` (a run's validations as a table),
:mod:`~training.evaluation.compare` with :mod:`~training.evaluation.baselines` and
:mod:`~training.evaluation.report` (every method against the ceiling), and
:mod:`~training.evaluation.design_study` (the default model's design study).
"""
