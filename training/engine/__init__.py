"""The data engine: labels → noiseless PFS spectra → noise, on the fly or as HDF5 shards.

Modules: :mod:`~training.engine.simulate` (the prior and the simulator),
:mod:`~training.engine.seeding` (the reproducible random streams and fixed seeds),
:mod:`~training.engine.shards` (writing shards), :mod:`~training.engine.datasets` (a data set of
shards on disk), :mod:`~training.engine.sources` (what the trainer draws from: the engine or
shards), :mod:`~training.engine.batches` (per-step batches as model input),
:mod:`~training.engine.ood_cases` (out-of-domain spectra for the flags) and
:mod:`~training.engine.emulator_artifact` (building the emulator file specvit ships).
"""
