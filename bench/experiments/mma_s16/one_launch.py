"""Five launches of the library's fused kernel at (16, 18432, 3072), config 16x128x128 w4 s1 split 8
(the A/B's best there) or the one given as ``BLOCK_M BLOCK_N BLOCK_K WARPS STAGES SPLIT``, for a
profiler to pick one (``ncu --kernel-name regex:w4a16_gemm --launch-skip 2 --launch-count 1``).

Session 18 read the wgmma form (v27) with split K in one launch (v28) in the config the tuner
picked there in session 17: ``one_launch.py 16 64 128 4 1 4``."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from nvfp4_triton import gemm, quantize  # noqa: E402
from nvfp4_triton.tiling import TileConfig  # noqa: E402

q = quantize(torch.randn(18432, 3072, device="cuda", dtype=torch.bfloat16))
x = torch.randn(16, 3072, device="cuda", dtype=torch.bfloat16)
given = tuple(map(int, sys.argv[1:]))
block_m, block_n, block_k, warps, stages, split = given or (16, 128, 128, 4, 1, 8)
config = TileConfig(block_m, block_n, block_k, num_warps=warps, num_stages=stages, split_k=split)
for _ in range(5):
    gemm.w4a16_gemm(x, q.packed, q.block_scale, q.global_scale, None, config=config)
torch.cuda.synchronize()
