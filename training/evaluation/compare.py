"""Score every method on the test set against the Bayes-optimal ceiling; write the report.

The recipe of ``python -m training evaluate`` (:mod:`training.cli.evaluate`)::

    python -m training evaluate --baselines ridge,lightgbm,template,cannon,mlp,cnn \\
        --n-train 50000 --scaling 10000 50000 100000 --report docs/results/
    python -m training evaluate --model examples/models/specvit-tiny-engine --report docs/results/

Steps: (1) the fixed test and validation sets (:mod:`training.evaluation.eval_sets`, cached; its
settings are options here too); (2) the training spectra (:mod:`training.evaluation.baselines.data`,
one fixed stream, nested in ``n``); (3) each baseline of ``--baselines`` fitted on the first
``--n-train`` training spectra (hyper-parameters on the validation set) and its predictions on the
test set saved under ``--work`` (reused by later runs unless ``--refit``); (4) each SpecViT model
folder of ``--model`` predicted through :func:`specvit.predict` (and in its exact mode too with
``--exact``), and each saved prediction file of
``--predictions`` (``.npz`` with ``mean`` and optionally ``sigma`` (N, 3), the order of the test
file); (5) the scaling curve: every method of ``--scaling-methods`` at every ``--scaling`` size
(``specvit``: ``python -m training train`` with ``--specvit-preset`` for ``--specvit-steps``
steps on the noiseless spectra with fresh noise each step); (6) every method scored by
:func:`training.evaluation.scoring.score` (with the posterior means and σ of the same stars) into
``<work>/scores.json``, and a summary printed.

Only with ``--report DIR`` are files outside ``--work`` written: ``DIR/index.md`` (Markdown
tables) and its PNG figures (R² vs SNR with the Bayes-optimal and CRLB curves, efficiency vs
SNR, the scaling curve, residual maps over (T_eff, log g) and (SNR, log g), σ calibration).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from specvit.labels import LABEL_NAMES
from training.engine.simulate import DEFAULT_MAG
from training.evaluation.baselines import BASELINES, default_block, make
from training.evaluation.baselines.data import draw_features, write_shard
from training.evaluation.baselines.features import Features, features
from training.evaluation.eval_sets import (
    DEFAULT_N,
    EvalSetSettings,
    ensure,
    read_eval_set,
)
from training.evaluation.model_scores import (
    eval_set_table,
    exact_summary,
    format_number,
    predict_eval_set,
    table_labels,
)
from training.evaluation.scoring import SNR_BIN_EDGES, bin_label, score
from training.paths import DEFAULT_ETC_DIR as DEFAULT_ETC
from training.paths import REPO_ROOT

__all__ = ["crlb_r2", "load_predictions", "parser", "run", "summary_table", "write_report"]

LABELS = LABEL_NAMES
BAYES = "Bayes-optimal"


def crlb_r2(crlb: np.ndarray, true: np.ndarray) -> tuple[float | None, float | None]:
    """Median and population CRLB R²_max of a group of stars (:class:`specvit.bounds.Ceilings`).

    ``Var`` is the variance of the group's true labels: median over stars of
    ``1 − min(CRLB, Var)/Var``, and ``1 − mean(min(CRLB, Var))/Var``.
    """
    if len(true) < 2 or not true.var() > 0:
        return None, None
    var = float(true.var())
    capped = np.minimum(crlb, var)
    return float(np.median(1 - capped / var)), float(1 - capped.mean() / var)


# ---------------------------------------------------------------------------------- methods
def _save(path: Path, mean: np.ndarray, sigma: np.ndarray | None, meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"mean": mean} if sigma is None else {"mean": mean, "sigma": sigma}
    tmp = path.with_name(path.name + ".partial.npz")
    np.savez(tmp, **arrays, meta=json.dumps(meta))
    tmp.replace(path)


def load_predictions(path: str | Path, n: int) -> dict[str, Any]:
    """A saved prediction file: ``mean`` (n, 3), ``sigma`` or None, ``meta`` (dict)."""
    with np.load(path) as f:
        mean = f["mean"].astype(np.float64)
        sigma = f["sigma"].astype(np.float64) if "sigma" in f else None
        meta = json.loads(str(f["meta"])) if "meta" in f else {"method": Path(path).stem}
    if mean.shape != (n, 3) or (sigma is not None and sigma.shape != (n, 3)):
        raise ValueError(f"{path}: predictions must be ({n}, 3) in the test file's order")
    return {"mean": mean, "sigma": sigma, "meta": meta}


def _fit_baseline(name, train, val, test, options) -> tuple[np.ndarray, Any, dict[str, Any]]:
    model = make(name, **options.get(name, {}))
    t0 = time.process_time()
    model.fit(train[model.block], val[model.block])
    t1 = time.process_time()
    mean, sigma = model.predict(test[model.block])
    t2 = time.process_time()
    meta = {
        "method": name,
        "n_train": len(train[model.block]),
        "block": model.block,
        "fit_cpu_s": round(t1 - t0, 1),
        "predict_cpu_s": round(t2 - t1, 1),
    }
    for key in ("chosen", "n_failed", "n_train_used"):
        if hasattr(model, key):
            meta[key] = getattr(model, key)
    return mean, sigma, meta


def _train_specvit(args, n: int, shard: Path, val_path: Path, out: Path) -> Path:
    """``training/train.py`` on ``shard``; returns the published model folder."""
    from training.publish import publish

    overrides = [
        f"out_dir={out}",
        "labels=[T_eff,log_g,M_H]",
        f"model.preset={args.specvit_preset}",
        "data.source=hdf5",
        f"data.train_path={shard}",
        f"data.val_path={val_path}",
        f"data.val_set={val_path}",
        "data.noise_level=1.0",
        f"data.etc_dir={args.etc_dir}",
        f"train.batch_size={args.specvit_batch}",
        f"train.epochs={max(1, round(args.specvit_steps * args.specvit_batch / n))}",
        f"train.max_steps={args.specvit_steps}",
        "train.precision=fp32",
        "train.progress=false",
        "train.device=cpu",
    ]
    cmd = [sys.executable, str(REPO_ROOT / "training" / "train.py"), "--config", "tiny", *overrides]
    print("+", shlex.join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO_ROOT)
    return publish(out / "checkpoints", out / "model")


def _load_model(folder: str | Path) -> Any:
    import specvit

    model = specvit.load(str(folder))
    if tuple(model.config.label_names) != LABELS:
        names = model.config.label_names
        raise ValueError(f"{folder} predicts {names}; the report scores models of {LABELS}")
    return model


# ---------------------------------------------------------------------------------- main
def parser() -> argparse.ArgumentParser:
    """The options of :func:`run` (the command line of ``python -m training evaluate``)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--etc-dir", type=Path, default=DEFAULT_ETC)
    p.add_argument(
        "--eval-set-dir", type=Path, help="evaluation-set cache (default runs/eval_sets)"
    )
    p.add_argument("--mag", type=float, nargs=2, default=DEFAULT_MAG, metavar=("LOW", "HIGH"))
    p.add_argument("--n-test", type=int, default=DEFAULT_N["test"])
    p.add_argument("--n-val", type=int, default=DEFAULT_N["validation"])
    p.add_argument("--grid", type=int, nargs=3, default=(24, 24, 20))
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--baselines", default="", help=f"comma-separated, of {sorted(BASELINES)}")
    p.add_argument("--n-train", type=int, default=50_000, help="training spectra of baselines")
    p.add_argument("--epochs", type=int, default=10, help="epochs of the mlp and cnn")
    p.add_argument("--model", action="append", default=[], help="a SpecViT model folder")
    p.add_argument(
        "--exact", action="store_true", help="also score each --model in exact mode (predict)"
    )
    p.add_argument("--predictions", action="append", default=[], help="a saved .npz")
    p.add_argument("--scaling", type=int, nargs="*", default=[], help="training-set sizes")
    p.add_argument("--scaling-methods", default="ridge,lightgbm,specvit")
    p.add_argument(
        "--scaling-max",
        action="append",
        default=[],
        metavar="METHOD=N",
        help="skip METHOD at training sizes above N (reported as missing)",
    )
    p.add_argument("--specvit-preset", default="specvit_tiny")
    p.add_argument("--specvit-steps", type=int, default=600)
    p.add_argument("--specvit-batch", type=int, default=64)
    p.add_argument("--work", type=Path, default=REPO_ROOT / "runs" / "evaluate")
    p.add_argument("--refit", action="store_true", help="ignore saved predictions in --work")
    p.add_argument("--report", type=Path, help="write the Markdown report and figures here")
    return p


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Score every method the options ask for; write ``<work>/scores.json`` and the report.

    Parameters
    ----------
    args : argparse.Namespace
        The options of :func:`parser`.
    command : str
        The command line, recorded in ``scores.json``.

    Returns
    -------
    dict
        The scores, as written to ``<work>/scores.json``.
    """
    started = time.perf_counter()
    common = dict(
        mag=tuple(args.mag), grid=tuple(args.grid), n_samples=args.samples, n_rounds=args.rounds
    )
    paths = {
        split: ensure(EvalSetSettings(split, n, **common), args.etc_dir, args.eval_set_dir)
        for split, n in (("test", args.n_test), ("validation", args.n_val))
    }
    test, val = read_eval_set(paths["test"]), read_eval_set(paths["validation"])
    tag = paths["test"].stem
    work = args.work / tag
    baselines = [b for b in args.baselines.split(",") if b]
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise SystemExit(f"unknown baselines {unknown}; choose from {sorted(BASELINES)}")
    scaling_methods = [m for m in args.scaling_methods.split(",") if m] if args.scaling else []
    limits = {k: int(v) for k, _, v in (item.partition("=") for item in args.scaling_max)}
    options = {"mlp": {"epochs": args.epochs}, "cnn": {"epochs": args.epochs}}

    blocks = {make_block(b) for b in baselines} | {make_block(m) for m in scaling_methods}
    blocks.discard(None)
    sizes = {b: args.n_train for b in blocks}
    scaled = [m for m in scaling_methods if m != "specvit"]
    for m in scaled:
        b = make_block(m)
        sizes[b] = max(sizes.get(b, 0), *(n for n in args.scaling if n <= limits.get(m, n)))
    drawn: dict[int, Features] = {}

    def train_features() -> dict[int, Features]:
        """The training features, drawn the first time a method needs them."""
        if sizes and not drawn:
            from training.engine.simulate import Prior, Simulator

            sim = Simulator(
                noise=_noise(args.etc_dir, test["settings"]["n_exposures"]),
                prior=Prior(mag=tuple(args.mag)),
            )
            t0 = time.process_time()
            drawn.update(draw_features(sim, sizes))
            print(f"training features {sizes}: {time.process_time() - t0:.0f} CPU s", flush=True)
        return drawn

    evals = {b: features(d["flux"], d["error"], d["labels"], b) for d in (val,) for b in blocks}
    tests = {b: features(test["flux"], test["error"], test["labels"], b) for b in blocks}

    methods: dict[str, dict[str, Any]] = {}
    for name in baselines:
        path = work / "predictions" / f"{name}-n{args.n_train}.npz"
        if not path.exists() or args.refit:
            sub = {b: f.subset(args.n_train) for b, f in train_features().items()}
            mean, sigma, meta = _fit_baseline(name, sub, evals, tests, options)
            _save(path, mean, sigma, meta)
        methods[name] = load_predictions(path, args.n_test)
        print(f"{name}: {methods[name]['meta']}", flush=True)
    for folder in args.model:
        model = _load_model(folder)  # once, for both modes
        for exact in (False, True) if args.exact else (False,):
            table = eval_set_table(model, test, exact=exact)
            mean, sigma = table_labels(model, table)
            meta = {"method": "specvit", "model": str(folder), "exact": exact}
            if exact:  # the ESS distribution and the LOW_ESS rate
                meta.update(exact_summary(table))
            mode = ", exact" if exact else ""
            name = f"SpecViT ({Path(folder).name}{mode})"
            methods[name] = {"mean": mean, "sigma": sigma, "meta": meta}
            print(f"{name}: {meta}", flush=True)
    for file in args.predictions:
        pred = load_predictions(file, args.n_test)
        methods[pred["meta"].get("method", Path(file).stem)] = pred

    scaling: list[dict[str, Any]] = []
    for n in sorted(args.scaling):
        for name in scaling_methods:
            if n > limits.get(name, n):
                scaling.append({"method": name, "n_train": n, "missing": "--scaling-max"})
                continue
            path = work / "scaling" / f"{name}-n{n}.npz"
            if not path.exists() or args.refit:
                if name == "specvit":
                    shard = write_shard(_sim(args, test), work / "scaling" / f"train-n{n}.h5", n)
                    t0 = time.perf_counter()
                    folder = _train_specvit(
                        args, n, shard, paths["validation"], path.with_suffix("")
                    )
                    mean, sigma = predict_eval_set(_load_model(folder), test)
                    meta = {
                        "method": name,
                        "n_train": n,
                        "steps": args.specvit_steps,
                        "batch": args.specvit_batch,
                        "preset": args.specvit_preset,
                        "wall_s": round(time.perf_counter() - t0, 1),
                    }
                    shard.unlink()
                else:
                    sub = {b: f.subset(n) for b, f in train_features().items()}
                    mean, sigma, meta = _fit_baseline(name, sub, evals, tests, options)
                _save(path, mean, sigma, meta)
            pred = load_predictions(path, args.n_test)
            result = _score(test, pred)
            scaling.append(
                {
                    "method": name,
                    "n_train": n,
                    "r2_log_g": result["overall"]["metrics"]["log_g"]["r2"],
                    "efficiency_log_g": result["overall"]["metrics"]["log_g"]["efficiency"],
                    "meta": pred["meta"],
                }
            )
            print(f"scaling {name} n={n}: R²(log g) {scaling[-1]['r2_log_g']}", flush=True)

    scores = {name: _score(test, m) for name, m in methods.items()}
    scores[BAYES] = _score(
        test, {"mean": test["posterior_mean"], "sigma": test["posterior_std"]}, bayes=False
    )
    out = {
        "test": str(paths["test"]),
        "validation": str(paths["validation"]),
        "settings": test["settings"],
        "n_train": args.n_train,
        "methods": {k: m["meta"] for k, m in methods.items()},
        "scores": scores,
        "crlb": _crlb_groups(test),
        "scaling": scaling,
        "command": command,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    work.mkdir(parents=True, exist_ok=True)
    (work / "scores.json").write_text(json.dumps(out, indent=1, allow_nan=False))
    print(summary_table(out))
    if args.report:
        write_report(out, test, methods, args.report)
        print(f"wrote {args.report / 'index.md'} and its figures")
    return out


def make_block(name: str) -> int | None:
    """Pixel block of a method's features (None for SpecViT, which reads spectra itself)."""
    return None if name == "specvit" else default_block(name)


