"""Session 20, for Nsight Compute on the GPU: the library's ring kernel launched a few times at one point.

    ncu --clock-control none --kernel-name regex:ring --launch-skip 2 --launch-count 1 \\
        --section WarpStateStats --section SchedulerStats --section Occupancy --section LaunchStats \\
        --print-details all python3 bench/experiments/ring_s20/one_ring.py M N K STAGES SPLIT
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from nvfp4_triton import quantize  # noqa: E402
from nvfp4_triton.gemm import w4a16_gemm  # noqa: E402
from nvfp4_triton.tiling import RingConfig  # noqa: E402


def main() -> None:
    m, n, k, stages, split = map(int, sys.argv[1:6])
    q = quantize(torch.randn(n, k, device="cuda", dtype=torch.bfloat16))
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    for _ in range(4):
        w4a16_gemm(x, q.packed, q.block_scale, q.global_scale, None, config=RingConfig(64, 4, stages, split))
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
