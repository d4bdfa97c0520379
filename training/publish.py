"""Turn a training checkpoint into a Hub-ready model folder, and push it when asked.

The command is ``python -m training publish`` (:mod:`training.cli.publish`). The folder holds
``model.safetensors`` and ``config.json`` (as written by :meth:`specvit.SpecViT.save_pretrained`, so
:func:`specvit.load` reads it: only what prediction needs), ``training_args.json`` (the run's
record: its config, the step and the validation metrics, strict JSON with ``null`` for undefined
metrics) and a model card ``README.md`` describing the input the model expects, the training data
and recipe, and the validation metrics overall and per S/N bin.

A Gaussian head's σ is calibrated on ``--calibration-spectra`` (default 60 000) fresh spectra
of the run's training distribution (:func:`calibrate`: per label a table of factors over S/N,
stored in ``config.json``, so :func:`specvit.predict` applies them). With ``--test-mag LOW
HIGH`` (repeatable) the calibrated model is scored on the test sets of those HSC-i
ranges (:mod:`training.evaluation.eval_sets`; generated first when not cached): R², MAE, RMSE, bias,
efficiency against the Bayes-optimal R² and σ coverage, overall and per S/N bin, into the model
card and ``training_args.json``; ``--report FILE`` writes the same tables as a docs page.
With ``--repo-id`` the folder is uploaded as one commit to that Hub repo (``HF_TOKEN`` or
``--token`` authenticates; ``HF_ENDPOINT`` selects another Hub server).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from huggingface_hub import HfApi, ModelCard

import specvit
from specvit.config import SpecViTConfig
from specvit.emulator import Emulator
from specvit.instrument import PFSNoiseModel
from specvit.labels import LABEL_NAMES, LABEL_UNITS
from specvit.models.specvit import SpecViT
from specvit.preprocessing import median_snr
from training.engine.effects import Effects
from training.engine.seeding import BENCHMARK_CALIBRATION_SEEDS, CALIBRATION_SEED
from training.engine.simulate import DEFAULT_MAG, Prior, Simulator
from training.engine.sources import EngineSource
from training.evaluation.calibration import fit_sigma_snr_calibration
from training.evaluation.eval_sets import DEFAULT_N, EvalSetSettings, ensure, read_eval_set
from training.evaluation.model_scores import (
    format_number,
    predict_eval_set,
    score_eval_set,
    score_tables,
    summary_table,
)
from training.evaluation.realism import select_variants, simulate
from training.evaluation.scoring import strict_json
from training.evaluation.sigma_network import refit_sigma
from training.paths import DEFAULT_ETC_DIR
from training.trainer.checkpoint import load_checkpoint
from training.trainer.config import RunConfig, rename_keys

__all__ = [
    "TRAINING_ARGS_NAME",
    "benchmark_calibration_sets",
    "calibrate",
    "calibration_set",
    "eval_set_test_file",
    "model_card",
    "publish",
    "push",
    "training_record",
    "uncalibrated",
    "unflagged",
    "write_model_folder",
]

#: File name of the training run's record in a published model folder.
TRAINING_ARGS_NAME = "training_args.json"


def _metrics_tables(metrics: dict[str, Any], labels: tuple[str, ...]) -> str:
    if not metrics:
        return "No validation metrics were recorded in this checkpoint.\n"
    if "overall" not in metrics:
        return "The validation metrics of this checkpoint are in an older format.\n"
    lines = [
        "| S/N bin | N | " + " | ".join(f"R² {n} | MAE {n} | RMSE {n}" for n in labels) + " |",
        "|---|---|" + "---|---|---|" * len(labels),
    ]
    for name, group in [("all", metrics["overall"]), *((g["bin"], g) for g in metrics["snr"])]:
        cells = " | ".join(
            " | ".join(format_number(group["metrics"][n][k]) for k in ("r2", "mae", "rmse"))
            for n in labels
        )
        lines.append(f"| {name} | {group['n']} | {cells} |")
    units = ", ".join(f"{n} in {LABEL_UNITS[n]}" for n in labels)
    return "\n".join(lines) + f"\n\nMAE and RMSE: {units}.\n"


def _setting(value: Any) -> str:
    """An effect's setting as the model card shows it: a uniform prior as ``low–high``."""
    if isinstance(value, dict) and value.get("kind") == "uniform":
        return f"{value['low']:g}–{value['high']:g}"
    if isinstance(value, dict) and value.get("kind") == "fixed":
        return f"{value['value']:g}"
    if isinstance(value, list | tuple):
        return "/".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _data_description(run: dict[str, Any]) -> str:
    data, train = run["data"], run["train"]
    if data["source"] == "engine":
        overrides = ", ".join(f"{k} {v}" for k, v in data["prior"].items())
        prior = "the engine's default prior" + (f" (with {overrides})" if overrides else "")
        text = (
            "Simulated Subaru PFS medium-resolution spectra (4096 pixels, 7100–8850 Å) from "
            "specvit's data engine (`training.engine.simulate`): a polynomial spectral emulator, "
            "the MR line-spread function and the PFS exposure-time-calculator noise model. "
            f"Labels drawn from {prior}. Every training step drew fresh spectra and fresh noise; "
            f"an epoch was {data['n_train']} spectra."
        )
        effects = Effects.from_dict(data.get("effects"))
        if effects.enabled:
            listed = "; ".join(
                f"`{name}` ({', '.join(f'{k} {_setting(v)}' for k, v in effect.to_dict().items())})"
                for name, effect in effects.effects.items()
            )
            clean = (
                f"; {effects.clean_fraction:.0%} of the spectra drawn with none of them"
                if effects.clean_fraction
                else ""
            )
            text += (
                " Real-data effects drawn per star (`training.engine.effects`, sources in "
                f"docs/data_engine.md): {listed}{clean}."
            )
    else:
        text = (
            f"HDF5 shards `{data['train_path']}` (validation `{data['val_path']}`), with fresh "
            "noise x + noise_level·ε⊙σ drawn every step."
        )
    return (
        f"{text} Noise level {data['noise_level']}; validation on {data['n_val']} spectra with one "
        f"fixed noise draw. {train['epochs']} epochs, batch {train['batch_size']}."
    )