def _noise(etc_dir, n_exposures):
    from specvit.instrument import PFSNoiseModel

    return PFSNoiseModel.from_etc(etc_dir, n_exposures=n_exposures)


def _sim(args, test):
    from training.engine.simulate import Prior, Simulator

    noise = _noise(args.etc_dir, test["settings"]["n_exposures"])
    return Simulator(noise=noise, prior=Prior(mag=tuple(args.mag)))


def _score(test: dict[str, np.ndarray], pred: dict[str, Any], bayes: bool = True) -> dict:
    return score(
        test["labels"],
        pred["mean"],
        test["snr"],
        LABELS,
        sigma=pred.get("sigma"),
        bayes_mean=test["posterior_mean"] if bayes else None,
        bayes_sigma=test["posterior_std"] if bayes else None,
    )


def _crlb_groups(test: dict[str, np.ndarray]) -> dict[str, Any]:
    g, snr, crlb = test["labels"][:, 1], test["snr"], test["crlb_log_g"]
    rows = {}
    for low, high in [(0.0, math.inf), *itertools.pairwise(SNR_BIN_EDGES)]:
        inside = (snr >= low) & (snr < high)
        median, population = crlb_r2(crlb[inside], g[inside])
        key = "overall" if low == 0.0 else bin_label(low, high)
        rows[key] = {"median": median, "population": population, "n": int(inside.sum())}
    return rows


