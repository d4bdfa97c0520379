"""Forward-pass throughput of SpecViT presets, beside this machine's matmul GFLOP/s.

Usage::

    python benchmarks/model_throughput.py [--batch 256] [--seconds 3] [--device cpu|cuda]

For each preset (:func:`specvit.list_models`) and precision (fp32, bf16 autocast) it prints
spectra/s and the achieved GFLOP/s as a fraction of a plain fp32 (and bf16) matmul measured in
the same run, so numbers from noisy or different machines can be compared.
"""

from __future__ import annotations

import argparse
import contextlib

import torch
from timing import matmul_gflops, rate
from torch.utils.flop_counter import FlopCounterMode

import specvit


def forward_flops(model: torch.nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one forward pass (torch's FLOP counter)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"device={device} torch={torch.__version__} threads={torch.get_num_threads()}")
    peaks = {
        "fp32": matmul_gflops(device, torch.float32, args.seconds),
        "bf16": matmul_gflops(device, torch.bfloat16, args.seconds),
    }
    for name, value in peaks.items():
        print(f"matmul 1024^3 {name}: {value:8.1f} GFLOP/s (baseline)")
    print(f"{'preset':<16} {'precision':<10} {'spectra/s':>10} {'GFLOP/s':>9} {'of matmul':>9}")
    for preset in specvit.list_models():
        model = specvit.create_model(preset).to(device).eval()
        x = torch.randn(args.batch, model.config.input_length, device=device)
        flops = forward_flops(model, x)
        for precision in ("fp32", "bf16"):
            autocast = (
                torch.autocast(device.type, dtype=torch.bfloat16)
                if precision == "bf16"
                else contextlib.nullcontext()
            )

            def step(model=model, x=x, autocast=autocast):
                with torch.no_grad(), autocast:
                    model(x)

            calls = rate(step, args.seconds, device)
            gflops = calls * flops / 1e9
            print(
                f"{preset:<16} {precision:<10} {calls * args.batch:10.0f} {gflops:9.1f} "
                f"{gflops / peaks[precision]:9.1%}"
            )


if __name__ == "__main__":
    main()
