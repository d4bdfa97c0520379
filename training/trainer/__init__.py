"""The trainer: one loop, and the parts it is built from.

Modules: :mod:`~training.trainer.config` (the run config), :mod:`~training.trainer.loop` (the
:class:`~training.trainer.loop.Trainer`), :mod:`~training.trainer.losses`,
:mod:`~training.trainer.optim`, :mod:`~training.trainer.ema`,
:mod:`~training.trainer.checkpoint`, :mod:`~training.trainer.rundir` (the run folder's layout),
:mod:`~training.trainer.distributed` (torchrun) and :mod:`~training.trainer.teacher` (the grid
teacher's targets).
"""
