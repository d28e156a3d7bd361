"""Session 17: how much of a split-K fused GEMM at small M is the second launch (the sum kernel)?
Times, in one process, the library's split configs whole (fused kernel + ``splitk_reduce_kernel``)
and the fused kernel's launch alone (partial sums only, not a correct y), as CUDA-graph replays
with L2 flushed (``autotune.benchmark_ms``).

    PYTHONPATH=. python3 bench/experiments/tall_tiles_s17/reduce_share.py
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from nvfp4_triton import gemm, quantize  # noqa: E402
from nvfp4_triton.autotune import benchmark_ms  # noqa: E402
from nvfp4_triton.launch import cdiv  # noqa: E402
from nvfp4_triton.tiling import GemvConfig, TileConfig, describe  # noqa: E402

CASES = [((16, 18432, 3072), TileConfig(16, 64, 128, num_stages=1, split_k=4)),
         ((16, 18432, 3072), TileConfig(16, 64, 128, num_stages=1, split_k=1)),
         ((16, 9216, 3072), TileConfig(16, 64, 128, num_stages=1, split_k=4)),
         ((16, 12288, 3072), TileConfig(16, 64, 128, num_stages=1, split_k=2)),
         ((16, 3072, 12288), TileConfig(16, 64, 128, num_stages=1, split_k=8)),
         ((1, 3072, 12288), GemvConfig(1, 16, 512, split_k=4)),
         ((1, 18432, 3072), GemvConfig(1, 16, 512))]

for (m, n, k), cfg in CASES:
    g = torch.Generator(device="cuda").manual_seed(m + n + k)
    q = quantize(torch.randn(n, k, device="cuda", dtype=torch.bfloat16, generator=g))
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16, generator=g)
    bias = torch.randn(n, device="cuda", dtype=torch.bfloat16, generator=g)
    y = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
    whole = benchmark_ms(lambda: gemm.w4a16_gemm(x, q.packed, q.block_scale, q.global_scale, bias, cfg, out=y))
    k_per_split, split = gemm.k_slices(k, cfg.block_k, cfg.split_k)
    partial = torch.empty(split, m, n, device="cuda", dtype=torch.float32)
    words, scales = q.packed.view(torch.int64), q.block_scale.view(torch.uint8)
    if isinstance(cfg, TileConfig):
        def alone():
            gemm._gemm_kernel((cdiv(m, cfg.block_m) * cdiv(n, cfg.block_n), split), x, words, scales,
                              q.global_scale, bias, partial if split > 1 else y, m, n, k, k_per_split,
                              x.stride(0), x.stride(1), y.stride(0), y.stride(1), HAS_BIAS=split == 1,
                              GELU_TANH=False, DOT_F32=False, PACKED_MUL=True, BLOCK_M=cfg.block_m,
                              BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k, GROUP_M=cfg.group_m, SPLIT_K=split,
                              num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    else:
        xw = x.view(torch.int64)

        def alone():
            gemm._gemv_kernel((cdiv(n, cfg.block_n), split), xw, words, scales, q.global_scale, bias,
                              partial if split > 1 else y, m, n, k, k // 16, k_per_split, xw.stride(0), y.stride(0),
                              y.stride(1), X_BF16=True, HAS_BIAS=split == 1, GELU_TANH=False,
                              BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k, SPLIT_K=split,
                              num_warps=cfg.num_warps)
    first = benchmark_ms(alone)
    print(f"({m}, {n}, {k}) {describe(cfg):36} whole {whole * 1e3:6.1f} us, first launch alone {first * 1e3:6.1f} us, "
          f"difference {(whole - first) * 1e3:5.1f} us", flush=True)
