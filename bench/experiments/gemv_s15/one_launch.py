"""Five launches of the library's GEMV at (1, 18432, 3072), config 1x16x512 w4, for a profiler
to pick one (``ncu --kernel-name regex:w4a16_gemv --launch-skip 2 --launch-count 1``)."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from nvfp4_triton import gemm, quantize  # noqa: E402
from nvfp4_triton.tiling import GemvConfig  # noqa: E402

q = quantize(torch.randn(18432, 3072, device="cuda", dtype=torch.bfloat16))
x = torch.randn(1, 3072, device="cuda", dtype=torch.bfloat16)
for _ in range(5):
    gemm.w4a16_gemm(x, q.packed, q.block_scale, q.global_scale, None, config=GemvConfig(1, 16, 512, 4))
torch.cuda.synchronize()