def training_record(state: dict[str, Any]) -> dict[str, Any]:
    """The run's record in a checkpoint: ``run_config``, ``step`` and ``validation`` metrics."""
    return {
        "run_config": state["run_config"],
        "step": int(state["step"]),
        "validation": state.get("val_metrics") or {},
    }


def calibrate(model: SpecViT, benches: list[dict[str, Any]]) -> tuple[SpecViT, dict[str, Any]]:
    """Calibrate the predicted σ of ``model`` on sets of spectra with known labels.

    Per label a table of factors over S/N
    (:func:`training.evaluation.calibration.fit_sigma_snr_calibration` on all the sets' stars
    together) makes 68.3 % of the stars fall within 1σ at every S/N; it is stored as the config's
    ``sigma_snr_knots`` and ``sigma_snr_factors``, which :meth:`SpecViT.to_physical` (so
    :func:`specvit.predict`) applies. Any calibration the model already has is replaced (the fit
    starts from the head's own σ).

    Parameters
    ----------
    model : SpecViT
        A model with a Gaussian head.
    benches : list of dict
        Sets of spectra with ``labels`` (N, 3) in :data:`~specvit.labels.LABEL_NAMES` order,
        ``flux``, ``error``, ``snr`` and a ``name`` (:func:`calibration_set`, or an evaluation
        file's :func:`training.evaluation.eval_sets.read_eval_set` with its file name).

    Returns
    -------
    model : SpecViT
        A new model with the same weights and the fitted calibration.
    record : dict
        ``{"sets", "n", "n_without_labels", "sigma_snr_knots", "sigma_snr_factors",
        "raw_coverage_1sigma", "raw_coverage_2sigma"}`` (``n``: the stars with labels; the
        coverages of the head's own σ, per label) for ``training_args.json``.

    Raises
    ------
    ValueError
        For a point-head model or no sets.
    """
    if model.config.head != "gaussian":
        raise ValueError(f"only a Gaussian head predicts σ to calibrate, not {model.config.head!r}")
    if not benches:
        raise ValueError("calibrating σ needs at least one set of spectra")
    raw = uncalibrated(model)
    names = raw.config.label_names
    cols = [LABEL_NAMES.index(n) for n in names]
    true = np.concatenate([b["labels"][:, cols] for b in benches])
    snr = np.concatenate([b["snr"] for b in benches])
    predictions = [predict_eval_set(raw, b) for b in benches]
    mean = np.concatenate([p[0] for p in predictions])
    sigma = np.concatenate([p[1] for p in predictions])
    # spectra predict leaves without labels (a no-result flag) calibrate nothing
    labelled = np.isfinite(mean).all(1) & np.isfinite(sigma).all(1)
    true, mean, sigma, snr = true[labelled], mean[labelled], sigma[labelled], snr[labelled]
    knots, factors = fit_sigma_snr_calibration(true, mean, sigma, snr)
    calibrated = _with_config(raw, sigma_snr_knots=knots, sigma_snr_factors=factors)
    inside = np.abs(true - mean) / sigma
    record = {
        "sets": [b["name"] for b in benches],
        "n": len(true),
        "n_without_labels": int((~labelled).sum()),
        "sigma_snr_knots": list(knots),
        "sigma_snr_factors": {n: list(row) for n, row in zip(names, factors, strict=True)},
        "raw_coverage_1sigma": dict(zip(names, (inside < 1).mean(0).tolist(), strict=True)),
        "raw_coverage_2sigma": dict(zip(names, (inside < 2).mean(0).tolist(), strict=True)),
    }
    return calibrated, record


