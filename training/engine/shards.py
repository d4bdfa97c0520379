"""Writing HDF5 shards in the layout of :mod:`specvit.io.hdf5`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from specvit.io.hdf5 import FORMAT, FORMAT_VERSION, OPTIONAL_DATASETS, REQUIRED_FIELDS
from specvit.labels import LABEL_NAMES

__all__ = ["ShardWriter"]


class ShardWriter:
    """Append batches of spectra to a new shard; the file appears only when complete.

    Writes to ``<path>.partial`` and renames it to ``path`` on :meth:`close` (or on leaving the
    ``with`` block without an error), so a crash never leaves a truncated shard under the final
    name.

    Parameters
    ----------
    path : str or Path
        The shard to create (must not exist unless ``overwrite``).
    wavelength : numpy.ndarray
        ``(L,)`` pixel-centre wavelengths in Å.
    medium : {"vacuum", "air"}
        Medium of ``wavelength``.
    n_spectra : int, optional
        Final number of spectra if known (pre-sizes the datasets); otherwise they grow.
    chunk_rows : int
        Spectra per HDF5 chunk (the unit a reader fetches; default 64 = 1 MiB per chunk at
        4096 float32 pixels).
    compression : str, optional
        HDF5 filter for flux and error (``"lzf"``, ``"gzip"``); default none (fastest reads).
    extra_fields : sequence of str
        Label-table float fields beyond ``T_eff, log_g, M_H, mag, snr`` (e.g. ``("rv",)``).
    datasets : sequence of str
        Optional per-spectrum datasets to write, names from
        :data:`specvit.io.hdf5.OPTIONAL_DATASETS` (e.g. ``("posterior_mean",)``); every batch
        must then carry them.
    attrs : mapping
        Provenance stored as root attributes (strings, numbers).
    overwrite : bool
        Replace an existing file.
    """

    def __init__(
        self,
        path: str | Path,
        wavelength: np.ndarray,
        medium: str = "vacuum",
        n_spectra: int | None = None,
        chunk_rows: int = 64,
        compression: str | None = None,
        extra_fields: tuple[str, ...] = (),
        datasets: tuple[str, ...] = (),
        attrs: Mapping[str, Any] | None = None,
        overwrite: bool = False,
    ) -> None:
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise FileExistsError(f"{self.path} exists (pass overwrite=True to replace it)")
        wave = np.asarray(wavelength, dtype=np.float64)
        if wave.ndim != 1 or wave.size < 2:
            raise ValueError("wavelength must be a 1-D array of ≥ 2 pixels")
        self.fields = (*REQUIRED_FIELDS, *extra_fields)
        unknown = [k for k in datasets if k not in OPTIONAL_DATASETS]
        if unknown:
            raise ValueError(f"unknown datasets {unknown}; choose from {list(OPTIONAL_DATASETS)}")
        self.datasets = tuple(datasets)
        self.n_pixels = wave.size
        self.count = 0
        self._partial = self.path.with_name(self.path.name + ".partial")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(self._partial, "w")
        f = self._file
        n0 = int(n_spectra) if n_spectra is not None else 0
        for key in ("flux", "error"):
            ds = f.create_dataset(
                key,
                shape=(n0, self.n_pixels),
                maxshape=(None, self.n_pixels),
                dtype=np.float32,
                chunks=(chunk_rows, self.n_pixels),
                compression=compression,
            )
            ds.attrs["unit"] = "nJy"
        f["error"].attrs["meaning"] = "1 sigma"
        wds = f.create_dataset("wavelength", data=wave)
        wds.attrs["unit"] = "Angstrom"
        wds.attrs["medium"] = medium
        table = np.dtype([(name, np.float32) for name in self.fields])
        f.create_dataset(
            "labels", shape=(n0,), maxshape=(None,), dtype=table, chunks=(max(chunk_rows, 1024),)
        )
        for key in self.datasets:
            tail = (OPTIONAL_DATASETS[key],) if OPTIONAL_DATASETS[key] else ()
            f.create_dataset(
                key,
                shape=(n0, *tail),
                maxshape=(None, *tail),
                dtype=np.float32,
                chunks=(max(chunk_rows, 1024), *tail),
            )
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["label_names"] = list(LABEL_NAMES)
        for key, value in (attrs or {}).items():
            f.attrs[key] = value

    def append(self, batch: Mapping[str, Any]) -> None:
        """Write a batch: ``flux``, ``error`` (B, L); ``labels`` (B, 3); ``mag``, ``snr`` … (B,).

        Tensors or arrays; every field of the table must be given (``labels`` supplies
        ``T_eff, log_g, M_H``).
        """
        flux = np.asarray(batch["flux"], dtype=np.float32)
        error = np.asarray(batch["error"], dtype=np.float32)
        labels = np.asarray(batch["labels"], dtype=np.float32)
        b = flux.shape[0]
        if flux.shape != (b, self.n_pixels) or error.shape != flux.shape:
            raise ValueError(
                f"flux and error must be (B, {self.n_pixels}), got {flux.shape}, {error.shape}"
            )
        if labels.shape != (b, len(LABEL_NAMES)):
            raise ValueError(f"labels must be ({b}, {len(LABEL_NAMES)}), got {labels.shape}")
        rows = np.empty(b, dtype=self._file["labels"].dtype)
        for k, name in enumerate(LABEL_NAMES):
            rows[name] = labels[:, k]
        for name in self.fields[len(LABEL_NAMES) :]:
            if name not in batch:
                raise KeyError(f"batch lacks the labels-table field {name!r}")
            rows[name] = np.asarray(batch[name], dtype=np.float32).reshape(b)
        extra = {}
        for key in self.datasets:
            if key not in batch:
                raise KeyError(f"batch lacks the dataset {key!r}")
            extra[key] = np.asarray(batch[key], dtype=np.float32)
            tail = (OPTIONAL_DATASETS[key],) if OPTIONAL_DATASETS[key] else ()
            if extra[key].shape != (b, *tail):
                raise ValueError(f"{key} must be {(b, *tail)}, got {extra[key].shape}")
        lo, hi = self.count, self.count + b
        f = self._file
        if hi > f["flux"].shape[0]:
            for key in ("flux", "error", "labels", *self.datasets):
                f[key].resize(hi, axis=0)
        f["flux"][lo:hi] = flux
        f["error"][lo:hi] = error
        f["labels"][lo:hi] = rows
        for key, value in extra.items():
            f[key][lo:hi] = value
        self.count = hi

    def close(self) -> Path:
        """Finish the shard (trim to the rows written) and move it to its final name."""
        if self._file is None:
            return self.path
        f = self._file
        if f["flux"].shape[0] != self.count:
            for key in ("flux", "error", "labels", *self.datasets):
                f[key].resize(self.count, axis=0)
        f.attrs["n_spectra"] = self.count
        f.close()
        self._file = None
        os.replace(self._partial, self.path)
        return self.path

    def abort(self) -> None:
        """Discard the partial file."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._partial.unlink(missing_ok=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
