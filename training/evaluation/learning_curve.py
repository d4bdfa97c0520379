"""A training run's validation learning curve as a Markdown table.

One row per validation in the run's ``metrics.jsonl``: the step, the spectra seen, the CPU
minutes, each label's efficiency (R² / Bayes-optimal R², when the run validates on an evaluation
set; else its R²) and log g's per SNR bin. A validation logged twice (a run resumed from an
earlier checkpoint repeats the steps after it) counts once, the later record. A record in the
metrics layout from before the scorer's (the first validations of the early design-study runs)
shows "–" in every metric.
"""

from __future__ import annotations

from pathlib import Path

from training.evaluation.model_scores import format_number
from training.trainer.rundir import RunDir

__all__ = ["curve_table"]


def curve_table(run_dir: str | Path) -> str:
    """Markdown: the validations of a run folder (:meth:`RunDir.validations`), one row each.

    Raises
    ------
    FileNotFoundError
        Without ``metrics.jsonl`` or ``config.yaml`` in ``run_dir``.
    ValueError
        If the run has not validated yet.
    """
    run = RunDir(run_dir)
    run.config()  # a run folder has one: fail early if not
    records = run.validations()
    if not records:
        raise ValueError(f"{run_dir} has no validation records yet")
    latest = records[-1]["metrics"]  # older records may lack a label or bin: "–" there
    labels = latest["labels"]
    key = "efficiency" if "efficiency" in latest["overall"]["metrics"][labels[0]] else "r2"
    bins = [g["bin"] for g in latest["snr"] if g["n"]]
    head = ["step", "spectra", "CPU-min", *(f"{n} {key}" for n in labels)]
    head += [f"log_g {b}" for b in bins] if "log_g" in labels else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for record in records:
        metrics = record["metrics"]
        # a record of the metrics layout before the scorer's (no "overall"): "–" throughout
        overall = metrics.get("overall", {}).get("metrics", {})
        cpu = record.get("cpu_seconds")
        cells = [
            str(record["step"]),
            f"{run.spectra(record['step']) / 1e6:.2f} M",
            "–" if cpu is None else f"{cpu / 60:.0f}",
            *(format_number(overall.get(n, {}).get(key)) for n in labels),
        ]
        if "log_g" in labels:
            groups = {g["bin"]: g["metrics"].get("log_g", {}) for g in metrics.get("snr", [])}
            cells += [format_number(groups.get(b, {}).get(key), 2) for b in bins]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
