"""For the GPU (written in session 20, not yet run): the ring kernel of this branch (v35: a bf16 pair
decoded by mask, multiply, mask) against main's (v34, ``ring_s20/baseline_ring.py``), in one process,
at 64 and 128 weight rows a program.

On the CPU (sm_90) v35's loop is 427 instructions a trip at 64 rows against v34's 458 (3.34 against
3.58 a weight element), and 128 rows with 4 warps compile to 3.09 an element (x's repacking and the
scales are shared by two row repetitions). Nsight put v34 at 0.52 instructions issued a scheduler a
cycle, so if issue bounds it, v35 should take about 7% less time, and 128 rows up to 14% less where
the grid still fills the SMs (18432 rows: 144 programs unsplit).

For each small-M weight, M in 1, 2, 4, 8, 64 and 128 rows (4 warps, 2 stages), K split 1, 2, 4, 8:
GPU time of both kernels and cuBLAS BF16, and v35's relative L2 error against float64.

    git show main:nvfp4_triton/kernels/_w4a16_ring.py > bench/experiments/ring_s20/baseline_ring.py
    PYTHONPATH=. python3 bench/experiments/ring_s21/ab_decode.py [--json OUT]   # carry baseline_ring.py
"""

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))
sys.path.insert(0, str(HERE.parent / "ring_s20"))

from nvfp4_triton import quantize  # noqa: E402
from nvfp4_triton.autotune import benchmark_ms  # noqa: E402
from nvfp4_triton.tiling import RingConfig  # noqa: E402
from ab_banks import WEIGHTS, runner  # noqa: E402

CONFIGS = [RingConfig(bn, 4, 2, split) for bn in (64, 128) for split in (1, 2, 4, 8)]


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
                for kernel, label in (("new", "v35"), ("s19", "v34")):  # "s19": ab_banks's name for the baseline
                    call = runner(kernel, x, q, cfg)
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
