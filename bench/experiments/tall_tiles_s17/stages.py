"""Session 17: does Triton's pipelining (num_stages 2-4, on top of the hand-loaded next tile) help
the fused kernel at 16 rows of x now that it runs a wgmma (the library's kernel, v27)? Every config
is checked against a float64 reference, then timed (``autotune.benchmark_ms``).

    PYTHONPATH=. python3 bench/experiments/tall_tiles_s17/stages.py
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from nvfp4_triton import gemm, quantize  # noqa: E402
from nvfp4_triton.autotune import benchmark_ms  # noqa: E402
from nvfp4_triton.tiling import TileConfig, describe  # noqa: E402

for m, n, k in [(16, 18432, 3072), (16, 9216, 3072), (16, 3072, 12288), (1, 18432, 3072)]:
    g = torch.Generator(device="cuda").manual_seed(m + n + k)
    q = quantize(torch.randn(n, k, device="cuda", dtype=torch.bfloat16, generator=g))
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16, generator=g)
    ref = F.linear(x.double(), q.dequantize(torch.float64))
    w = q.dequantize(torch.bfloat16)
    bf16 = benchmark_ms(lambda: F.linear(x, w))
    y = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
    for bn, bk, stages, split in [(64, 128, s, p) for s in (1, 2, 3, 4) for p in (2, 4, 8)]:
        cfg = TileConfig(16, bn, bk, num_warps=4, num_stages=stages, split_k=split)
        fn = lambda: gemm.w4a16_gemm(x, q.packed, q.block_scale, q.global_scale, None, cfg, out=y)  # noqa: E731
        y.fill_(float("nan"))
        fn()
        err = float((y.double() - ref).norm() / ref.norm())
        ms = benchmark_ms(fn)
        print(f"({m}, {n}, {k}) {describe(cfg):40} {ms * 1e3:6.1f} us {bf16 / ms:.3f}x err {err:.2e}", flush=True)