# ---------------------------------------------------------------------------------- report
_f = format_number


def summary_table(out: dict[str, Any]) -> str:
    """R²(log g) and efficiency per SNR bin of every method (Markdown)."""
    scores = out["scores"]
    bins = [g["bin"] for g in scores[BAYES]["snr"]]
    head = "| method | all | " + " | ".join(bins) + " |\n|---|" + "---|" * (len(bins) + 1)
    lines = [head]
    for name, s in scores.items():
        m = s["overall"]["metrics"]["log_g"]
        cells = [_f(m["r2"])]
        for g in s["snr"]:
            cells.append(_f(g["metrics"]["log_g"]["r2"]))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join(
        ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        + ["| " + " | ".join(r) + " |" for r in rows]
    )


def write_report(
    out: dict[str, Any], test: dict[str, np.ndarray], methods: dict[str, Any], folder: Path
) -> Path:
    """Markdown tables (``folder/index.md``) and PNG figures of a scoring run."""
    from training.evaluation.report import figures

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    figs = figures(out, test, methods, folder)
    scores, crlb = out["scores"], out["crlb"]
    names = [n for n in scores if n != BAYES]
    bins = [g["bin"] for g in scores[BAYES]["snr"]]
    s = out["settings"]
    text = [
        "# Evaluation results",
        "",
        "*Written by `training/evaluation/compare.py`; do not edit by hand.* Command:",
        "",
        f"```bash\n{out['command']}\n```",
        "",
        f"Test set: `{Path(out['test']).name}` ({s['n']} spectra, HSC-i {s['mag'][0]:g}–"
        f"{s['mag'][1]:g}, {s['n_exposures']} × 900 s, PFS ETC noise, default prior); Bayes-"
        f"optimal: posterior grid {tuple(s['grid'])}, {s['n_samples']} × {s['n_rounds']} "
        "importance samples per spectrum. SNR bins `[low, high)` of the median flux/σ; R² in a "
        "bin against the label spread of the bin's stars; efficiency = R²_method / R²_Bayes on "
        f"the same stars. Baselines trained on the first {out['n_train']} spectra of the fixed "
        f"training stream. This invocation took {out['wall_s']:.0f} s wall on the shared 2-core "
        "CPU, reusing predictions cached under `runs/evaluate/` by earlier ones; each method's own "
        "fit and predict CPU time is listed under Methods.",
        "",
        "## log g: R² per SNR bin",
        "",
    ]
    rows = []
    for name in [*names, BAYES]:
        sc = scores[name]
        rows.append(
            [name, _f(sc["overall"]["metrics"]["log_g"]["r2"])]
            + [_f(g["metrics"]["log_g"]["r2"]) for g in sc["snr"]]
        )
    for kind in ("population", "median"):
        rows.append(
            [f"CRLB R²_max ({kind})", _f(crlb["overall"][kind])] + [_f(crlb[b][kind]) for b in bins]
        )
    rows.append(
        ["N stars", str(scores[BAYES]["overall"]["n"])]
        + [str(g["n"]) for g in scores[BAYES]["snr"]]
    )
    text += [_table(["method", "all", *bins], rows), "", f"![R² vs SNR]({figs['r2']})", ""]
    text += ["## log g: efficiency (R² / Bayes-optimal R²) per SNR bin", ""]
    rows = [
        [name, _f(scores[name]["overall"]["metrics"]["log_g"]["efficiency"])]
        + [_f(g["metrics"]["log_g"]["efficiency"]) for g in scores[name]["snr"]]
        for name in names
    ]
    text += [_table(["method", "all", *bins], rows), "", f"![efficiency]({figs['efficiency']})", ""]
    text += ["## All labels, whole test set", ""]
    rows = []
    for name in [*names, BAYES]:
        row = [name]
        for label in LABELS:
            m = scores[name]["overall"]["metrics"][label]
            d = 0 if label == "T_eff" else 3
            efficiency = "1" if name == BAYES else _f(m["efficiency"])
            row += [_f(m["r2"]), _f(m["rmse"], d), _f(m["bias"], d), efficiency]
        rows.append(row)
    header = ["method"]
    for label in LABELS:
        unit = "K" if label == "T_eff" else "dex"
        header += [f"R² {label}", f"RMSE ({unit})", f"bias ({unit})", "efficiency"]
    text += [_table(header, rows), ""]
    for group, unit in (("T_eff", "K"), ("M_H", "dex")):
        groups = [g["bin"] for g in scores[BAYES][group]]
        rows = [
            [name] + [_f(g["metrics"]["log_g"]["r2"]) for g in scores[name][group]]
            for name in [*names, BAYES]
        ]
        text += [
            f"## log g: R² per true {group} bin ({unit})",
            "",
            _table(["method", *groups], rows),
            "",
        ]
    calibrated = [
        n
        for n in names
        if scores[n]["overall"]["metrics"]["log_g"].get("coverage_1sigma") is not None
    ]
    text += [
        "## σ calibration (log g): fraction of stars with |error| < 1σ and < 2σ",
        "",
        "Calibrated Gaussian errors give 0.683 and 0.954. The posterior's row uses the "
        "posterior mean and its own σ.",
        "",
    ]
    rows = []
    for name in [*calibrated, BAYES]:
        for k, level in (("coverage_1sigma", "1σ"), ("coverage_2sigma", "2σ")):
            sc = scores[name]
            rows.append(
                [f"{name} {level}", _f(sc["overall"]["metrics"]["log_g"][k])]
                + [_f(g["metrics"]["log_g"][k]) for g in sc["snr"]]
            )
    text += [
        _table(["method", "all", *bins], rows),
        "",
        f"![σ calibration]({figs['calibration']})",
        "",
    ]
    text += [
        "## Residual maps (log g)",
        "",
        f"![residuals over T_eff and log g]({figs['teff_logg']})",
        "",
        f"![residuals over SNR and log g]({figs['snr_logg']})",
        "",
    ]
    if out["scaling"]:
        text += ["## Scaling: R²(log g) on the test set vs training-set size", ""]
        sizes = sorted({r["n_train"] for r in out["scaling"]})
        by = {(r["method"], r["n_train"]): r for r in out["scaling"]}
        rows = [
            [m]
            + [
                "missing"
                if "missing" in by.get((m, n), {"missing": 1})
                else _f(by[(m, n)]["r2_log_g"])
                for n in sizes
            ]
            for m in dict.fromkeys(r["method"] for r in out["scaling"])
        ]
        text += [
            _table(["method", *(f"N = {n}" for n in sizes)], rows),
            "",
            f"![scaling]({figs['scaling']})",
            "",
        ]
    text += ["## Methods", ""]
    for name, meta in out["methods"].items():
        text.append(f"- **{name}**: `{json.dumps(meta)}`")
    for r in out["scaling"]:
        detail = f"missing ({r['missing']})" if "missing" in r else f"`{json.dumps(r['meta'])}`"
        text.append(f"- scaling **{r['method']}** N = {r['n_train']}: {detail}")
    path = folder / "index.md"
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    return path
