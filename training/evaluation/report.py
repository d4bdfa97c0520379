"""The figures of the evaluation report (``training/evaluation/compare.py --report``); needs
matplotlib."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from specvit.bounds.plot import plot_r2_vs_snr, require_matplotlib

__all__ = ["figures"]

BAYES = "Bayes-optimal"
_MARKERS = "osD^v<>ph*"


def _values(groups: list[dict], key: str, label: str = "log_g") -> list[float]:
    out = []
    for g in groups:
        v = g["metrics"][label].get(key)
        out.append(math.nan if v is None else v)
    return out


def _save(fig, folder: Path, name: str) -> str:
    fig.savefig(folder / name, dpi=110, bbox_inches="tight")
    require_matplotlib().close(fig)
    return name


def figures(
    out: dict[str, Any], test: dict[str, np.ndarray], methods: dict[str, Any], folder: Path
) -> dict[str, str]:
    """Write the report's PNGs into ``folder``; returns ``{kind: file name}``."""
    plt = require_matplotlib()
    scores, crlb = out["scores"], out["crlb"]
    names = [n for n in scores if n != BAYES]
    bayes_snr = scores[BAYES]["snr"]
    x = [math.nan if g["median_snr"] is None else g["median_snr"] for g in bayes_snr]
    ticks = [v for v in x if math.isfinite(v)]
    bins = [g["bin"] for g in bayes_snr]
    files: dict[str, str] = {}

    curves = {
        f"{name}": (x, _values(scores[name]["snr"], "r2"), f"{_MARKERS[i % 10]}-")
        for i, name in enumerate(names)
    }
    curves[BAYES] = (x, _values(bayes_snr, "r2"), "ko-")
    curves["CRLB R²_max, population"] = (x, [_nan(crlb[b]["population"]) for b in bins], "k--")
    curves["CRLB R²_max, median"] = (x, [_nan(crlb[b]["median"]) for b in bins], "k:")
    ax = plot_r2_vs_snr(curves, ticks, xlabel="median SNR of the bin's spectra")
    ax.set_title(f"log g on the test set ({scores[BAYES]['overall']['n']} spectra)")
    files["r2"] = _save(ax.figure, folder, "r2_vs_snr.png")

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, name in enumerate(names):
        ax.plot(x, _values(scores[name]["snr"], "efficiency"), f"{_MARKERS[i % 10]}-", label=name)
    ax.axhline(1.0, color="k", lw=1)
    ax.set_xscale("log")
    ax.set_xticks(ticks, [f"{v:.3g}" for v in ticks])
    ax.minorticks_off()
    ax.set_xlabel("median SNR of the bin's spectra")
    ax.set_ylabel("efficiency  R² / R²_Bayes (log g)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    files["efficiency"] = _save(fig, folder, "efficiency_vs_snr.png")

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    with_sigma = [n for n in [*names, BAYES] if _has_sigma(scores[n])]
    for i, name in enumerate(with_sigma):
        for key, style in (("coverage_1sigma", "-"), ("coverage_2sigma", "--")):
            marker = "o" if name == BAYES else _MARKERS[i % 10]
            color = "k" if name == BAYES else f"C{i}"
            ax.plot(
                x,
                _values(scores[name]["snr"], key),
                f"{marker}{style}",
                color=color,
                label=f"{name} {key[-6:]}",
            )
    for level in (0.6827, 0.9545):
        ax.axhline(level, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_xticks(ticks, [f"{v:.3g}" for v in ticks])
    ax.minorticks_off()
    ax.set_xlabel("median SNR of the bin's spectra")
    ax.set_ylabel("fraction with |error| < kσ (log g)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    files["calibration"] = _save(fig, folder, "sigma_calibration.png")

    preds = {n: methods[n]["mean"] for n in names}
    preds[BAYES] = test["posterior_mean"]
    g = test["labels"][:, 1]
    for kind, xs, xlabel, xbins in (
        ("teff_logg", test["labels"][:, 0], "true T_eff (K)", np.linspace(3750, 6000, 10)),
        (
            "snr_logg",
            test["snr"],
            "SNR",
            np.geomspace(max(test["snr"].min(), 1.0), test["snr"].max(), 10),
        ),
    ):
        files[kind] = _save(
            _residual_map(preds, g, xs, xlabel, xbins, np.linspace(1, 5, 9), kind == "snr_logg"),
            folder,
            f"residuals_{kind}.png",
        )

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    methods_scaled = list(dict.fromkeys(r["method"] for r in out["scaling"]))
    for i, m in enumerate(methods_scaled):
        rows = sorted(
            (r for r in out["scaling"] if r["method"] == m and "missing" not in r),
            key=lambda r: r["n_train"],
        )
        ax.plot(
            [r["n_train"] for r in rows],
            [_nan(r["r2_log_g"]) for r in rows],
            f"{_MARKERS[i % 10]}-",
            label=m,
        )
    ax.axhline(scores[BAYES]["overall"]["metrics"]["log_g"]["r2"], color="k", lw=1, label=BAYES)
    ax.set_xscale("log")
    ax.set_xlabel("training spectra N")
    ax.set_ylabel("R² (log g), whole test set")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    files["scaling"] = _save(fig, folder, "scaling.png")
    return files


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def _has_sigma(score: dict) -> bool:
    return score["overall"]["metrics"]["log_g"].get("coverage_1sigma") is not None


def _residual_map(preds, g, xs, xlabel, xbins, gbins, logx):
    plt = require_matplotlib()
    n = len(preds)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.3 * cols, 2.9 * rows), squeeze=False, layout="constrained"
    )
    counts, _, _ = np.histogram2d(xs, g, [xbins, gbins])
    image = None
    for ax, (name, pred) in zip(axes.flat, preds.items(), strict=False):
        sq, _, _ = np.histogram2d(xs, g, [xbins, gbins], weights=np.square(pred[:, 1] - g))
        with np.errstate(invalid="ignore", divide="ignore"):
            rms = np.sqrt(sq / counts)
        image = ax.pcolormesh(xbins, gbins, rms.T, vmin=0, vmax=1.5, cmap="viridis")
        ax.set_title(name, fontsize=8)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel("true log g", fontsize=8)
        if logx:
            ax.set_xscale("log")
            ticks = [t for t in (2, 3, 5, 10, 20, 50) if xbins[0] <= t <= xbins[-1]]
            ax.set_xticks(ticks, [str(t) for t in ticks])
            ax.minorticks_off()
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.colorbar(image, ax=axes, label="RMS log g error (dex)", shrink=0.8)
    fig.suptitle("RMS log g error per cell (white: no test star)", fontsize=9)
    return fig
