"""Session 23, GPU: host time of an eager call on the wgmma path against two-pass and cuBLAS, at the
M = 512 shapes where the tuner now chooses between them.

The tuner compares GPU time only. In an eager FLUX step the text stream's calls are short on the
GPU (20-90 us) and their host time can decide the step (bench/NOTES.md), and the wgmma runner does
host work two-pass does not: x's TMA descriptor made every call, and Triton's launcher encoding both
descriptors at every launch. For each shape: host and wall us a call over 300 back-to-back calls of
a kept runner (``w4a16_runner`` once, then ``run(x, None)``: what an eager ``NVFP4Linear`` does),
for ``F.linear`` on the bf16 weight, two-pass and both wgmma configs; then the cProfile of 200
wgmma calls.

Prediction: wgmma 10-25 us more host time a call than two-pass's one Triton launch + cuBLAS
(descriptor construction in Python is the new cost); under the GPU time at these shapes (75-95 us),
so back-to-back wall time follows the GPU.

    PYTHONPATH=. python3 bench/experiments/wgmma_s23/host_wgmma.py
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench_host import per_call_us, profile_table  # noqa: E402
from nvfp4_triton import quantize  # noqa: E402
from nvfp4_triton.gemm import w4a16_runner  # noqa: E402
from nvfp4_triton.tiling import TwoPassConfig, WgmmaConfig, describe  # noqa: E402

POINTS = [(512, 3072, 3072), (512, 12288, 3072), (512, 3072, 12288)]
CONFIGS = [TwoPassConfig(), WgmmaConfig(256, 4), WgmmaConfig(256, 5)]


def main() -> None:
    for m, n, k in POINTS:
        torch.manual_seed(0)
        q = quantize(torch.randn(n, k, device="cuda", dtype=torch.bfloat16))
        x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        dense = q.dequantize(torch.bfloat16)
        host, wall = per_call_us(lambda: F.linear(x, dense), 300)
        print(f"({m}, {n}, {k}) {'cuBLAS (F.linear)':28} host {host:6.1f} wall {wall:6.1f} us", flush=True)
        for cfg in CONFIGS:
            run = w4a16_runner(x, q.packed, q.block_scale, q.global_scale, None, config=cfg)
            host, wall = per_call_us(lambda: run(x, None), 300)
            print(f"({m}, {n}, {k}) {describe(cfg):28} host {host:6.1f} wall {wall:6.1f} us", flush=True)
        if (m, n, k) == POINTS[1]:
            run = w4a16_runner(x, q.packed, q.block_scale, q.global_scale, None, config=CONFIGS[2])
            print(profile_table(lambda: run(x, None), 200, rows=16), flush=True)


if __name__ == "__main__":
    main()
