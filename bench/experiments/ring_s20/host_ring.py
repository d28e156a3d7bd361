"""Session 20, GPU: host time of an eager call per strategy at small M, to find why the ring kernel's
eager column in ``bench_gemm --shapes small`` (call 1: 86-97 us) stood far above its GPU time (17-25 us)
and above the GEMV's and the fused kernel's.

For each (M, N, K) and config: host and wall us a call over 300 back-to-back calls
(``bench_host.per_call_us``), through ``w4a16_gemm(config=...)`` (binds every call) and through a
kept runner (``w4a16_runner`` once, then ``run(x, None)``: what an eager ``NVFP4Linear`` does), and
the cProfile of 200 kept-runner calls of the ring config.

    PYTHONPATH=. python3 bench/experiments/ring_s20/host_ring.py
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench_host import per_call_us, profile_table  # noqa: E402
from nvfp4_triton import quantize  # noqa: E402
from nvfp4_triton.gemm import w4a16_gemm, w4a16_runner  # noqa: E402
from nvfp4_triton.tiling import GemvConfig, RingConfig, TileConfig, describe  # noqa: E402

POINTS = [(4, 18432, 3072), (4, 3072, 12288)]
CONFIGS = [RingConfig(64, 4, 2), RingConfig(64, 4, 2, 2), RingConfig(64, 4, 2, 8), GemvConfig(4, 16, 512, 4),
           TileConfig(16, 64, 128, num_warps=4, num_stages=1, split_k=2)]


def main() -> None:
    for m, n, k in POINTS:
        torch.manual_seed(0)
        q = quantize(torch.randn(n, k, device="cuda", dtype=torch.bfloat16))
        x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        for cfg in CONFIGS:
            args = (x, q.packed, q.block_scale, q.global_scale, None)
            per_call = per_call_us(lambda: w4a16_gemm(*args, config=cfg), 300)
            run = w4a16_runner(*args, config=cfg)
            kept = per_call_us(lambda: run(x, None), 300)
            print(f"({m}, {n}, {k}) {describe(cfg):28} w4a16_gemm host {per_call[0]:6.1f} wall {per_call[1]:6.1f} us;"
                  f" kept runner host {kept[0]:6.1f} wall {kept[1]:6.1f} us", flush=True)
            if isinstance(cfg, RingConfig) and cfg.split_k == 2:
                print(profile_table(lambda: run(x, None), 200, rows=14), flush=True)


if __name__ == "__main__":
    main()