def uncalibrated(model: SpecViT) -> SpecViT:
    """A copy of ``model`` without its σ calibration: σ as its head gives them."""
    return _with_config(model, sigma_scale=(), sigma_snr_knots=(), sigma_snr_factors=())


def _with_config(model: SpecViT, **changes: Any) -> SpecViT:
    """A copy of ``model`` (same weights, eval mode) with config fields changed."""
    out = SpecViT(model.config.replace(**changes))
    out.load_state_dict(model.state_dict())
    return out.eval()


def calibration_set(run: dict[str, Any], n: int, effects: Effects | None = None) -> dict[str, Any]:
    """``n`` fresh spectra of an engine run's training distribution (its prior and noise),
    drawn with :data:`training.engine.seeding.CALIBRATION_SEED`: never trained on, never a test set.
    With ``effects``, those real-data effects instead of the run's.

    Returns
    -------
    dict
        ``labels``, ``flux``, ``error``, ``snr`` (numpy) and ``name``, as :func:`calibrate`
        takes them.

    Raises
    ------
    ValueError
        For a run that did not train on the engine.
    """
    if run["data"]["source"] != "engine":
        raise ValueError("calibration spectra are drawn from the engine: not an engine run")
    simulator = EngineSource(RunConfig.from_dict(run)).simulator
    if effects is not None:
        simulator = simulator.with_effects(effects)
    drawn = "" if effects is None else f" with the effects {effects!r}"
    name = f"{n} fresh engine spectra of the run's prior{drawn} (seed {CALIBRATION_SEED})"
    return _spectra(simulator.sample_fixed(n, CALIBRATION_SEED), name)


