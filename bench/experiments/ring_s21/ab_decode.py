"""For the GPU (written in session 20, not yet run): the ring kernel of this branch (v35: a bf16 pair
decoded by mask, multiply, mask) against main's (v34), in one process,
at 64 and 128 weight rows a program.

On the CPU (sm_90) v35's loop is 427 instructions a trip at 64 rows against v34's 458 (3.34 against
3.58 a weight element), and 128 rows with 4 warps compile to 3.09 an element (x's repacking and the
scales are shared by two row repetitions). Nsight put v34 at 0.52 instructions issued a scheduler a
cycle, so if issue bounds it, v35 should take about 7% less time, and 128 rows up to 14% less where
the grid still fills the SMs (18432 rows: 144 programs unsplit).

For each small-M weight, M in 1, 2, 4, 8, 64 and 128 rows (4 warps, 2 stages), K split 1, 2, 4, 8:
GPU time of both kernels and cuBLAS BF16, and v35's relative L2 error against float64.

main's kernel imports the decoder this branch changes, so main's kernels folder is written beside
this script as the package ``baseline`` (git-ignored: a remote run must carry it):

    mkdir -p bench/experiments/ring_s21/baseline && touch bench/experiments/ring_s21/baseline/__init__.py
    for f in _w4a16_ring _w4a16_gemm _nvfp4_decode; do
        git show main:nvfp4_triton/kernels/$f.py > bench/experiments/ring_s21/baseline/$f.py; done
    PYTHONPATH=. python3 bench/experiments/ring_s21/ab_decode.py [--json OUT]
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
from baseline import _w4a16_ring as baseline  # noqa: E402

WEIGHTS = [(18432, 3072), (9216, 3072), (12288, 3072), (3072, 12288)]
CONFIGS = [RingConfig(bn, 4, 2, split) for bn in (64, 128) for split in (1, 2, 4, 8)]
KERNELS = {"v35": gemm._ring_kernel, "v34": Kernel(baseline.w4a16_ring_kernel)}


def runner(kernel: str, x: torch.Tensor, q, cfg: RingConfig):
    """A call of ``kernel`` through the library's ring runner (which looks its kernel up at each call)."""
    bound = gemm.w4a16_runner(x, q.packed, q.block_scale, q.global_scale, None, config=cfg)

    def call() -> torch.Tensor:
        gemm._ring_kernel = KERNELS[kernel]
        try:
            return bound(x, None)
        finally:
            gemm._ring_kernel = KERNELS["v35"]
    return call


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    for n, k in WEIGHTS:
        torch.manual_seed(0)
        q = quantize(torch.randn(n, k, device="cuda", dtype=torch.bfloat16))
        exact, dense = q.dequantize(torch.float64), q.dequantize(torch.bfloat16)
        for m in (1, 2, 4, 8):
            x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
            ref = x.double() @ exact.T
            row = {"m": m, "n": n, "k": k, "cublas_us": 1e3 * benchmark_ms(lambda: F.linear(x, dense))}
            for cfg in CONFIGS:
                name = f"bn{cfg.block_n} split{cfg.split_k}"
                for label in KERNELS:
                    call = runner(label, x, q, cfg)
                    row[f"{label} {name} err"] = float((call().double() - ref).norm() / ref.norm())
                    row[f"{label} {name} us"] = 1e3 * benchmark_ms(call)
            rows.append(row)
            best = {label: min((row[f"{label} bn{c.block_n} split{c.split_k} us"], f"bn{c.block_n} split{c.split_k}")
                               for c in CONFIGS) for label in ("v34", "v35")}
            print(f"({m}, {n:5}, {k:5}) cuBLAS {row['cublas_us']:5.1f} us; "
                  + "; ".join(f"{label} best {us:5.1f} ({name}, {row['cublas_us'] / us:.2f}x)"
                              for label, (us, name) in best.items())
                  + f"; worst error {max(v for key, v in row.items() if key.endswith('err')):.1e}", flush=True)
            if args.json:
                args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
