"""Five launches of the library's fused kernel at (16, 18432, 3072) in the config the tuner picked
there in session 17 (16x64x128 w4 s1 split 4: the wgmma form, v27, with split K in one launch,
v28), for Nsight Compute to read one of them (run-first item 1 of bench/NOTES.md, session 17):

    ncu --clock-control none --kernel-name regex:w4a16_gemm --launch-skip 2 --launch-count 1 \
        --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats \
        --section SchedulerStats --section Occupancy --section LaunchStats \
        python3 bench/experiments/small_m_s18/one_launch.py
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from nvfp4_triton import gemm, quantize  # noqa: E402
from nvfp4_triton.tiling import TileConfig  # noqa: E402

q = quantize(torch.randn(18432, 3072, device="cuda", dtype=torch.bfloat16))
x = torch.randn(16, 3072, device="cuda", dtype=torch.bfloat16)
config = TileConfig(16, 64, 128, num_warps=4, num_stages=1, split_k=4)
for _ in range(5):
    gemm.w4a16_gemm(x, q.packed, q.block_scale, q.global_scale, None, config=config)
torch.cuda.synchronize()
