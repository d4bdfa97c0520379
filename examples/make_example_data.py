"""Write the bundled example: engine spectra in the PFS ``pfsCoadd`` layout, and their truth.

Run from a checkout, with the PFS ETC tables beside it (``../shared/data/pfs_etc``)::

    python examples/make_example_data.py            # writes examples/data/

It draws ``--n`` spectra from the data engine (default prior, HSC-i ``--mag``, PFS MR noise from
the ETC tables, 12 × 900 s, fixed seed) and writes

* ``examples/data/pfsCoadd-engine-example.fits``: the multi-object container PFS pipelines hand
  over (``pfsCoadd``): a primary header with ``DAMD_VER``; the ``TARGET`` table (the ids);
  ``WAVELENGTH`` (nm, vacuum); ``FLUX`` (nJy); ``MASK`` (the data model's bit planes, named by
  ``MP_*`` keys; a few pixels per spectrum flagged ``CR`` with their flux spoiled, as a reader
  must mask them); ``SKY`` (zero: the engine adds sky noise but no sky residual); and ``COVAR``
  as a binary table whose ``row_0`` is the variance. It is written here with astropy in that
  layout, not by the PFS data-model package.
* ``examples/data/truth.ecsv``: ``objId``, the true T_eff, log g, [M/H], the magnitude and the SNR.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from astropy.io import fits
from astropy.table import Table

from specvit.instrument import DEFAULT_N_EXPOSURES, PFSNoiseModel
from training.engine.seeding import step_generator
from training.engine.simulate import Prior, Simulator
from training.paths import DEFAULT_ETC_DIR, REPO_ROOT

OUT = REPO_ROOT / "examples" / "data"
#: The data model's mask planes (``MP_*`` header keys of PFS files).
MASK_PLANES = {"BAD": 0, "SAT": 1, "INTRP": 2, "CR": 3, "NO_DATA": 8, "BAD_FLAT": 9}
SEED = 20_261_201


def write_coadd(path: Path, draw: dict, wavelength_aa: np.ndarray, obj_ids: np.ndarray) -> None:
    """Write the drawn spectra to ``path`` in the pfsCoadd layout (see the module docstring)."""
    n, length = draw["flux"].shape
    flux = draw["flux"].numpy().astype(np.float32)
    variance = (draw["error"].numpy().astype(np.float64) ** 2).astype(np.float32)
    rng = np.random.default_rng(SEED)
    mask = np.zeros((n, length), dtype=np.int32)
    for i in range(n):  # a few cosmic rays: flagged, flux spoiled
        hit = rng.choice(length, size=8, replace=False)
        mask[i, hit] |= 1 << MASK_PLANES["CR"]
        flux[i, hit] = 1e6
    primary = fits.PrimaryHDU()
    primary.header["DAMD_VER"] = (1, "PfsTargetSpectra datamodel version")
    primary.header["OBJGROUP"] = 1
    target = fits.BinTableHDU.from_columns(
        [
            fits.Column("targetId", "J", array=np.arange(n)),
            fits.Column("catId", "J", array=np.full(n, 10092)),
            fits.Column("objId", "K", array=obj_ids),
            fits.Column("ra", "D", array=150.0 + 0.01 * np.arange(n)),
            fits.Column("dec", "D", array=np.full(n, 2.2)),
        ],
        name="TARGET",
    )
    mask_hdu = fits.CompImageHDU(mask, name="MASK")
    for name, bit in MASK_PLANES.items():
        mask_hdu.header[f"HIERARCH MP_{name}"] = bit
    covar = fits.BinTableHDU.from_columns(
        [
            fits.Column(
                f"row_{k}", f"PE({length})", array=[v if k == 0 else 0 * v for v in variance]
            )
            for k in range(3)
        ],
        name="COVAR",
    )
    hdus = [
        primary,
        target,
        fits.ImageHDU(wavelength_aa / 10.0, name="WAVELENGTH"),
        fits.ImageHDU(flux, name="FLUX"),
        mask_hdu,
        fits.ImageHDU(np.zeros_like(flux), name="SKY"),
        covar,
    ]
    hdus[3].header["BUNIT"] = "nJy"
    fits.HDUList(hdus).writeto(path, overwrite=True)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=48)
    parser.add_argument("--mag", type=float, nargs=2, default=(20.5, 22.5))
    parser.add_argument("--etc-dir", type=Path, default=DEFAULT_ETC_DIR)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    noise = PFSNoiseModel.from_etc(args.etc_dir, n_exposures=DEFAULT_N_EXPOSURES)
    sim = Simulator(noise=noise, prior=Prior(mag=tuple(args.mag)))
    with torch.no_grad():
        draw = sim.sample(args.n, step_generator(SEED, 0))
    args.out.mkdir(parents=True, exist_ok=True)
    obj_ids = 6_502_071_962_016_153_617 + 1000 * np.arange(args.n, dtype=np.int64)
    write_coadd(
        args.out / "pfsCoadd-engine-example.fits", draw, np.asarray(sim.wavelength), obj_ids
    )
    labels = draw["labels"].numpy()
    truth = Table(
        {
            "objId": obj_ids,
            "T_eff": labels[:, 0],
            "log_g": labels[:, 1],
            "M_H": labels[:, 2],
            "mag_hsc_i": draw["mag"].numpy(),
            "snr": draw["snr"].numpy(),
        }
    )
    truth["T_eff"].unit, truth["log_g"].unit, truth["M_H"].unit = "K", "dex", "dex"
    truth.write(args.out / "truth.ecsv", overwrite=True)
    print(f"wrote {args.n} spectra to {args.out}")


if __name__ == "__main__":
    main()