def benchmark_calibration_sets(
    n: int, etc_dir: str | Path = DEFAULT_ETC_DIR
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fresh spectra of the two distributions the project judges σ on, never their stars.

    ``n`` spectra of the faint ideal test set's distribution (HSC-i 20.5–22.5, at rest, no
    real-data effect: :mod:`training.evaluation.eval_sets`) and ``n // 2`` of the mixed realism
    set's (HSC-i 18.5–22.5, −300…+300 km/s, every effect from its prior:
    :func:`training.evaluation.realism.simulate`), drawn with
    :data:`training.engine.seeding.BENCHMARK_CALIBRATION_SEEDS` and the ETC noise both sets have.

    Returns
    -------
    ideal, mixed : dict
        As :func:`calibration_set` returns them.

    Raises
    ------
    ValueError
        If ``n`` < 2.
    FileNotFoundError
        If ``etc_dir`` holds no PFS ETC tables.
    """
    if n < 2:
        raise ValueError(f"need n >= 2 benchmark calibration spectra, got {n}")
    noise = PFSNoiseModel.from_etc(etc_dir)
    emulator = Emulator.load()
    seed_ideal, seed_mixed = BENCHMARK_CALIBRATION_SEEDS
    ideal = Simulator(emulator=emulator, noise=noise, prior=Prior(mag=DEFAULT_MAG))
    (mixed,) = select_variants(["mixed"])
    return (
        _spectra(
            ideal.sample_fixed(n, seed_ideal),
            f"{n} fresh spectra of the faint ideal test set's distribution (seed {seed_ideal})",
        ),
        _spectra(
            simulate(mixed, n // 2, noise, emulator, seed_mixed),
            f"{n // 2} fresh spectra of the mixed realism set's distribution (seed {seed_mixed})",
        ),
    )


def _spectra(draw: dict[str, torch.Tensor], name: str) -> dict[str, Any]:
    """A calibration set (numpy ``labels``, ``flux``, ``error``, float64 ``snr``, ``name``)
    from :meth:`~training.engine.simulate.Simulator.sample_fixed`'s tensors."""
    out = {k: draw[k].numpy() for k in ("labels", "flux", "error")}
    out["snr"] = draw["snr"].numpy().astype(np.float64)
    out["name"] = name
    return out


def unflagged(model: SpecViT, bench: dict[str, Any]) -> dict[str, Any]:
    """The stars of ``bench`` (:func:`calibration_set`) that ``specvit.predict`` with ``model``
    leaves unflagged (no bit but ``LOW_SNR``): the σ of the labels users keep."""
    table = specvit.predict(bench["flux"], bench["error"], model=model)
    flags = np.asarray(table["flags"], dtype=np.int64)
    keep = (flags & ~int(specvit.PredictFlag.LOW_SNR)) == 0
    out = {k: v[keep] for k, v in bench.items() if isinstance(v, np.ndarray)}
    out["name"] = f"{bench['name']}, the {int(keep.sum())} left unflagged"
    return out


def _snr_range(run: dict[str, Any], n: int = 2048) -> tuple[float, float] | None:
    """1st–99th percentile S/N of ``n`` spectra of an engine run's training distribution."""
    if run["data"]["source"] != "engine":
        return None
    draw = EngineSource(RunConfig.from_dict(run)).train_batch(0, 0, 1, n)
    low, high = np.percentile(median_snr(draw["flux"], draw["error"]).numpy(), [1, 99])
    return float(low), float(high)


def _input_section(config: SpecViTConfig, record: dict[str, Any]) -> str:
    """What the model expects: grid, frame, labels, magnitudes and S/N it was trained on."""
    domain = config.domain
    grid = (
        f"* PFS MR spectra on (or resampled to) {config.wave_start:g}–{config.wave_stop:g} Å, "
        f"{config.input_length} pixels, {config.wave_medium} wavelengths"
    )
    if config.rest_frame:
        moving = (
            ""
            if domain is None
            else f" (trained on stars at {domain.rv[0]:g}…{domain.rv[1]:g} km/s)"
        )
        grid += (
            f", in the observed frame{moving}: each spectrum's velocity is measured "
            "(`v_rad`, `v_rad_err`) or taken from `rv=`, and the spectrum shifted to its rest "
            "frame (`specvit.velocity`)"
        )
    else:
        grid += ", in the star's rest frame (shift observed spectra to the rest frame first)"
    lines = [
        grid + "; `specvit.predict` resamples other grids and converts air to vacuum. With their "
        "1σ errors."
    ]
    if config.input_norm == "continuum":
        lines.append(
            f"* Any flux unit or convention (f_ν, f_λ, photons, continuum-normalised): the input "
            f"is the flux over a weighted Legendre fit of order {config.continuum_order} to it "
            "(`specvit.continuum`), blind to a smooth multiplicative curve such as a flux "
            "calibration error or reddening."
        )
    if domain is not None and domain.sigma_scale != (1.0, 1.0):
        lines.append(
            f"* Trained on reported σ off by a factor {domain.sigma_scale[0]:g}–"
            f"{domain.sigma_scale[1]:g}; the χ² test allows σ too small by up to that."
        )
    if domain is not None:
        box = ", ".join(
            f"{n} {domain.labels[n][0]:g}…{domain.labels[n][1]:g} {LABEL_UNITS[n]}"
            for n in LABEL_NAMES
            if n in domain.labels
        )
        lines.append(f"* Labels trained on: {box}.")
        if domain.mag is not None:
            lines.append(f"* HSC-i magnitudes trained on: {domain.mag[0]:g}–{domain.mag[1]:g}.")
    snr = record.get("snr_range")
    if snr is not None:
        lines.append(
            f"* S/N (median flux/σ per pixel) of its training spectra: {snr[0]:.1f}–{snr[1]:.1f} "
            "(1st–99th percentile)."
        )
    return "\n".join(lines) + "\n"


