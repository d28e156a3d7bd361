"""Session 23, v47: v43 (``wgmma_s22/wgmma_tma.py``) with 128 weight rows a program (two consumer
warpgroups on one x tile) and 128 x rows, where v43 took 64 and 256.

Why: in v43's Nsight source counters at (512, 3072, 3072) (session 22, call 12) the consumer's
samples wait on the A tile (237) and on x's tile (103), and by the numbers x's traffic is what a
faster consumer would run into. A 64 x 256 tile brings 32 KB of x and 2 KB of codes from L2 for
2.1 MFLOP a step, 16.6 bytes a kFLOP; at the tensor pipe's full rate that would be about 15 TB/s
over 132 SMs, above what L2 delivers. 128 x 128 tiles take 16 KB of x and 4 KB of codes for the
same FLOPs, 9.8 bytes a kFLOP (41% less), and give the same 96 programs at M = 512, N = 3072. The
accumulator is 64 registers a consumer thread instead of 128, so the launch fits 16 warps (the
loader's one warp is padded to a warpgroup) at 128 registers, and setmaxnreg gives the consumers
192. Session 22 tried 128 weight rows only at x tiles of 256 rows, which cannot launch (ptxas needs
154 registers for that wgmma, 16 warps allow 128), and v42 (128 rows on the cp.async producer)
before the TMA loader. A first run at 152 registers (call 9) was refused at launch: 512 threads.
v43's code takes BN as a parameter; this only runs it at the new configs.

Prediction: 0.72-0.80x at the M = 512 shapes (v43: 0.59-0.70), 0.75-0.8x at (4096, 3072, 3072).

    python3 bench/experiments/wgmma_s23/wide_rows.py            # compile for sm_90
    timeout 200 python3 bench/experiments/wgmma_s23/wide_rows.py --gpu
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "bench" / "experiments" / "wgmma_s22"))

from wgmma_tma import compile_for_sm90, wgmma_tma_gemm  # noqa: E402
from wgmma_ws import check_and_time  # noqa: E402

CONFIGS = [(64, 256, 4, 104, 168, 1), (128, 128, 4, 104, 128, 1), (128, 128, 5, 104, 128, 1),
           (128, 128, 6, 104, 128, 1), (128, 128, 6, 88, 96, 2), (128, 128, 5, 80, 96, 2)]
"""(BN, BM, STAGES, producer registers, maxnreg, producers), as v43's; the first is v43's best. With
two producers the launch has 20 warps, so 96 registers a thread (the consumers get 136-144)."""


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--gpu", action="store_true")
    if parser.parse_args().gpu:
        check_and_time(wgmma_tma_gemm, CONFIGS)
    else:
        for cfg in CONFIGS:
            compile_for_sm90(512, 3072, 3072, *cfg)
