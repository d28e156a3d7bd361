"""For the GPU (session 21, v36): the ring kernel at M bucket 16 (M 12-22), with 32 columns above 16 rows.

Until now the tuner offered the ring kernel up to bucket 8, and bucket 16 got the fused kernel
(1.05-1.38x of cuBLAS at M = 16, session 21 call 3). The kernel now takes BM = 32 (compiled on the
CPU for sm_90: 102-106 registers, no spills, 612 instructions a trip against 485 at 16 columns).
A bucket's config serves every M in it, so this times, at M = 12, 16 and 22 on each small-M
weight, every config the tuner would time for bucket 16: cuBLAS BF16, each config's GPU time
(``benchmark_ms``) and its relative L2 error against float64.

Prediction (before the run): at M = 16 the ring kernel 1.2-1.35x faster than the best fused config
(v31 beat it by 4-5% before v34's conflict-free layouts, which cut 0-13%, mostly at 16 columns);
at M = 22 (32 columns, 612 against 485 instructions a trip) still ahead, by less.

    PYTHONPATH=. python3 bench/experiments/ring_s21/bucket16.py [--json OUT]
"""

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from nvfp4_triton import quantize  # noqa: E402
from nvfp4_triton.autotune import benchmark_ms, candidate_configs, device_shared_memory  # noqa: E402
from nvfp4_triton.gemm import w4a16_runner  # noqa: E402
from nvfp4_triton.tiling import describe  # noqa: E402

WEIGHTS = [(18432, 3072), (9216, 3072), (12288, 3072), (3072, 12288)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    for n, k in WEIGHTS:
        torch.manual_seed(0)
        q = quantize(torch.randn(n, k, device="cuda", dtype=torch.bfloat16))
        exact, dense = q.dequantize(torch.float64), q.dequantize(torch.bfloat16)
        configs = candidate_configs(16, n, k, device_shared_memory(0))
        for m in (12, 16, 22):
            x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
            ref = x.double() @ exact.T
            row = {"m": m, "n": n, "k": k, "cublas_us": 1e3 * benchmark_ms(lambda: F.linear(x, dense))}
            for cfg in configs:
                run = w4a16_runner(x, q.packed, q.block_scale, q.global_scale, None, config=cfg)
                row[f"{describe(cfg)} err"] = float((run(x, None).double() - ref).norm() / ref.norm())
                row[f"{describe(cfg)} us"] = 1e3 * benchmark_ms(lambda: run(x, None))
            rows.append(row)
            best = {kind: min((row[f"{describe(c)} us"], describe(c)) for c in configs
                              if describe(c).startswith(kind)) for kind in ("fused", "ring")}
            print(f"({m}, {n:5}, {k:5}) cuBLAS {row['cublas_us']:5.1f} us; "
                  + "; ".join(f"{us:5.1f} us {name} ({row['cublas_us'] / us:.2f}x)" for us, name in best.values())
                  + f"; worst error {max(v for key, v in row.items() if key.endswith('err')):.1e}", flush=True)
            if args.json:
                args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
