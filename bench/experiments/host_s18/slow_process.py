"""Session 18, GPU: what is slow in the processes where eager fp8 FLUX's host time doubles?

On one machine start (session 18, calls 4 and 5) the same code took 97.3 and 184.5 ms of host
time a step in two processes, BF16 108 ms in both; in the slow one the gaps between our
``fp8_operands_kernel`` and cuBLAS's next launch averaged 63 us against 3 us. This builds the
fp8 FLUX model as ``bench_flux.py`` does, times 10 eager steps, then in the same process times
the pieces of a layer call back to back (host us a call, ``bench_host.per_call_us``): an fp8
layer at (512, 3072, 3072), ``torch._scaled_mm`` on one shape and cycling through FLUX's shapes,
``torch.empty``, a bare Triton launch (``quantize_rows_fp8`` on one row), and ``F.linear``. Run it
several times, each its own process, and compare the slow processes' pieces with the fast ones'.

    PYTHONPATH=. python3 bench/experiments/host_s18/slow_process.py [--runs 10]
"""

import argparse
import itertools
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench_flux import build_variant, inputs, time_forward  # noqa: E402
from bench_host import per_call_us  # noqa: E402
from nvfp4_triton import NVFP4Linear  # noqa: E402
from nvfp4_triton.act_quant import quantize_rows_fp8  # noqa: E402

FP8_SHAPES = [(4096, 3072, 3072), (512, 3072, 3072), (4096, 12288, 3072), (4096, 3072, 12288), (512, 12288, 3072),
              (512, 3072, 12288), (4608, 3072, 3072), (4608, 12288, 3072), (4608, 3072, 15360)]


def pieces() -> dict:
    def fp8(m, n, k):
        return (torch.randn(m, k, device="cuda").to(torch.float8_e4m3fn),
                torch.randn(n, k, device="cuda").to(torch.float8_e4m3fn).t(),
                torch.rand(m, 1, device="cuda") + 0.5, torch.rand(1, n, device="cuda") + 0.5,
                torch.randn(n, device="cuda", dtype=torch.bfloat16))
    operands = [fp8(*s) for s in FP8_SHAPES]
    one = operands[1]
    cycle = itertools.cycle(operands)

    def scaled(args):
        x, w, a, b, bias = args
        return torch._scaled_mm(x, w, scale_a=a, scale_b=b, bias=bias, out_dtype=torch.bfloat16, use_fast_accum=True)

    layer = NVFP4Linear.from_linear(torch.nn.Linear(3072, 3072, dtype=torch.bfloat16, device="cuda"))
    layer.activation = "fp8"
    x512 = torch.randn(512, 3072, device="cuda", dtype=torch.bfloat16)
    row = torch.randn(1, 3072, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(3072, 3072, device="cuda", dtype=torch.bfloat16)
    with torch.no_grad():
        calls = {"fp8 layer (512,3072,3072)": lambda: layer(x512),
                 "_scaled_mm one shape": lambda: scaled(one),
                 "_scaled_mm FLUX shapes in turn": lambda: scaled(next(cycle)),
                 "torch.empty": lambda: torch.empty(512, 3072, device="cuda", dtype=torch.float8_e4m3fn),
                 "quantize_rows_fp8 (1 row)": lambda: quantize_rows_fp8(row),
                 "F.linear (512,3072,3072)": lambda: F.linear(x512, w)}
        return {name: round(per_call_us(fn, 200)[0], 1) for name, fn in calls.items()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    model = build_variant("fp8", {})
    step_ms, host_ms, loop_ms, _ = time_forward(model, inputs((1024, 1024), 1), runs)
    print(json.dumps({"step_ms": round(step_ms, 1), "host_ms": round(host_ms, 1), "loop_ms": round(loop_ms, 1),
                      "host_us_per_call": pieces()}), flush=True)


if __name__ == "__main__":
    main()
