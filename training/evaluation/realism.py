"""The realism test set: the same stars with one real-data effect at a time, and all mixed.

The ideal evaluation sets (:mod:`training.evaluation.eval_sets`) hold the engine's own kind of
spectra: rest frame, perfectly calibrated. Real PFS spectra are not. Here one set of stars (HSC-i
uniform in :data:`REALISM_MAG`, the default label prior, PFS ETC noise, drawn with
:data:`~training.engine.seeding.REALISM_SEED`) is observed once as the engine does it (the
*reference*) and again under each :func:`variants` entry: a star moving in the observed frame at
a fixed velocity, or one effect of :mod:`training.engine.effects` at a graded strength, or every
effect drawn from its default prior with velocities of ±300 km/s (*mixed*). The labels, the
magnitudes and the noise draw are the same in every variant (the effects draw from streams of
their own; the velocity from a prior whose draws are the same uniforms), so what changes a
prediction is the effect.

:func:`score_variant` compares a model's predictions (``specvit.predict``, its default
``physics=True`` with the flags) of each variant with its predictions of the reference, per SNR
bin (:func:`training.evaluation.scoring.score`, the one scorer): the label shifts (bias and rms,
in K and dex) among the stars left *unflagged* (no bit but ``LOW_SNR``), the σ coverage of the
true labels among them, and how often each flag fires. In exact mode ``predict`` is also given
the sky the engine subtracted (:attr:`specvit.instrument.PFSNoiseModel.sky_njy`), as PFS files
carry theirs. ``python -m training realism`` writes the table and the figure
(:func:`write_report`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import specvit
from specvit.bounds.prior import Uniform
from specvit.emulator import Emulator
from specvit.inference.flags import PredictFlag
from specvit.instrument import PFSNoiseModel
from training.engine.effects import Effects
from training.engine.seeding import REALISM_SEED
from training.engine.simulate import Prior, Simulator
from training.evaluation.model_scores import format_number
from training.evaluation.scoring import SNR_BIN_EDGES, bin_label, score

__all__ = [
    "MIN_FLAGGED",
    "MIN_STARS",
    "REALISM_MAG",
    "REFERENCE_RV",
    "TOLERANCE",
    "Variant",
    "realism_scores",
    "score_variant",
    "select_variants",
    "simulate",
    "variants",
    "write_report",
]

#: HSC-i range of the realism stars (uniform): S/N ≈ 2–50, the faint and the bright test sets.
REALISM_MAG = (18.5, 22.5)
#: Fewest stars a pooled shift or coverage is reported for (else "–").
MIN_STARS = 10
#: The label shifts (K, dex) a variant may cause among the stars it leaves unflagged at
#: S/N ≥ 5, unless it flags at least :data:`MIN_FLAGGED` of them: the project's tolerance for
#: real-data effects (a survey's usable labels).
TOLERANCE = {"T_eff": 75.0, "log_g": 0.10, "M_H": 0.07}
#: The flagged fraction (S/N ≥ 5) that excuses a variant from :data:`TOLERANCE`.
MIN_FLAGGED = 0.90
#: Half-width (km/s) of the velocity prior of the reference and of the effect variants: the
#: same uniforms are drawn in every variant (so the same noise follows), and ±0.001 km/s moves a
#: line by 10⁻⁵ pixel.
REFERENCE_RV = 1e-3


@dataclass(frozen=True)
class Variant:
    """One way of observing the realism stars.

    Attributes
    ----------
    effect : str
        The effect's name (``rv``, an effect of :class:`~training.engine.effects.Effects`, or
        ``mixed``).
    strength : str
        Its strength as shown in the report (e.g. ``+30 km/s``, ``E(B−V) 0.3``).
    effects : Effects
        What the simulator adds.
    rv : tuple of float
        The velocity prior's range (km/s).
    """

    effect: str
    strength: str
    effects: Effects
    rv: tuple[float, float] = (-REFERENCE_RV, REFERENCE_RV)

    @property
    def name(self) -> str:
        """``effect: strength``."""
        return f"{self.effect}: {self.strength}"


def variants() -> list[Variant]:
    """The graded variants: each effect at strengths up to (and past) its prior's 90th
    percentile, then every effect at once."""
    out = [
        Variant("rv", f"{v:+g} km/s", Effects.off(), (v - REFERENCE_RV, v + REFERENCE_RV))
        for v in (30.0, -100.0, 300.0, -600.0, 600.0)
    ]
    grades: list[tuple[str, str, dict[str, Any]]] = [
        ("calibration", "5 % peak to peak", {"amplitude": 0.05}),
        ("calibration", "15 % peak to peak", {"amplitude": 0.15}),
        ("extinction", "E(B−V) 0.3", {"ebv": 0.3}),
        ("extinction", "E(B−V) 1", {"ebv": 1.0}),
        ("sky", "±2 % scale", {"scale": 0.02, "exposure_scale": 0.0, "pixel": 0.0}),
        ("sky", "2 % per pixel", {"scale": 0.0, "exposure_scale": 0.0, "pixel": 0.02}),
        ("lsf", "R 4000", {"values": (4000.0,)}),
        ("lsf", "R 6500", {"values": (6500.0,)}),
        ("wavelength", "0.1 px", {"pixels": 0.1}),
        ("cosmic_rays", "6 per spectrum", {"rate": 6.0}),
        ("sigma_scale", "σ × 0.7", {"factor": 0.7}),
        ("sigma_scale", "σ × 1.3", {"factor": 1.3}),
        ("background", "σ 1.25× end to end", {"amplitude": 0.22}),
        ("background", "σ 1.57× end to end", {"amplitude": 0.45}),
        ("telluric", "10 % residual, 10 mm PWV", {"fraction": 0.1, "pwv": 10.0}),
    ]
    out += [Variant(effect, label, Effects.only(effect, **kw)) for effect, label, kw in grades]
    out.append(Variant("mixed", "every effect, ±300 km/s", Effects.default(), (-300.0, 300.0)))
    return out


def simulate(
    variant: Variant,
    n: int,
    noise: PFSNoiseModel,
    emulator: Emulator | None = None,
    seed: int = REALISM_SEED,
) -> dict[str, torch.Tensor]:
    """The realism stars observed as ``variant`` says: :meth:`Simulator.sample_fixed` with
    ``seed``."""
    prior = Prior(mag=REALISM_MAG, rv=Uniform(*variant.rv))
    sim = Simulator(emulator=emulator, noise=noise, prior=prior, effects=variant.effects)
    return sim.sample_fixed(n, seed)


def _predict(
    predictor: specvit.Predictor, data: dict[str, torch.Tensor], sky: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    flux = data["flux"].numpy()
    sky = None if sky is None else np.broadcast_to(sky, flux.shape)
    table = predictor.predict(flux, data["error"].numpy(), sky=sky)
    names = predictor.label_names
    out = {
        "mean": np.stack([np.asarray(table[n], dtype=np.float64) for n in names], 1),
        "sigma": np.stack([np.asarray(table[f"{n}_err"], dtype=np.float64) for n in names], 1),
        "flags": np.asarray(table["flags"], dtype=np.int64),
    }
    if "v_rad" in table.colnames:
        out["v_rad"] = np.asarray(table["v_rad"], dtype=np.float64)
    return out


def score_variant(
    reference: dict[str, np.ndarray],
    predicted: dict[str, np.ndarray],
    labels: np.ndarray,
    snr: np.ndarray,
    names: Sequence[str],
    rv: np.ndarray | None = None,
) -> dict[str, Any]:
    """How one variant moves a model's answers, per SNR bin of the reference spectra.

    Parameters
    ----------
    reference, predicted : dict
        ``mean``, ``sigma`` (N, P) and ``flags`` (N,) of the reference and of the variant.
    labels : numpy.ndarray
        ``(N, P)`` true labels.
    snr : numpy.ndarray
        ``(N,)`` the reference spectra's S/N (:func:`specvit.median_snr`), which bins them.
    names : sequence of str
        The ``P`` label names.
    rv : numpy.ndarray, optional
        ``(N,)`` the variant's true velocities (km/s), for a model that reports ``v_rad``.

    Returns
    -------
    dict
        ``shift``: :func:`~training.evaluation.scoring.score` of the variant's means against the
        reference's, among the unflagged stars (its ``bias`` and ``rmse`` are the shift);
        ``coverage``: the same scorer against the true labels with the variant's σ, among them;
        ``unflagged``: the fraction unflagged and ``flags``: each flag's rate, overall and per
        SNR bin; ``velocity``: the median ``|v_rad − rv|`` (km/s) per SNR bin, when the model
        reports ``v_rad`` and ``rv`` is given.
    """
    quiet = (predicted["flags"] & ~int(PredictFlag.LOW_SNR)) == 0
    both = quiet & np.isfinite(predicted["mean"]).all(1) & np.isfinite(reference["mean"]).all(1)
    shift = score(reference["mean"][both], predicted["mean"][both], snr[both], names)
    coverage = score(
        labels[both], predicted["mean"][both], snr[both], names, sigma=predicted["sigma"][both]
    )
    groups = {"all": np.ones_like(quiet)}
    for lo, hi in itertools.pairwise(SNR_BIN_EDGES):
        groups[bin_label(lo, hi)] = (snr >= lo) & (snr < hi)
    rates = {
        key: {
            "n": int(sel.sum()),
            "unflagged": float(quiet[sel].mean()) if sel.any() else None,
            "flags": {
                flag.name: float(((predicted["flags"][sel] & int(flag)) != 0).mean())
                for flag in PredictFlag
                if sel.any()
            },
        }
        for key, sel in groups.items()
    }
    out = {"shift": shift, "coverage": coverage, "rates": rates}
    if rv is not None and "v_rad" in predicted:
        error = np.abs(predicted["v_rad"] - rv)
        out["velocity"] = {
            key: float(np.nanmedian(error[sel])) if np.isfinite(error[sel]).any() else None
            for key, sel in groups.items()
        }
    return out


def realism_scores(
    model: specvit.SpecViT,
    noise: PFSNoiseModel,
    n: int = 2000,
    seed: int = REALISM_SEED,
    exact: bool = False,
    only: Sequence[str] = (),
) -> dict[str, Any]:
    """:func:`score_variant` of every :func:`variants` entry for ``model`` on ``n`` stars
    (predicted in ``predict``'s exact mode with ``exact``), or of those whose effect is in
    ``only`` (e.g. ``["mixed"]``: the coverage per S/N bin needs more stars than the whole table
    can afford). The unperturbed stars are always scored.

    Raises
    ------
    ValueError
        For a name in ``only`` that is no variant's effect.
    """
    chosen = select_variants(only)
    emulator = Emulator.load()
    names = model.config.label_names
    reference_data = simulate(Variant("reference", "", Effects.off()), n, noise, emulator, seed)
    columns = [specvit.LABEL_NAMES.index(name) for name in names]
    labels = reference_data["labels"].numpy()[:, columns].astype(np.float64)
    snr = reference_data["snr"].numpy().astype(np.float64)
    predictor = specvit.Predictor(model, exact=exact)  # one, for every variant
    # exact mode takes the subtracted sky (nJy, as the flux), as it would from a PFS file
    sky = noise.sky_njy.numpy() if exact else None
    reference = _predict(predictor, reference_data, sky)
    out = {
        "n": n,
        "seed": seed,
        "mag": list(REALISM_MAG),
        "names": list(names),
        "exact": exact,
        "model": model.origin["name"] if model.origin else type(model).__name__,
        "only": list(only),
        "variants": {},
    }
    # the unperturbed stars themselves: their flag rates and σ coverage (no shift, by definition)
    unperturbed = score_variant(reference, reference, labels, snr, names)
    out["variants"]["reference: unperturbed"] = {"effect": "reference", **unperturbed}
    for variant in chosen:
        data = simulate(variant, n, noise, emulator, seed)
        rv = data["rv"].numpy().astype(np.float64) if "rv" in data else None
        scored = score_variant(reference, _predict(predictor, data, sky), labels, snr, names, rv)
        out["variants"][variant.name] = {"effect": variant.effect, **scored}
    return out


def select_variants(only: Sequence[str] = ()) -> list[Variant]:
    """The :func:`variants` whose effect is in ``only`` (all of them for none).

    Raises
    ------
    ValueError
        For a name that is no variant's effect.
    """
    every = variants()
    known = list(dict.fromkeys(v.effect for v in every))
    unknown = sorted(set(only) - set(known))
    if unknown:
        raise ValueError(f"no realism variant of {unknown}; the effects are {known}")
    return [v for v in every if not only or v.effect in only]


def _snr5(result: dict[str, Any], label: str, metric: str) -> float | None:
    """``metric`` of ``label`` pooled over the SNR bins from 5 up (weighted by their stars)."""
    values, weights = [], []
    for group in result["snr"]:
        if group["low"] >= 5 and group["n"] and label in group["metrics"]:
            value = group["metrics"][label].get(metric)
            if value is not None:
                values.append(value**2 if metric == "rmse" else value)
                weights.append(group["n"])
    if sum(weights) < MIN_STARS:  # too few stars left to say
        return None
    mean = float(np.average(values, weights=weights))
    return float(np.sqrt(mean)) if metric == "rmse" else mean


def write_report(scores: dict[str, Any], folder: str | Path, command: str) -> Path:
    """Write ``folder/realism.md`` (the table) and ``folder/realism_shifts.png`` (the figure);
    ``realism_exact.md`` and ``realism_exact_shifts.png`` for exact-mode scores."""
    from specvit.bounds.plot import require_matplotlib

    plt = require_matplotlib()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = scores["names"]
    units = {n: specvit.LABEL_UNITS[n] for n in names}
    head = ["variant", "unflagged (S/N ≥ 5)"]
    head += [f"{n} shift bias / rms ({units[n]})" for n in names]
    head += [f"{n} 1σ cov." for n in names] + ["most frequent flags (S/N ≥ 5)"]
    head += ["within tolerance", "median abs(v_rad − v), S/N ≥ 10 (km/s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, v in scores["variants"].items():
        rates = [r for k, r in v["rates"].items() if k != "all" and _low_edge(k) >= 5]
        total = sum(r["n"] for r in rates)
        unflagged = sum(r["unflagged"] * r["n"] for r in rates if r["n"]) / max(total, 1)
        flag_rates = {
            flag: sum(r["flags"].get(flag, 0.0) * r["n"] for r in rates if r["n"]) / max(total, 1)
            for flag in (f.name for f in PredictFlag)
        }
        top = sorted(((rate, flag) for flag, rate in flag_rates.items() if rate >= 0.01))[::-1]
        digits = {"T_eff": 0, "log_g": 2, "M_H": 2}
        cells = [name, f"{unflagged:.2f}"]
        for n in names:
            bias, rms = _snr5(v["shift"], n, "bias"), _snr5(v["shift"], n, "rmse")
            d = digits.get(n, 3)
            cells.append("–" if bias is None else f"{bias:+.{d}f} / {rms:.{d}f}")
        cells += [format_number(_snr5(v["coverage"], n, "coverage_1sigma"), 2) for n in names]
        cells.append(", ".join(f"{flag} {rate:.2f}" for rate, flag in top[:3]) or "–")
        cells.append(_verdict(v, unflagged))
        velocity = v.get("velocity", {})
        at10 = [
            (velocity.get(k), r["n"])
            for k, r in v["rates"].items()
            if k != "all" and _low_edge(k) >= 10 and velocity.get(k) is not None
        ]
        shown = np.average([m for m, _ in at10], weights=[n for _, n in at10]) if at10 else None
        cells.append(format_number(shown, 1))
        lines.append("| " + " | ".join(cells) + " |")
    stem = "_".join(
        ["realism", *scores.get("only", [])] + (["exact"] if scores.get("exact") else [])
    )
    mode = " in exact mode" if scores.get("exact") else ""
    sky = (
        "In exact mode `predict` is given the sky the engine subtracted, as a PFS file gives "
        "its own. "
        if scores.get("exact")
        else ""
    )
    page = folder / f"{stem}.md"
    page.write_text(
        "<!-- generated by python -m training realism; do not edit by hand -->\n\n"
        f"# {scores.get('model') or 'The model'}{mode} on the realism test set\n\n"
        f"Written by\n\n```bash\n{command}\n```\n\n"
        f"{scores['n']} engine spectra (HSC-i {scores['mag'][0]:g}–{scores['mag'][1]:g}, the "
        "default label prior, 12 × 900 s, PFS ETC noise, seed "
        f"{scores['seed']}), observed once as the engine does it (the reference, whose own "
        "flag rates and coverage are the first row) and again "
        "under each variant: the same stars, magnitudes and noise draw "
        f"(`training.evaluation.realism`). {sky}Shift: the variant's prediction minus the "
        "reference's, among the stars the variant leaves unflagged (no flag but LOW_SNR), "
        "pooled over the S/N bins from 5 up (bias: the mean, rms: about 0; – where fewer than "
        f"{MIN_STARS} stars are left unflagged); coverage: the "
        "fraction of those stars whose true label lies within 1σ of the variant's prediction "
        "(0.683 when calibrated); flags: the fraction of S/N ≥ 5 stars with each bit; within "
        "tolerance: every label's shift bias within "
        + ", ".join(f"{TOLERANCE[n]:g} {units[n]} ({n})" for n in names if n in TOLERANCE)
        + f", or at least {MIN_FLAGGED:.0%} of the stars flagged; v_rad: the median error of "
        "the velocity a model that takes observed-frame spectra measures (the S/N bins from "
        "10 up, weighted by their stars).\n\n"
        + "\n".join(lines)
        + f"\n\n![log g shift per S/N bin]({stem}_shifts.png)\n\n"
        + _coverage_section(scores),
        encoding="utf-8",
    )
    _figure(scores, folder / f"{stem}_shifts.png", plt)
    return page


def _coverage_section(scores: dict[str, Any]) -> str:
    """Markdown: the σ coverage per S/N bin of the unperturbed stars and of the mixed variant
    (among the stars each leaves unflagged), with the stars per bin."""
    names = scores["names"]
    shown = {k: v for k, v in scores["variants"].items() if v["effect"] in ("reference", "mixed")}
    bins = [g["bin"] for g in next(iter(shown.values()))["coverage"]["snr"]]
    lines = [
        "## σ coverage per S/N bin\n",
        "The fraction of the stars left unflagged whose true label lies within 1σ / 2σ of the "
        "prediction (0.683 / 0.954 when calibrated), per S/N bin of the reference spectra; N: "
        "those stars.\n",
        "| variant | label | " + " | ".join(bins) + " |",
        "|" + "---|" * (len(bins) + 2),
    ]
    for name, v in shown.items():
        groups = v["coverage"]["snr"]
        lines.append(f"| {name} | N | " + " | ".join(str(g["n"]) for g in groups) + " |")
        for label in names:
            cells = []
            for g in groups:
                m = g["metrics"].get(label, {}) if g["n"] >= MIN_STARS else {}
                one, two = m.get("coverage_1sigma"), m.get("coverage_2sigma")
                cells.append("–" if one is None else f"{one:.2f} / {two:.2f}")
            lines.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _verdict(result: dict[str, Any], unflagged: float) -> str:
    """``yes`` when every label's S/N ≥ 5 shift bias is within :data:`TOLERANCE` or at least
    :data:`MIN_FLAGGED` of the stars are flagged, else the labels beyond it."""
    if 1.0 - unflagged >= MIN_FLAGGED:
        return "yes (flagged)"
    beyond = []
    for name, limit in TOLERANCE.items():
        bias = _snr5(result["shift"], name, "bias")
        if bias is not None and abs(bias) > limit:
            beyond.append(name)
    return "no: " + ", ".join(beyond) if beyond else "yes"


def _low_edge(label: str) -> float:
    return float(label.strip("[").split(",")[0])


def _figure(scores: dict[str, Any], path: Path, plt: Any) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    plotted = False
    for k, (name, v) in enumerate(scores["variants"].items()):
        groups = [g for g in v["shift"]["snr"] if g["n"] >= 20 and "log_g" in g["metrics"]]
        x = [g["median_snr"] for g in groups]
        plotted = plotted or bool(x)
        style = {"ls": ("-", "--", ":")[k // 10 % 3], "marker": "."}
        axes[0].plot(x, [g["metrics"]["log_g"]["bias"] for g in groups], label=name, **style)
        rates = [v["rates"][g["bin"]]["unflagged"] for g in groups]
        axes[1].plot(x, rates, label=name, **style)
    axes[0].axhline(0, color="k", lw=0.5)
    axes[0].set_ylabel("log g shift among unflagged stars (dex)")
    axes[1].set_ylabel("fraction unflagged")
    for ax in axes:
        if plotted:  # bins of ≥ 20 stars only: a tiny set may have none
            ax.set_xscale("log")
        ax.set_xlabel("S/N (median flux/σ of the reference spectrum)")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
