"""Host time per eager call of each mode, and where it goes: the whole-model steps are host-bound.

    python bench/bench_host.py [--shape M N K] [--calls 200] [--profile] [--json PATH]

For one GEMM shape (default: FLUX's ff.net.0.proj at 1024x1024, where the GPU part is long), times
``--calls`` back-to-back eager calls of F.linear (BF16) and of each of our modes: host time per call
(the loop without synchronizing) and wall time per call (until the GPU is done). Host time above
the GPU time means a model made of such calls waits on Python and launches, not on the GPU.
``--profile`` adds a cProfile table per mode: which Python functions the host time goes to.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nvfp4_triton import FP8Linear, NVFP4Linear, quantize  # noqa: E402


def per_call_us(fn, calls: int) -> tuple[float, float]:
    """(host us per call, wall us per call) over ``calls`` back-to-back calls, after three warm-up calls."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    host = time.perf_counter() - start
    torch.cuda.synchronize()
    wall = time.perf_counter() - start
    return host / calls * 1e6, wall / calls * 1e6


def profile_table(fn, calls: int, rows: int = 18) -> str:
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        fn()
    torch.cuda.synchronize()
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(rows)
    return out.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[4096, 12288, 3072], metavar=("M", "N", "K"))
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        parser.error("needs a CUDA GPU")
    m, n, k = args.shape
    torch.manual_seed(0)
    dense = torch.nn.Linear(k, n, dtype=torch.bfloat16, device="cuda")
    x = torch.randn(m, k, dtype=torch.bfloat16, device="cuda")
    layer = NVFP4Linear.from_linear(dense)
    input_scale = (x.float().abs().amax() / 2688).reshape(())
    layers = {}
    for activation in (None, "fp8", "nvfp4"):  # one module per mode: no attribute writes inside the timed calls
        layers[activation] = NVFP4Linear.from_weight(layer.nvfp4_weight, dense.bias.detach(), input_scale)
        layers[activation].activation = activation
    resident = FP8Linear.from_nvfp4(layer)
    w_bf16 = quantize(dense.weight).dequantize(torch.bfloat16)
    calls = {"bf16 F.linear": lambda: F.linear(x, w_bf16, dense.bias), "w4a16": lambda: layers[None](x),
             "fp8": lambda: layers["fp8"](x), "w4a4": lambda: layers["nvfp4"](x), "fp8-resident": lambda: resident(x)}
    print(f"shape M={m} N={n} K={k}, {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print(f"{'mode':14} {'host us/call':>13} {'wall us/call':>13}")
    results = {}
    for name, fn in calls.items():
        host, wall = per_call_us(fn, args.calls)
        results[name] = {"host_us": host, "wall_us": wall}
        print(f"{name:14} {host:13.1f} {wall:13.1f}", flush=True)
    if args.profile:
        for name, fn in calls.items():
            print(f"--- {name}: cProfile, {args.calls} calls, by own time\n{profile_table(fn, args.calls)}")
    if args.json:
        args.json.write_text(json.dumps({"gpu": torch.cuda.get_device_name(), "shape": [m, n, k],
                                         "calls": args.calls, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
