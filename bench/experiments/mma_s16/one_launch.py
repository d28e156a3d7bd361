"""Five launches of the library's fused kernel at (16, 18432, 3072), config 16x128x128 w4 s1 split 8
(the A/B's best there), for a profiler to pick one
(``ncu --kernel-name regex:w4a16_gemm --launch-skip 2 --launch-count 1``)."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from nvfp4_triton import gemm, quantize  # noqa: E402
from nvfp4_triton.tiling import TileConfig  # noqa: E402

q = quantize(torch.randn(18432, 3072, device="cuda", dtype=torch.bfloat16))
x = torch.randn(16, 3072, device="cuda", dtype=torch.bfloat16)
config = TileConfig(16, 128, 128, num_warps=4, num_stages=1, split_k=8)
for _ in range(5):
    gemm.w4a16_gemm(x, q.packed, q.block_scale, q.global_scale, None, config=config)
torch.cuda.synchronize()
