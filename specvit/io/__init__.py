"""Readers and writers of spectra: HDF5 shards (and, for prediction, FITS, NPZ, tables)."""

from specvit.io.hdf5 import ShardInfo, iter_shard, read_shard_info

__all__ = ["ShardInfo", "iter_shard", "read_shard_info"]
