"""Readers and writers of spectra: HDF5 shards (and, for prediction, FITS, NPZ, tables)."""

from specvit.io.hdf5 import ShardInfo, iter_shard, read_shard_info
from specvit.io.readers import open_spectra
from specvit.io.spectra import SpectrumSet
from specvit.io.tables import write_table

__all__ = [
    "ShardInfo",
    "SpectrumSet",
    "iter_shard",
    "open_spectra",
    "read_shard_info",
    "write_table",
]
