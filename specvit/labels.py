"""The stellar labels specvit knows: their order in every label array, and their units."""

from __future__ import annotations

__all__ = ["LABEL_NAMES", "LABEL_UNITS"]

#: Label order of every label array in the emulator, the data engine, the shards and the bounds.
LABEL_NAMES = ("T_eff", "log_g", "M_H")
#: Unit of each label (T_eff in kelvin, log g and [M/H] in dex).
LABEL_UNITS = {"T_eff": "K", "log_g": "dex", "M_H": "dex"}
