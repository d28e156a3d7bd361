"""Session 19, for Nsight Compute on the GPU: ``pipelined_gemm`` launched a few times at one point.

    ncu --clock-control none --kernel-name regex:pipelined --launch-skip 2 --launch-count 1 \\
        --section WarpStateStats --section SchedulerStats --section Occupancy --print-details all \\
        python3 bench/experiments/gluon_s19/one_launch.py M N K BN WARPS SPLIT STAGES
"""

import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))
sys.path.insert(0, str(HERE.parent / "gluon_s18"))
sys.path.insert(0, str(HERE))

from nvfp4_triton import quantize  # noqa: E402
from kperm_gemm import prepack_nibbles  # noqa: E402
from pipelined_gemm import pipelined_gemm  # noqa: E402


def main() -> None:
    m, n, k, bn, warps, split, stages = map(int, sys.argv[1:8])
    q = quantize(torch.randn(n, k, device="cuda", dtype=torch.bfloat16))
    words = prepack_nibbles(q.packed)
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    for _ in range(4):
        pipelined_gemm(x, words, q.block_scale, q.global_scale, None, bn, warps, split, stages)
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