def _warm_start(train: dict[str, Any]) -> str:
    """The card's sentence on the weights a run started from (``train.init_from``), if any."""
    init = train.get("init_from")
    return f"Started from the weights of `{init}` (`train.init_from`). " if init else ""


def _use_section(config: SpecViTConfig) -> str:
    """Which kind of model to use when: one that reads the continuum's shape or one blind to it."""
    if config.input_norm == "continuum":
        return (
            "\n## When to use it\n\nFor spectra as surveys deliver them: in the observed frame, "
            "in any flux convention, with flux-calibration errors of several per cent and "
            "reddening. It is blind to the continuum's smooth shape, so a smooth multiplicative "
            "error moves its labels little; the price is the information that shape carries "
            "(at low S/N most of T_eff's and much of log g's: docs/research/observed_model.md); "
            "`exact=True` wins much of it back where the emulator describes the star (the "
            "posterior with the continuum marginalised: docs/predict.md). "
            "For rest-frame f_ν spectra calibrated to well under a per cent and unreddened, a "
            "model that reads the continuum (`input_norm` `median`, e.g. the bundled "
            "`specvit-tiny-pfs`) is more precise.\n"
        )
    if config.input_norm == "median":
        return (
            "\n## When to use it\n\nFor rest-frame f_ν spectra whose flux calibration is good "
            "to well under a per cent and that are not reddened: it reads the continuum's shape, "
            "which carries most of T_eff's information at low S/N. A few per cent of calibration "
            "error or an E(B−V) of a few tenths move its labels by hundreds of K "
            "(docs/results/realism.md); for such spectra, and for observed-frame ones, use a "
            "model blind to the continuum (`input_norm` `continuum`, e.g. the bundled default "
            "`specvit-tiny-pfs-observed`).\n"
        )
    return ""


def _calibration_section(record: dict[str, Any]) -> str:
    cal = record.get("calibration")
    if not cal:
        return ""
    names = [n for n in LABEL_NAMES if n in cal["sigma_snr_factors"]]
    rows = [
        f"| {snr:.1f} | "
        + " | ".join(f"{cal['sigma_snr_factors'][n][k]:.3f}" for n in names)
        + " |"
        for k, snr in enumerate(cal["sigma_snr_knots"])
    ]
    raw = ", ".join(
        f"{n} {cal['raw_coverage_1sigma'][n]:.2f} / {cal['raw_coverage_2sigma'][n]:.2f}"
        for n in names
    )
    table = "\n".join([f"| S/N | {' | '.join(names)} |", "|---" * (len(names) + 1) + "|", *rows])
    net = record.get("sigma_network")
    refit = ""
    if net:
        nll = ", ".join(
            f"{n} {net['nll_before'][n]:+.3f} → {net['nll_after'][n]:+.3f}" for n in names
        )
        refit = f"""
Before it, the head's σ were replaced by a σ network (`sigma_hidden: {net["hidden"]}`: Linear →
GELU → Linear of the pooled features, `training.evaluation.sigma_network`) fitted by the
Gaussian likelihood of the model's residuals on the same {net["n"]} stars, the means held fixed
(mean negative log-likelihood per star, normalised units: {nll}); "the head's own σ" below are
that network's.
"""
    return f"""
## σ calibration
{refit}
The head's σ are multiplied by a factor per label that depends on the spectrum's median S/N:
linear in ln S/N between the knots below, the end factor beyond them (`sigma_snr_knots` and
`sigma_snr_factors` in `config.json`, applied by `specvit.predict`). The factor at each knot is
the 68.3 % quantile of |y − ŷ| / σ of the stars in one of {len(rows)} S/N bins of equal counts
(`training.evaluation.calibration`), on {"; ".join(cal["sets"])}. The head's own σ put these
fractions within 1σ / 2σ: {raw}.

{table}
"""


