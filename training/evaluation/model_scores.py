"""A SpecViT model on an evaluation set: its predictions, their score, and the score as Markdown.

:func:`predict_eval_set` runs the spectra of an evaluation-set file
(:func:`training.evaluation.eval_sets.read_eval_set`) through :func:`specvit.predict`, the path
users run (:func:`eval_set_table`, whose table :func:`table_labels` reads, and
:func:`exact_summary` for exact mode's effective sample sizes); :func:`score_eval_set` scores them
with :func:`training.evaluation.scoring.score` against the Bayes-optimal answers of the same stars;
:func:`score_tables` writes one Markdown table per label (overall and per SNR bin: R², MAE, RMSE,
bias, Bayes-optimal R², efficiency and σ coverage) and :func:`summary_table` one table of every
label's efficiency and coverage per SNR bin. The design study, the report of
``training/evaluation/compare.py`` and the model card of ``training/publish.py`` all go through
here.

As a script it scores training checkpoints (their raw or EMA weights) on an evaluation
validation set and prints the efficiency per label, and per SNR bin for log g::

    python training/evaluation/model_scores.py runs/default/checkpoints/step_*.pt --weights model
"""

from __future__ import annotations

from typing import Any

import numpy as np
from astropy.table import Table

import specvit
from specvit.inference.flags import PredictFlag
from specvit.labels import LABEL_NAMES
from training.evaluation.scoring import score

__all__ = [
    "eval_set_table",
    "exact_summary",
    "format_number",
    "predict_eval_set",
    "score_eval_set",
    "score_tables",
    "summary_table",
    "table_labels",
]


def eval_set_table(model: specvit.SpecViT, bench: dict[str, Any], *, exact: bool = False) -> Table:
    """:func:`specvit.predict`'s table for the spectra of an evaluation set.

    Parameters
    ----------
    model : specvit.SpecViT
        A model predicting some of the evaluation sets' labels (T_eff, log_g, M_H).
    bench : dict
        :func:`training.evaluation.eval_sets.read_eval_set` with the spectra.
    exact : bool
        Predict in exact mode (``specvit.predict(exact=True)``: the posterior under the
        emulator, with the network's answer as proposal).

    Returns
    -------
    astropy.table.Table
        One row per spectrum, without the physical context (it is not scored).

    Raises
    ------
    ValueError
        If the model predicts a label the evaluation set does not hold.
    """
    unknown = sorted(set(model.config.label_names) - set(LABEL_NAMES))
    if unknown:
        raise ValueError(f"the evaluation sets hold {LABEL_NAMES}, not {unknown}")
    return specvit.predict(
        bench["flux"],
        bench["error"],
        model=model.eval(),
        device="cpu",
        physics=False,
        exact=exact,
    )


def table_labels(model: specvit.SpecViT, table: Table) -> tuple[np.ndarray, np.ndarray | None]:
    """``(N, P)`` predicted means and σ of a :func:`specvit.predict` table of ``model`` (σ with
    the model's calibration; None for a point head), columns in the model's label order."""
    labels = model.config.label_names
    mean = np.column_stack([np.asarray(table[n], dtype=np.float64) for n in labels])
    if model.config.head != "gaussian":
        return mean, None
    return mean, np.column_stack([np.asarray(table[f"{n}_err"], dtype=np.float64) for n in labels])


def exact_summary(table: Table) -> dict[str, float]:
    """The effective sample sizes of an exact-mode table: their median and 5th percentile over
    the spectra that have one (``predict`` leaves a spectrum it cannot read without: NaN), and
    the fraction of all the spectra flagged ``LOW_ESS``.

    Raises
    ------
    ValueError
        For a table without an ``ess`` column (not exact mode's) or without a spectrum that has
        an effective sample size.
    """
    if "ess" not in table.colnames:
        raise ValueError("exact_summary needs an exact-mode table: it has no 'ess' column")
    ess = np.asarray(table["ess"], dtype=np.float64)
    if not np.isfinite(ess).any():
        raise ValueError("no spectrum of the table has an effective sample size")
    low = (np.asarray(table["flags"]) & int(PredictFlag.LOW_ESS)) != 0
    return {
        "ess_median": float(np.nanmedian(ess)),
        "ess_p5": float(np.nanquantile(ess, 0.05)),
        "low_ess_fraction": float(low.mean()),
    }


