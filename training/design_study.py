"""The default-model design study: candidates trained for the same CPU budget, then compared.

Usage::

    python training/design_study.py run [--only NAME ...] [--budget 6] [--jobs 2] [key=value ...]
    python training/design_study.py report [--out docs/design_study]

``run`` trains every candidate of ``training/design/candidates.yaml`` (the default recipe with
that candidate's overrides) into ``runs/design/<name>/`` with ``training/train.py``, one thread
each, until it has used ``--budget`` CPU-minutes (``train.max_cpu_minutes``); a candidate whose
folder holds a checkpoint is resumed, one that reached the budget is skipped. Extra
``key=value`` overrides apply to every candidate. ``report`` reads their ``metrics.jsonl`` and
writes the comparison table (Markdown) and the learning curves (PNG).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = ROOT / "training" / "design" / "candidates.yaml"
RUNS = Path("runs") / "design"

__all__ = ["load_candidates", "main"]


def load_candidates(path: Path = CANDIDATES) -> tuple[str, list[str], dict[str, list[str]]]:
    """The study's base recipe, its common overrides and ``{candidate: overrides}``."""
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    return spec["base"], list(spec["common"]), {k: list(v) for k, v in spec["candidates"].items()}


def _finished(folder: Path, budget: float) -> bool:
    """Whether the run in ``folder`` stopped at ``budget`` CPU-minutes (its last validation)."""
    log = folder / "metrics.jsonl"
    if not log.is_file():
        return False
    records = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    return any(r.get("kind") == "val" and r["cpu_seconds"] >= 60 * budget for r in records)


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
    script = str(ROOT / "training" / "train.py")
    tasks = []
    for name in only or candidates:
        folder = RUNS / name
        if _finished(folder, budget):
            print(f"[design] {name}: done, skipped", flush=True)
            continue
        stop = [f"train.max_cpu_minutes={budget}", "train.progress=false"]
        if (folder / "checkpoints").is_dir() and any((folder / "checkpoints").iterdir()):
            command = [sys.executable, script, "--resume", str(folder), *stop]
        else:
            overrides = [*common, *candidates[name], *extra, f"out_dir={folder}", *stop]
            command = [sys.executable, script, "--config", base, *overrides]
        tasks.append((name, command, folder))
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        statuses = list(pool.map(lambda task: _train(*task), tasks))
    return max(statuses, default=0)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="train the candidates")
    p_run.add_argument("--only", nargs="*", default=[], help="candidate names (default: all)")
    p_run.add_argument("--budget", type=float, default=6.0, help="CPU-minutes per candidate")
    p_run.add_argument("--jobs", type=int, default=2, help="candidates trained at once")
    p_run.add_argument("overrides", nargs="*", help="key=value overrides for every candidate")
    args = parser.parse_args(argv)
    if args.command == "run":
        return run(args.only, args.budget, args.jobs, args.overrides)
    return 0


if __name__ == "__main__":
    sys.exit(main())