def scores_section(record: dict[str, Any]) -> str:
    """Markdown: the calibrated model's score on each test set of ``record``."""
    parts = []
    for name, entry in record.get("test_sets", {}).items():
        s = entry["settings"]
        parts.append(
            f"### Test set `{name}`\n\n{s['n']} engine spectra, HSC-i {s['mag'][0]:g}–"
            f"{s['mag'][1]:g}, {s['n_exposures']} × 900 s, PFS ETC noise, default label prior; "
            f"S/N {entry['snr_range'][0]:.1f}–{entry['snr_range'][1]:.1f} (1st–99th "
            "percentile). Bayes R²: the R² of the posterior means of the same stars "
            "(`training.evaluation.eval_sets`); efficiency = R² / Bayes R².\n\n"
            + summary_table(entry["score"])
            + "\n"
            + score_tables(entry["score"])
        )
    if not parts:
        return ""
    return (
        "\n## Test sets\n\nS/N bins `[low, high)` of the median flux/σ "
        "(`training.evaluation.scoring`); "
        "MAE, RMSE and bias in K (T_eff) and dex (log g, [M/H]); coverage: the fraction of stars "
        "within 1σ / 2σ of the prediction (0.683 / 0.954 for calibrated Gaussian errors) and of "
        "the posterior mean with its own σ.\n\n" + "\n".join(parts)
    )


_WEIGHTS = {"ema": "the EMA average", "model": "the weights at this step (not the EMA average)"}


def model_card(model: SpecViT, record: dict[str, Any]) -> ModelCard:
    """The model card: the model's own card plus the training data, recipe and metrics."""
    config = model.config
    run, step = record["run_config"], record["step"]
    optim, train = run["optim"], run["train"]
    labels = config.label_names
    norm = ", ".join(
        f"{n}: shift {s:.6g}, scale {c:.6g}"
        for n, s, c in zip(labels, config.label_shift, config.label_scale, strict=True)
    )
    published = _WEIGHTS[record.get("weights", "ema" if train["ema_decay"] else "model")]
    training = f"""
## Input

{_input_section(config, record)}
Input normalisation `{config.input_norm}`; label normalisation `physical = shift + scale · output`
({norm}).
{_use_section(config)}
## Training data

{_data_description(run)}

## Training recipe

Step {step} of the run; loss `{train["loss"]}` on {run["label_norm"]}-normalised labels,
AdamW (lr {optim["lr"]}, weight decay {optim["weight_decay"]}, betas {optim["betas"]}),
{optim.get("schedule", "cosine")} schedule (to {optim["eta_min"]} for a cosine) with
{optim["warmup_steps"]} warm-up steps, gradient clip
{optim["clip_grad_norm"]}, precision {train["precision"]}, seed {run["seed"]}, EMA decay
{train["ema_decay"]}, σ's loss trains the {train.get("sigma_grad", "encoder")} (`train.sigma_grad`).
{_warm_start(train)}Published weights: {published}.

## Validation metrics

{_metrics_tables(record["validation"].get("metrics", {}), labels)}
S/N is the median over pixels of flux/σ; bins `[low, high)` with the edges 2, 3, 4, 5, 7, 10,
15, ∞ (`training/evaluation/scoring.py`).
{_calibration_section(record)}{scores_section(record)}
## Limitations

Trained on simulated spectra only; the emulator, its label ranges and the noise model bound what
the model has seen. Check it on real spectra before trusting it there.
"""
    heading = f"SpecViT ({run['model']['preset']}): {', '.join(labels)} from PFS MR spectra"
    return model.generate_model_card(heading=heading, training=training)