def predict_eval_set(
    model: specvit.SpecViT, bench: dict[str, Any], *, exact: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """Predicted means and σ of ``model`` for the spectra of an evaluation set
    (:func:`table_labels` of :func:`eval_set_table`; the same arguments and errors)."""
    return table_labels(model, eval_set_table(model, bench, exact=exact))


def score_eval_set(model: specvit.SpecViT, bench: dict[str, Any]) -> dict[str, Any]:
    """:func:`training.evaluation.scoring.score` of ``model`` on an evaluation set, with the
    posterior's means and σ of the same stars and labels."""
    mean, sigma = predict_eval_set(model, bench)
    cols = [LABEL_NAMES.index(n) for n in model.config.label_names]
    return score(
        bench["labels"][:, cols],
        mean,
        bench["snr"],
        model.config.label_names,
        sigma=sigma,
        bayes_mean=bench["posterior_mean"][:, cols],
        bayes_sigma=bench["posterior_std"][:, cols],
    )


def format_number(value: float | None, digits: int = 3) -> str:
    """``value`` to ``digits`` decimals, ``–`` for None or NaN, never ``-0``."""
    if value is None or value != value:  # None or NaN
        return "–"
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0"


#: Columns of :func:`score_tables`: (header, metric key, digits for T_eff, for the others).
_COLUMNS = (
    ("R²", "r2", 3, 3),
    ("MAE", "mae", 0, 3),
    ("RMSE", "rmse", 0, 3),
    ("bias", "bias", 0, 3),
    ("Bayes R²", "bayes_r2", 3, 3),
    ("efficiency", "efficiency", 3, 3),
    ("1σ cov.", "coverage_1sigma", 2, 2),
    ("2σ cov.", "coverage_2sigma", 2, 2),
    ("posterior 1σ cov.", "bayes_coverage_1sigma", 2, 2),
    ("posterior 2σ cov.", "bayes_coverage_2sigma", 2, 2),
)


#: The coverage keys of :func:`summary_table`.
_COVERAGE = ("coverage_1sigma", "coverage_2sigma")


def score_tables(result: dict[str, Any]) -> str:
    """One Markdown table per label of a :func:`training.evaluation.scoring.score` result.

    Rows: all stars, then each SNR bin (empty bins left out); columns: N, R², MAE, RMSE, bias
    (the label's unit), the Bayes-optimal R², the efficiency R² / Bayes-optimal R², and the
    fraction of stars within 1σ and 2σ of the prediction and of the posterior mean.
    """
    groups = [("all", result["overall"])] + [(g["bin"], g) for g in result["snr"] if g["n"]]
    out = []
    for name in result["labels"]:
        unit = result["units"][name]
        head = ["S/N", "N"] + [
            f"{h} ({unit})" if key in ("mae", "rmse", "bias") else h for h, key, _, _ in _COLUMNS
        ]
        lines = [f"**{name}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for label, group in groups:
            m = group["metrics"][name]
            cells = [
                format_number(m.get(key), teff if name == "T_eff" else other)
                for _, key, teff, other in _COLUMNS
            ]
            lines.append(f"| {label} | {group['n']} | " + " | ".join(cells) + " |")
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def summary_table(result: dict[str, Any]) -> str:
    """One Markdown table of every label's efficiency and σ coverage per SNR bin.

    Columns: all stars, then each non-empty SNR bin of a :func:`training.evaluation.scoring.score`
    result; rows: each label's efficiency (R² / Bayes-optimal R²), then each label's 1σ / 2σ
    coverage (left out for a point head, which predicts no σ).
    """
    groups = [result["overall"]] + [g for g in result["snr"] if g["n"]]
    lines = [
        "| | all | " + " | ".join(g["bin"] for g in groups[1:]) + " |",
        "|---" * (len(groups) + 1) + "|",
    ]
    for name in result["labels"]:
        cells = [format_number(g["metrics"][name].get("efficiency"), 3) for g in groups]
        lines.append(f"| {name} efficiency | " + " | ".join(cells) + " |")
    for name in result["labels"]:
        if result["overall"]["metrics"][name].get(_COVERAGE[0]) is None:
            continue
        cells = [
            " / ".join(format_number(g["metrics"][name].get(k), 2) for k in _COVERAGE)
            for g in groups
        ]
        lines.append(f"| {name} 1σ / 2σ coverage | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
