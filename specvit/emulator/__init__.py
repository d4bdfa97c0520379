"""The spectral emulator: noiseless PFS MR spectra of cool stars from (T_eff, log g, [M/H]).

:class:`Emulator` gives rest-frame spectra; :class:`DopplerShift` shifts them to a radial
velocity and gives the velocity derivative.
"""

from specvit.emulator.doppler import C_KMS, DopplerShift
from specvit.emulator.emulator import Emulator, NativeModel

__all__ = ["C_KMS", "DopplerShift", "Emulator", "NativeModel"]
