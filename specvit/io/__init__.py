"""Readers and writers of spectra: HDF5 shards (and, for prediction, FITS, NPZ, tables)."""

from specvit.io.columns import ColumnChoice
from specvit.io.hdf5 import ShardInfo, iter_shard, read_shard_info
from specvit.io.readers import open_spectra
from specvit.io.spectra import RaggedSpectrumSet, SpectrumSet
from specvit.io.tables import check_output, write_table

__all__ = [
    "ColumnChoice",
    "RaggedSpectrumSet",
    "ShardInfo",
    "SpectrumSet",
    "check_output",
    "iter_shard",
    "open_spectra",
    "read_shard_info",
    "write_table",
]
