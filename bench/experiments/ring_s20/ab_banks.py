"""Session 20, GPU: the ring kernel with x's and the codes' shared-memory tiles laid out so that no two
lanes of a 16-byte load's phase share a bank (the working tree), against session 19's layout
(the kernel as of 861e20e, written next to this script as ``baseline_ring.py`` before the run; the
file is git-ignored, so a remote run must carry it), in one process.

Nsight Compute (call 3) measured session 19's kernel at (8, 18432, 3072), 2 stages, split 2: 12.3-way
bank conflicts on average over its shared loads, 69% of their wavefronts; x's 16-byte loads 4 times
their ideal wavefronts, the codes' twice; short-scoreboard stalls 3.36 of 8.73 cycles an issued
instruction. For each small-M weight, M in 1, 2, 4, 8 and K split 1, 2, 3, 4, 8 (2 stages): GPU time
of both kernels (``autotune.benchmark_ms``) and cuBLAS BF16, and the new kernel's relative L2 error
against float64. Prints a row per point and writes the rows to ``--json``.

    git show 861e20e:nvfp4_triton/kernels/_w4a16_ring.py > bench/experiments/ring_s20/baseline_ring.py
    PYTHONPATH=. python3 bench/experiments/ring_s20/ab_banks.py [--json OUT]
"""

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))
sys.path.insert(0, str(HERE))

from nvfp4_triton import gemm, quantize  # noqa: E402
from nvfp4_triton.autotune import benchmark_ms  # noqa: E402
from nvfp4_triton.launch import Kernel  # noqa: E402
from nvfp4_triton.tiling import RingConfig  # noqa: E402
import baseline_ring  # noqa: E402

WEIGHTS = [(18432, 3072), (9216, 3072), (12288, 3072), (3072, 12288)]
SPLITS = (1, 2, 3, 4, 8)
KERNELS = {"new": gemm._ring_kernel, "s19": Kernel(baseline_ring.w4a16_ring_kernel)}


def runner(kernel: str, x: torch.Tensor, q, cfg: RingConfig):
    """A call of ``kernel`` through the library's ring runner (which looks its kernel up at each call)."""
    bound = gemm.w4a16_runner(x, q.packed, q.block_scale, q.global_scale, None, config=cfg)

    def call() -> torch.Tensor:
        gemm._ring_kernel = KERNELS[kernel]
        try:
            return bound(x, None)
        finally:
            gemm._ring_kernel = KERNELS["new"]
    return call


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    for n, k in WEIGHTS:
        torch.manual_seed(0)
        q = quantize(torch.randn(n, k, device="cuda", dtype=torch.bfloat16))
        exact = q.dequantize(torch.float64)
        dense = q.dequantize(torch.bfloat16)
        for m in (1, 2, 4, 8):
            x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
            ref = x.double() @ exact.T
            row = {"m": m, "n": n, "k": k, "cublas_us": 1e3 * benchmark_ms(lambda: F.linear(x, dense))}
            for split in SPLITS:
                cfg = RingConfig(64, 4, 2, split)
                for kernel in KERNELS:
                    call = runner(kernel, x, q, cfg)
                    y = call()
                    row[f"{kernel} split{split} err"] = float((y.double() - ref).norm() / ref.norm())
                    row[f"{kernel} split{split} us"] = 1e3 * benchmark_ms(call)
            rows.append(row)
            best = {kern: min(row[f"{kern} split{s} us"] for s in SPLITS) for kern in KERNELS}
            print(f"({m}, {n:5}, {k:5}) cuBLAS {row['cublas_us']:5.1f} us; best s19 {best['s19']:5.1f} "
                  f"({row['cublas_us'] / best['s19']:.2f}x), new {best['new']:5.1f} ({row['cublas_us'] / best['new']:.2f}x); "
                  + " ".join(f"split{s} {row[f's19 split{s} us']:.1f}->{row[f'new split{s} us']:.1f}" for s in SPLITS)
                  + f"; worst error {max(v for key, v in row.items() if key.endswith('err')):.1e}", flush=True)
            if args.json:
                args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
