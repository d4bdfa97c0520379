"""The default-model design study: candidates trained for the same CPU budget, then compared.

The study of ``python -m training design-study`` (:mod:`training.cli.design_study`).
``run`` trains every candidate of ``training/evaluation/design_candidates.yaml`` (the default recipe
with that candidate's overrides) into ``runs/design/<name>/`` with ``training/train.py``, one thread
each, until it has used ``--budget`` CPU-minutes (``train.max_cpu_minutes``); a candidate whose
folder holds a checkpoint is resumed, one that reached the budget is skipped. Extra ``key=value``
overrides apply to every candidate. ``report`` reads their ``metrics.jsonl`` and writes the
comparison table (Markdown) and the learning curves (PNG).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from training.paths import REPO_ROOT
from training.trainer.rundir import RunDir

#: The study's candidates: the base recipe, common overrides and each candidate's overrides.
CANDIDATES = Path(__file__).resolve().parent / "design_candidates.yaml"
RUNS = Path("runs") / "design"

__all__ = ["CANDIDATES", "load_candidates", "report", "run", "score_checkpoints"]


def load_candidates(path: Path = CANDIDATES) -> tuple[str, list[str], dict[str, list[str]]]:
    """The study's base recipe, its common overrides and ``{candidate: overrides}``."""
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    return spec["base"], list(spec["common"]), {k: list(v) for k, v in spec["candidates"].items()}


def _finished(run: RunDir, budget: float) -> bool:
    """Whether ``run`` used ``budget`` CPU-minutes or ran its whole schedule."""
    if not (run.metrics_path.is_file() and run.config_path.is_file()):
        return False
    total = run.total_steps()
    return any(
        r["cpu_seconds"] >= 60 * budget or (total is not None and r["step"] >= total)
        for r in run.validations()
    )


