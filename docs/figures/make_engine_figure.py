"""Make ``docs/figures/data_engine_spectra.png``: example engine spectra across T_eff, log g, i.

Run: ``python docs/figures/make_engine_figure.py [--etc-dir ../shared/data/pfs_etc]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from specvit.instrument import PFSNoiseModel
from training.engine.simulate import Simulator
from training.paths import DEFAULT_ETC_DIR

OUT = Path(__file__).resolve().parent / "data_engine_spectra.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--etc-dir", type=Path, default=DEFAULT_ETC_DIR)
    args = parser.parse_args()
    noise = PFSNoiseModel.from_etc(args.etc_dir)
    sim = Simulator(noise=noise)
    wave = sim.wavelength
    fig, axes = plt.subplots(3, 1, figsize=(10, 10), constrained_layout=True)

    ax = axes[0]
    for k, teff in enumerate((3750.0, 4250.0, 5000.0, 6000.0)):
        f = sim.noiseless(torch.tensor([[teff, 4.5, 0.0]]), torch.tensor([21.5]))[0]
        ax.plot(wave, f / f.median() + 0.6 * k, lw=0.6, label=f"T_eff {teff:.0f} K")
    ax.set_title("noiseless, log g 4.5, [M/H] 0 (flux / median, offset)")
    ax.set_ylim(0.3, 3.4)
    ax.legend(loc="upper center", fontsize=8, ncol=4)

    ax = axes[1]
    window = (wave > 8450) & (wave < 8700)
    for logg in (1.0, 2.5, 4.0, 5.0):
        f = sim.noiseless(torch.tensor([[4200.0, logg, -0.5]]), torch.tensor([21.5]))[0]
        ax.plot(wave[window], (f / f.median())[window], lw=0.8, label=f"log g {logg:.1f}")
    ax.set_title("noiseless, T_eff 4200 K, [M/H] −0.5: the Ca II triplet region vs log g")
    ax.legend(loc="lower left", fontsize=8, ncol=4)

    ax = axes[2]
    gen = torch.Generator().manual_seed(0)
    labels = torch.tensor([[4800.0, 2.5, -1.0]])
    for k, mag in enumerate((20.5, 21.5, 22.5)):
        clean = sim.noiseless(labels, torch.tensor([mag]))
        flux, err = noise.float().observe(clean, gen)
        snr = float((flux / err).median())
        scale = float(clean.median())
        ax.plot(
            wave[window],
            (flux[0] / scale + 2.5 * k)[window],
            lw=0.5,
            label=f"i = {mag} (S/N {snr:.1f} over the arm)",
        )
        ax.plot(wave[window], (clean[0] / scale + 2.5 * k)[window], lw=0.8, color="k")
    ax.set_ylim(-1.0, 8.0)
    ax.set_title(
        "T_eff 4800 K, log g 2.5, [M/H] −1: PFS ETC noise, 12 × 900 s (offset; black: noiseless)"
    )
    ax.set_xlabel("vacuum wavelength [Å]")
    ax.legend(loc="upper right", fontsize=8, ncol=3)
    fig.savefig(OUT, dpi=110)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
