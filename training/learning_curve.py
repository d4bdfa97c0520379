"""A training run's validation learning curve as a Markdown table.

One row per validation in the run's ``metrics.jsonl``: the step, the spectra seen, the CPU
minutes, each label's efficiency (R² / Bayes-optimal R², when the run validates on a benchmark
set; else its R²) and log g's per SNR bin. A validation logged twice (a run resumed from an
earlier checkpoint repeats the steps after it) counts once, the later record::

    python training/learning_curve.py runs/default
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the repository root importable
    sys.path.insert(0, str(ROOT))

from training.model_scores import format_number  # noqa: E402

__all__ = ["curve_table", "main", "validations"]


def validations(run_dir: str | Path) -> list[dict[str, Any]]:
    """The validation records of a run folder's ``metrics.jsonl``, one per step, by step.

    An unterminated last line (a run still writing it) is left out.

    Raises
    ------
    FileNotFoundError
        Without ``metrics.jsonl`` in ``run_dir``.
    """
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no metrics.jsonl in {run_dir}")
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    if lines and not text.endswith("\n"):  # a run still writing, or killed mid-line
        lines.pop()
    by_step = {}
    for line in lines:
        record = json.loads(line)
        if record.get("kind") == "val":
            by_step[record["step"]] = record
    return [by_step[s] for s in sorted(by_step)]


def curve_table(run_dir: str | Path) -> str:
    """Markdown: :func:`validations` of a run folder, one row each.

    Raises
    ------
    FileNotFoundError
        Without ``metrics.jsonl`` or ``config.yaml`` in ``run_dir``.
    ValueError
        If the run has not validated yet.
    """
    config_path = Path(run_dir) / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(f"no config.yaml in {run_dir}")
    batch = yaml.safe_load(config_path.read_text(encoding="utf-8"))["train"]["batch_size"]
    records = validations(run_dir)
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
        overall = metrics["overall"]["metrics"]
        cpu = record.get("cpu_seconds")
        cells = [
            str(record["step"]),
            f"{record['step'] * batch / 1e6:.2f} M",
            "–" if cpu is None else f"{cpu / 60:.0f}",
            *(format_number(overall.get(n, {}).get(key)) for n in labels),
        ]
        if "log_g" in labels:
            groups = {g["bin"]: g["metrics"].get("log_g", {}) for g in metrics["snr"]}
            cells += [format_number(groups.get(b, {}).get(key), 2) for b in bins]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: print the table; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a run folder (metrics.jsonl, config.yaml)")
    args = parser.parse_args(argv)
    try:
        print(curve_table(args.run_dir), end="")
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
