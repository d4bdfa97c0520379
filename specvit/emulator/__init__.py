"""The spectral emulator: noiseless PFS MR spectra of cool stars from (T_eff, log g, [M/H])."""

from specvit.emulator.emulator import LABEL_NAMES, Emulator, NativeModel

__all__ = ["LABEL_NAMES", "Emulator", "NativeModel"]