def _train(name: str, command: list[str], folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with open(folder / "train.log", "a", encoding="utf-8") as log:
        status = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    print(f"[design] {name}: exit {status}", flush=True)
    return status


def run(only: list[str], budget: float, jobs: int, extra: list[str]) -> int:
    """Train the chosen candidates (all when ``only`` is empty); return the worst exit status."""
    base, common, candidates = load_candidates()
    unknown = sorted(set(only) - set(candidates))
    if unknown:
        raise SystemExit(f"unknown candidate(s) {unknown}; known: {sorted(candidates)}")
    script = str(REPO_ROOT / "training" / "train.py")
    tasks = []
    for name in only or candidates:
        folder = RUNS / name
        if _finished(RunDir(folder), budget):
            print(f"[design] {name}: done, skipped", flush=True)
            continue
        stop = [f"train.max_cpu_minutes={budget}", "train.progress=false"]
        if RunDir(folder).latest_checkpoint() is not None:
            command = [sys.executable, script, "--resume", str(folder), *stop]
        else:
            overrides = [*common, *candidates[name], *extra, f"out_dir={folder}", *stop]
            command = [sys.executable, script, "--config", base, *overrides]
        tasks.append((name, command, folder))
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        statuses = list(pool.map(lambda task: _train(*task), tasks))
    return max(statuses, default=0)


def score_checkpoints(run: RunDir, eval_set: dict[str, Any]) -> list[dict[str, Any]]:
    """Score every checkpoint of one run on an evaluation set (cached in ``scores.json``).

    Returns
    -------
    list of dict
        One ``{"step", "complete", "spectra", "cpu_minutes", "score"}`` per checkpoint, oldest
        first (``complete``: the run's whole schedule ended there);
        ``score`` is :func:`training.evaluation.scoring.score` with the Bayes-optimal answers.
    """
    import specvit
    from specvit.models.specvit import SpecViT
    from training.evaluation.model_scores import score_eval_set
    from training.trainer.checkpoint import load_checkpoint

    cache_file = run.path / "scores.json"
    cache = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
    key = eval_set["path"]
    done = {row["step"]: row for row in cache.get(key, [])}
    total = run.total_steps()
    for path in run.checkpoints():
        state = load_checkpoint(path)
        if state["step"] in done:
            continue
        model = SpecViT(specvit.SpecViTConfig.from_dict(state["model_config"]))
        model.load_state_dict(state["model"])
        done[state["step"]] = {
            "step": state["step"],
            "complete": total is not None and state["step"] >= total,  # ended in the budget
            "spectra": run.spectra(state["step"]),
            "cpu_minutes": state.get("cpu_seconds", 0.0) / 60,
            "score": score_eval_set(model, eval_set),
        }
    rows = [done[k] for k in sorted(done)]
    cache[key] = rows
    cache_file.write_text(json.dumps(cache, allow_nan=False), encoding="utf-8")
    return rows


def _efficiencies(result: dict[str, Any], label: str) -> list[float | None]:
    """Efficiency of ``label`` overall, then per SNR bin."""
    groups = [result["overall"], *result["snr"]]
    return [g["metrics"][label].get("efficiency") for g in groups]


def report(out: Path, budget: float) -> None:
    """Score every candidate's checkpoints; write ``out/design_study.md`` and its figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from training.evaluation.eval_sets import EvalSetSettings, ensure, read_eval_set
    from training.evaluation.model_scores import format_number
    from training.evaluation.scoring import SNR_BIN_EDGES, bin_label

    path = ensure(EvalSetSettings("validation", 1000))
    eval_set = {**read_eval_set(path), "path": str(path)}
    _, common, candidates = load_candidates()
    results = {}
    for name in candidates:
        run = RunDir(RUNS / name)
        if run.checkpoint_dir.is_dir():
            # up to the budget: a run continued to a larger budget is scored where this one ended
            rows = score_checkpoints(run, eval_set)
            results[name] = [r for r in rows if r["cpu_minutes"] <= 1.01 * budget]
    bins = [bin_label(lo, hi) for lo, hi in itertools.pairwise(SNR_BIN_EDGES)]
    lines = [
        "<!-- generated by: python training/evaluation/design_study.py report -->",
        "",
        f"Candidates of `training/evaluation/design_candidates.yaml`, each trained for {budget:g} "
        "CPU-minutes on one thread (constant learning rate after the warm-up; common overrides: "
        f"`{' '.join(common)}`), scored at their last checkpoint on the eval_set validation "
        f"set (`{Path(path).name}`: 1 000 engine spectra, HSC-i 20.5–22.5, 12 × 900 s). "
        "Efficiency = R² / Bayes-optimal R² of the same stars; SNR bins are median flux/σ.",
        "",
        "| candidate | params | spectra | CPU-min | log g eff. (all) | "
        + " | ".join(f"log g {b}" for b in bins)
        + " | T_eff eff. | [M/H] eff. | log g 1σ cov. |",
        "|---" * (len(bins) + 8) + "|",
    ]
    unfinished = []
    for name, rows in results.items():
        if not rows or not (rows[-1]["cpu_minutes"] >= 0.99 * budget or rows[-1]["complete"]):
            unfinished.append(name)
            continue
        last = rows[-1]
        result = last["score"]
        log_g = _efficiencies(result, "log_g")
        metrics = result["overall"]["metrics"]
        coverage = metrics["log_g"].get("coverage_1sigma")
        params = _parameters(RunDir(RUNS / name))
        lines.append(
            f"| {name} | {params / 1e3:.0f} k | {last['spectra'] / 1e3:.0f} k | "
            f"{last['cpu_minutes']:.1f} | {format_number(log_g[0])} | "
            + " | ".join(format_number(v, 2) for v in log_g[1:])
            + f" | {format_number(metrics['T_eff'].get('efficiency'))} | "
            f"{format_number(metrics['M_H'].get('efficiency'))} | {format_number(coverage, 2)} |"
        )
    missing = [n for n in candidates if n not in results or n in unfinished]
    if missing:
        lines += ["", f"Not yet trained to the budget (left out above): {', '.join(missing)}."]
    out.mkdir(parents=True, exist_ok=True)
    (out / "design_study.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    colours = plt.cm.tab20.colors
    for k, (name, rows) in enumerate(results.items()):
        eff = [_efficiencies(r["score"], "log_g")[0] for r in rows]
        style = {"color": colours[k % 20], "ls": ("-", "--")[k // 10 % 2], "marker": "."}
        axes[0].plot([r["cpu_minutes"] for r in rows], eff, label=name, **style)
        axes[1].plot([r["spectra"] / 1e3 for r in rows], eff, label=name, **style)
    axes[0].set_xlabel("CPU-minutes (one thread)")
    axes[1].set_xlabel("training spectra seen (thousands)")
    axes[0].set_ylabel("log g efficiency (R² / Bayes-optimal R²)")
    axes[1].legend(fontsize=7, ncol=2)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "design_study_curves.png", dpi=110)
    print(f"wrote {out / 'design_study.md'} and {out / 'design_study_curves.png'}")


def _parameters(run: RunDir) -> int:
    import specvit
    from training.trainer.checkpoint import load_checkpoint

    state = load_checkpoint(run.latest_checkpoint())
    return specvit.SpecViT(specvit.SpecViTConfig.from_dict(state["model_config"])).num_parameters()
