"""Training throughput (spectra/s) of the trainer, beside baselines measured in the same run.

Usage::

    python benchmarks/train_throughput.py [--seconds 5] [--device cpu|cuda]
        [--paper-batch 32] [--small-batch 64] [--recipes paper tiny] [--compile]
        [--teacher-grid 24 24 20]

For the paper recipe (``training/configs/paper.yaml``: ViT-L6-H256, fp16 autocast, bf16 on a
CPU) and the CI recipe (``tiny.yaml``) it times, on the real data engine:

- ``data``: building a batch (engine spectra + noise + :func:`specvit.model_input`), spectra/s;
- ``train step``: :meth:`training.trainer.loop.Trainer.train_step` (forward, loss, backward,
  clipping, AdamW, schedule) on a prepared batch, spectra/s;
- ``forward``: the bare forward pass of the same model and precision (``torch.no_grad``), the
  baseline the training step is compared with (a training step costs ≈3 forwards);

and a 1024³ fp32 matmul in GFLOP/s for the machine. With ``--compile`` every recipe is timed
again with ``train.compile=true`` (the step through ``torch.compile``; compiling is excluded
from the timing). With ``--teacher-grid`` the data row is timed again with the grid teacher of
``data.teacher_grid`` (:class:`training.trainer.teacher.GridTeacher`) computing every batch's
targets, and the last column gives the cost of a spectrum (data + step) with the teacher over
without it. With ``paper`` among the recipes it ends with the projected wall time of the paper's 200
epochs × 1 M spectra at the measured training-step rate.
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from timing import matmul_gflops, rate

from training.engine.batches import StepBatches
from training.engine.sources import build_source
from training.trainer.config import load_config
from training.trainer.loop import Trainer


def measure(
    recipe: str,
    batch: int,
    device: str,
    seconds: float,
    out: str,
    compile_step: bool = False,
    teacher_grid: list[int] | None = None,
) -> dict[str, float]:
    """Spectra/s of data (also with the teacher, given ``teacher_grid``), training step and
    forward pass for one recipe."""
    overrides = [
        f"out_dir={out}",
        f"train.batch_size={batch}",
        f"train.device={device}",
        "data.n_val=16",
        "train.progress=false",
        f"train.compile={str(compile_step).lower()}",
    ]
    if teacher_grid is not None:
        overrides.append(f"data.teacher_grid=[{','.join(map(str, teacher_grid))}]")
    config = load_config(recipe, overrides)
    trainer = Trainer(config, build_source(config))
    counter = iter(range(10**9))

    def data(teacher) -> float:
        steps = StepBatches(trainer.source, trainer.model.config, 0, 1, batch, teacher=teacher)
        return rate(lambda: steps[next(counter)], seconds, trainer.device) * batch

    data_rate = data(None)
    teacher_rate = data(trainer._teacher()) if teacher_grid is not None else float("nan")
    steps = StepBatches(trainer.source, trainer.model.config, 0, 1, batch)
    prepared = steps[0]
    train_rate = rate(lambda: trainer.train_step(prepared), seconds, trainer.device) * batch
    x = prepared["x"].to(trainer.device)
    model = trainer.model.eval()

    @torch.no_grad()
    def forward() -> None:
        with trainer.autocast():
            model(x)

    forward_rate = rate(forward, seconds, trainer.device) * batch
    precision = str(trainer.amp_dtype or torch.float32).removeprefix("torch.")
    return {
        "data": data_rate,
        "teacher": teacher_rate,
        "train": train_rate,
        "forward": forward_rate,
        "dtype": precision,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--paper-batch", type=int, default=32)
    parser.add_argument("--small-batch", type=int, default=64)
    parser.add_argument(
        "--recipes", nargs="+", default=["paper", "tiny"], help="training/configs names"
    )
    parser.add_argument("--compile", action="store_true", help="also time train.compile=true")
    parser.add_argument(
        "--teacher-grid", type=int, nargs=3, metavar="G", help="also time data.teacher_grid=G"
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    gflops = matmul_gflops(device, torch.float32, args.seconds)
    print(f"device={device} torch={torch.__version__} threads={torch.get_num_threads()}")
    print(f"baseline matmul 1024^3 fp32: {gflops:.1f} GFLOP/s")
    print(
        f"{'recipe':<8} {'compile':<7} {'dtype':<9} {'batch':>5} {'data/s':>9} {'train/s':>9} "
        f"{'forward/s':>10} {'train/fwd':>9}"
        + (f" {'teacher data/s':>14} {'cost w/ teacher':>15}" if args.teacher_grid else "")
    )
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in args.recipes:
            batch = args.paper_batch if recipe == "paper" else args.small_batch
            for compile_step in (False, True) if args.compile else (False,):
                r = measure(
                    recipe,
                    batch,
                    args.device,
                    args.seconds,
                    f"{tmp}/{recipe}",
                    compile_step,
                    args.teacher_grid,
                )
                rates[recipe, compile_step] = r
                line = (
                    f"{recipe:<8} {compile_step!s:<7} {r['dtype']:<9} {batch:>5} "
                    f"{r['data']:>9.0f} {r['train']:>9.1f} {r['forward']:>10.1f} "
                    f"{r['train'] / r['forward']:>9.3f}"
                )
                if args.teacher_grid:
                    # seconds per spectrum of data + step, with the teacher over without
                    cost = (1 / r["teacher"] + 1 / r["train"]) / (1 / r["data"] + 1 / r["train"])
                    line += f" {r['teacher']:>14.0f} {cost:>15.2f}"
                print(line)
    if "paper" in args.recipes:
        hours = 200 * 1_000_000 / rates["paper", False]["train"] / 3600
        print(
            f"paper recipe, 200 epochs x 1 M spectra at this rate: {hours:,.0f} h "
            "(paper: ~31 h, 1 GPU)"
        )


if __name__ == "__main__":
    main()