def write_model_folder(model: SpecViT, record: dict[str, Any], out_dir: str | Path) -> Path:
    """Write ``model`` with its training ``record`` as a Hub-ready folder (see the module doc).

    Parameters
    ----------
    model : SpecViT
        The weights and config to publish.
    record : dict
        :func:`training_record` of the run.
    out_dir : str or pathlib.Path
        Destination folder (created; files of the same names are replaced).

    Returns
    -------
    pathlib.Path
        The folder written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_card(model, record).save(out / "README.md")
    model.save_pretrained(out)
    text = json.dumps(strict_json(record), indent=2, sort_keys=True, allow_nan=False)
    (out / TRAINING_ARGS_NAME).write_text(text + "\n", encoding="utf-8")
    return out


def eval_set_test_file(mag: tuple[float, float], etc_dir: str | Path) -> Path:
    """The test file of the evaluation sets of HSC-i ``mag`` (at its default size; generated
    first when not cached)."""
    return ensure(EvalSetSettings("test", DEFAULT_N["test"], mag=tuple(mag)), etc_dir)


def _percentiles(values: np.ndarray) -> list[float]:
    return [float(v) for v in np.percentile(values, [1, 99])]


def _load_source(source: str | Path, weights: str) -> tuple[SpecViT, dict[str, Any]]:
    """The model and its record from a checkpoint or a published folder (see :func:`publish`)."""
    folder = Path(source)
    if (folder / TRAINING_ARGS_NAME).is_file():  # a published folder: its weights, its record
        record = json.loads((folder / TRAINING_ARGS_NAME).read_text(encoding="utf-8"))
        for key in ("test_sets", "benchmarks"):  # scored again below ("benchmarks": the old name)
            record.pop(key, None)
        record["run_config"] = rename_keys(record["run_config"])
        return specvit.load(folder), record
    state = load_checkpoint(folder)
    config = SpecViTConfig.from_dict(state["model_config"])
    run = rename_keys(state["run_config"])
    if run["data"]["source"] == "engine":  # the domain as the trainer builds it today
        try:
            config = config.replace(domain=EngineSource(RunConfig.from_dict(run)).domain())
        except FileNotFoundError as exc:  # the run's ETC tables are not on this machine
            print(f"the checkpoint's stored training domain is kept: {exc}", file=sys.stderr)
    model = SpecViT(config)
    if weights == "ema" and state.get("ema") is None:
        weights = "model"  # the run kept no average
    model.load_state_dict(state[weights])
    return model, {**training_record(state), "weights": weights}


def publish(
    source: str | Path,
    out_dir: str | Path,
    repo_id: str | None = None,
    *,
    calibration_spectra: int = 0,
    calibration_effects: Effects | None = None,
    benchmark_spectra: int = 0,
    sigma_hidden: int = 0,
    test_sets: Sequence[str | Path] = (),
    report: str | Path | None = None,
    weights: str = "ema",
    token: str | None = None,
    private: bool = False,
) -> Path:
    """Write a Hub-ready folder from a checkpoint, calibrated and scored, and optionally push it.

    Parameters
    ----------
    source : str or pathlib.Path
        A checkpoint file, a folder of checkpoints (the newest is used), or a model folder this
        function wrote (its weights, σ calibration and record, scored again: how a published
        model's tables are reproduced; ``weights`` is then the folder's).
    out_dir : str or pathlib.Path
        Destination folder (created).
    repo_id : str, optional
        Hub repo ``owner/name`` to upload the folder to (created if missing).
    calibration_spectra : int
        Calibrate σ (:func:`calibrate`; a Gaussian head of an engine run, ignored for a point
        head) on this many fresh spectra of the run's training distribution
        (:func:`calibration_set`); 0: no calibration.
    calibration_effects : Effects, optional
        The real-data effects of those spectra instead of the run's (e.g. the engine's default
        priors with half of the spectra clean: the spectra users have, and ideal ones).
    benchmark_spectra : int
        Also calibrate on this many fresh spectra of the faint ideal test set's distribution
        and half as many of the mixed realism set's (:func:`benchmark_calibration_sets`; the
        former all, the latter the unflagged, as those benchmarks score them); 0: none. Needs
        ``calibration_spectra``.
    sigma_hidden : int
        Before the calibration, replace the head's σ by a σ network of this hidden width fitted
        on the calibration spectra
        (:func:`training.evaluation.sigma_network.refit_sigma`); then both use the stars
        ``predict`` leaves unflagged (:func:`unflagged`). 0: keep the head's σ.
    test_sets : sequence of str or pathlib.Path
        Test-set files to score the (calibrated) model on, into the model card and
        ``training_args.json``.
    report : str or pathlib.Path, optional
        Also write the calibration and the test-set tables to this Markdown file (a docs page).
    weights : {"ema", "model"}
        Publish the run's EMA average of the weights (when it kept one; else the weights) or
        the weights themselves.
    token : str, optional
        Hub token (default: the ``HF_TOKEN`` environment / stored login).
    private : bool
        Create the repo as private.

    Returns
    -------
    pathlib.Path
        The folder written.
    """
    if weights not in ("ema", "model"):
        raise ValueError(f"weights must be 'ema' or 'model', got {weights!r}")
    if calibration_spectra < 0:
        raise ValueError(f"calibration_spectra must be >= 0, got {calibration_spectra}")
    if benchmark_spectra < 0 or (benchmark_spectra and not calibration_spectra):
        raise ValueError(
            f"benchmark_spectra must be >= 0 and goes with calibration spectra: got "
            f"benchmark_spectra={benchmark_spectra}, calibration_spectra={calibration_spectra}"
        )
    if sigma_hidden < 0 or (sigma_hidden and not calibration_spectra):
        raise ValueError(
            f"sigma_hidden must be >= 0, and a σ network needs calibration spectra: got "
            f"sigma_hidden={sigma_hidden}, calibration_spectra={calibration_spectra}"
        )
    model, record = _load_source(source, weights)
    if calibration_spectra and model.config.head == "gaussian":  # a point head has no σ
        spectra = calibration_set(record["run_config"], calibration_spectra, calibration_effects)
        if sigma_hidden or benchmark_spectra:
            spectra = unflagged(model, spectra)
        sets = [spectra]
        if benchmark_spectra:
            ideal, mixed = benchmark_calibration_sets(benchmark_spectra)
            sets += [ideal, unflagged(model, mixed)]
        if sigma_hidden:
            model, record["sigma_network"] = refit_sigma(model, sets, sigma_hidden)
        model, record["calibration"] = calibrate(model, sets)
        if calibration_effects is None and not sigma_hidden and not benchmark_spectra:
            record["snr_range"] = _percentiles(spectra["snr"])  # the training distribution's
    if "snr_range" not in record:
        try:
            record["snr_range"] = _snr_range(record["run_config"])
        except FileNotFoundError as exc:  # the run's ETC tables are not on this machine
            print(f"no training S/N range in the model card: {exc}", file=sys.stderr)
    if test_sets:
        record["test_sets"] = {}
        for path in test_sets:
            test = read_eval_set(path)
            record["test_sets"][Path(path).name] = {
                "settings": test["settings"],
                "snr_range": _percentiles(test["snr"]),
                "score": score_eval_set(model, test),
            }
    out = write_model_folder(model, record, out_dir)
    if report is not None:
        _write_report(Path(report), record, sys.argv, Path(out_dir).name)
    if repo_id is not None:
        push(out, repo_id, token=token, private=private, message=f"specvit step {record['step']}")
    return out


def _write_report(path: Path, record: dict[str, Any], argv: list[str], name: str) -> None:
    command = "python -m training publish " + " ".join(argv[1:])
    text = f"""<!-- generated by python -m training publish; do not edit by hand -->

# `{name}` on the evaluation sets

Written by

```bash
{command}
```

at step {record["step"]} of the run `{record["run_config"]["out_dir"]}`.
{_calibration_section(record)}{scores_section(record)}"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def push(
    folder: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    message: str = "specvit model",
) -> str:
    """Upload a model folder to a Hub repo (created if missing) as one commit.

    Parameters
    ----------
    folder : str or pathlib.Path
        The folder written by :func:`publish`.
    repo_id : str
        Hub repo ``owner/name``.
    token : str, optional
        Hub token (default: the ``HF_TOKEN`` environment / stored login).
    private : bool
        Create the repo as private.
    message : str
        The commit message.

    Returns
    -------
    str
        The commit hash: pin ``specvit.load(repo_id, revision=...)`` to it.
    """
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=message)
    print(f"pushed {folder} to {repo_id} at revision {info.oid}")
    return info.oid
