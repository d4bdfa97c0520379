"""Compare ``specvit-predict`` output on the bundled example with the true labels.

Run by ``make demo`` after ``specvit-predict examples/data/pfsCoadd-engine-example.fits -o OUT``::

    python examples/score_example.py OUT [examples/data/truth.ecsv]

Prints the first rows (predicted and true labels, side by side) and, per label, R², the RMSE and
the bias of the predictions against the truth (K for T_eff, dex for log g and [M/H]), beside the
median per-star Cramér–Rao σ of the same stars (the ``crlb_<label>`` columns: the best σ any
unbiased method could reach on each spectrum), then what the flags raised mean. With 48 spectra
these numbers are a sanity check, not a measure: the test-set numbers are in
docs/evaluation.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from astropy.table import Table, join

from specvit import PredictFlag

TRUTH = Path(__file__).resolve().parent / "data" / "truth.ecsv"


def main(argv: list[str]) -> int:
    """Print the comparison; returns the exit status."""
    if not 1 <= len(argv) <= 2:
        print(__doc__, file=sys.stderr)
        return 2
    predicted = Table.read(argv[0])
    truth = Table.read(argv[1] if len(argv) == 2 else TRUTH)
    labels = [n for n in ("T_eff", "log_g", "M_H") if n in predicted.colnames]
    both = join(predicted, truth, keys="objId", table_names=["pred", "true"])
    if len(both) != len(truth):
        print(f"only {len(both)} of {len(truth)} true objIds are in {argv[0]}", file=sys.stderr)
        return 1
    shown = ["objId", "snr_pred"] + [f"{n}_{s}" for n in labels for s in ("pred", "true")]
    rows = both[[c for c in shown if c in both.colnames]][:5]
    for name in rows.colnames[1:]:
        rows[name].info.format = ".0f" if name.startswith("T_eff") else ".2f"
    rows.rename_column("snr_pred", "snr")
    rows.pprint(max_width=-1)
    mag = truth["mag_hsc_i"]
    print(f"\n{len(both)} spectra, HSC-i {mag.min():.1f}–{mag.max():.1f}")
    for name in labels:
        pred, true = np.asarray(both[f"{name}_pred"]), np.asarray(both[f"{name}_true"])
        ok = np.isfinite(pred)
        err = pred[ok] - true[ok]
        r2 = 1 - np.sum(err**2) / np.sum((true[ok] - true[ok].mean()) ** 2)
        unit = "K" if name == "T_eff" else "dex"
        print(
            f"{name:>6}: R² {r2:.3f}, RMSE {np.sqrt(np.mean(err**2)):.3g} {unit}, "
            f"bias {err.mean():+.3g} {unit} ({ok.sum()} predicted)" + _crlb(predicted, name, unit)
        )
    if any(f"crlb_{name}" in predicted.colnames for name in labels):
        print(
            "Cramér–Rao σ: the best σ any unbiased method could reach on each star "
            "(crlb_<label>); an RMSE near it is as good as these spectra allow, and a model "
            "using its prior can beat it at low S/N (docs/bounds.md)."
        )
    print(_flag_lines(np.asarray(predicted["flags"])))
    return 0


def _crlb(predicted: Table, name: str, unit: str) -> str:
    """``; Cramér–Rao σ … (median per star)`` for a label, or "" without the column."""
    column = f"crlb_{name}"
    if column not in predicted.colnames:
        return ""
    return f"; Cramér–Rao σ {np.nanmedian(predicted[column]):.3g} {unit} (median per star)"


def _flag_lines(flags: np.ndarray) -> str:
    """How many stars are clean, and what each flag raised means."""
    lines = [f"flags: {np.count_nonzero(flags == 0)} of {flags.size} stars clean"]
    for flag in PredictFlag:
        hit = np.count_nonzero(flags & int(flag))
        if hit:
            lines.append(f"  {flag.name} ({hit}): {flag.meaning}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
