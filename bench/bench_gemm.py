"""Time nvfp4_linear against cuBLAS BF16 (F.linear on the dequantized weight) on FLUX.1-dev shapes.

    python bench/bench_gemm.py [--shapes flux|small|all] [--json PATH]

Configs are autotuned on first use (into the usual cache); NVFP4_TRITON_AUTOTUNE=0 times the
default config instead.

Both sides get the same bf16 activation and bias; times are medians of
``triton.testing.do_bench``, which clears the L2 cache before every call, so weights are
read from HBM as in a real forward. Ratios above 1 mean NVFP4 is faster. Each shape is also
checked against the float64 product with the dequantized weight before it is timed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import triton
from triton.testing import do_bench

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flux_shapes import SHAPE_SETS  # noqa: E402

from nvfp4_triton import __version__, gemm, nvfp4_linear, quantize  # noqa: E402
from nvfp4_triton.autotune import autotune_enabled  # noqa: E402
from nvfp4_triton.scratch import scratch_bytes  # noqa: E402
from nvfp4_triton.tiling import describe  # noqa: E402


def environment() -> dict:
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        driver = "unknown"
    props = torch.cuda.get_device_properties(0)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "gpu": props.name,
        "sms": props.multi_processor_count,
        "capability": f"{props.major}.{props.minor}",
        "driver": driver,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": triton.__version__,
        "nvfp4_triton": __version__,
        "python": platform.python_version(),
    }


def warm_up_gpu(seconds: float = 2.0) -> None:
    """Keep the tensor cores busy for a while so that clocks have left idle before the first row."""
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(10):
            a @ a
        torch.cuda.synchronize()


def bench_shape(label: str, m: int, n: int, k: int) -> dict:
    gen = torch.Generator(device="cuda").manual_seed(m * 7 + n * 3 + k)
    w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16, generator=gen)
    q = quantize(w)
    w_bf16 = q.dequantize(torch.bfloat16)
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16, generator=gen)
    bias = torch.randn(n, device="cuda", dtype=torch.bfloat16, generator=gen)

    ours = nvfp4_linear(x, q, bias)
    ref = F.linear(x.double(), q.dequantize(torch.float64), bias.double())
    rel_err = float((ours.double() - ref).norm() / ref.norm())
    del ref

    t_bf16 = do_bench(lambda: F.linear(x, w_bf16, bias), warmup=25, rep=100, return_mode="median")
    t_ours = do_bench(lambda: nvfp4_linear(x, q, bias), warmup=25, rep=100, return_mode="median")
    cfg = gemm.tuner.lookup((x.device.index, x.dtype, gemm.m_bucket(m), n, k, True))
    flops = 2.0 * m * n * k
    return {
        "label": label, "M": m, "N": n, "K": k,
        "bf16_ms": t_bf16, "ours_ms": t_ours, "ratio": t_bf16 / t_ours,
        "ours_tflops": flops / t_ours * 1e-9, "bf16_tflops": flops / t_bf16 * 1e-9,
        "ours_weight_gbps": q.nbytes / t_ours * 1e-6, "bf16_weight_gbps": n * k * 2 / t_bf16 * 1e-6,
        "rel_err_vs_fp64": rel_err,
        "strategy": describe(cfg) + ("" if autotune_enabled() else " (default config)"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", choices=sorted(SHAPE_SETS), default="flux")
    parser.add_argument("--json", type=Path, help="write environment and rows to this JSON file")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.error("needs a CUDA GPU: timings under Triton's interpreter mean nothing")

    env = environment()
    print(" ".join(f"{k}={v}" for k, v in env.items()), flush=True)
    warm_up_gpu()
    rows = []
    header = f"{'shape':34} {'M':>5} {'N':>6} {'K':>6} {'bf16 ms':>8} {'ours ms':>8} {'ratio':>6} " \
             f"{'TFLOP/s':>8} {'W GB/s':>7} {'rel err':>8}  config"
    print(header)
    for label, m, n, k, _ in SHAPE_SETS[args.shapes]:
        r = bench_shape(label, m, n, k)
        rows.append(r)
        print(f"{label:34} {m:5} {n:6} {k:6} {r['bf16_ms']:8.4f} {r['ours_ms']:8.4f} {r['ratio']:6.3f} "
              f"{r['ours_tflops']:8.1f} {r['ours_weight_gbps']:7.0f} {r['rel_err_vs_fp64']:8.1e}  {r['strategy']}",
              flush=True)
    ratios = torch.tensor([r["ratio"] for r in rows])
    print(f"geometric mean ratio (bf16 time / ours): {float(ratios.log().mean().exp()):.3f}; "
          f"two-pass scratch held: {scratch_bytes() / 2**20:.0f} MiB")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"environment": env, "shapes": args.shapes, "rows": rows}, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
