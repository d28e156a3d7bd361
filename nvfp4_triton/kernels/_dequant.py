"""Dequantize an NVFP4 weight to a dense bf16/fp16 matrix: ``out[n, k] = e2m1 * e4m3 * global``.

The first pass of the two-pass strategy (dense matrix, then cuBLAS). ``e2m1 * e4m3`` is exact;
the product with the fp32 global scale is rounded once, to the output dtype, as a BF16
checkpoint of the same weight would be.
"""

import triton
import triton.language as tl

from ._nvfp4_decode import unpack_block


@triton.jit
def nvfp4_dequant_kernel(
    packed_ptr, scale_ptr, global_scale_ptr, out_ptr,
    N, K,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """One [BLOCK_N, BLOCK_K] tile of the dense weight per program; grid (cdiv(N, BLOCK_N), cdiv(K, BLOCK_K))."""
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    k0 = tl.program_id(1) * BLOCK_K
    offs_kh = k0 // 2 + tl.arange(0, BLOCK_K // 2)
    offs_ks = k0 // 16 + tl.arange(0, BLOCK_K // 16)
    offs_k = k0 + tl.arange(0, BLOCK_K)
    rows = offs_n.to(tl.int64)[:, None]
    mask_n = offs_n[:, None] < N
    packed = tl.load(packed_ptr + rows * (K // 2) + offs_kh[None, :], mask=mask_n & (offs_kh[None, :] < K // 2), other=0)
    raw_scale = tl.load(scale_ptr + rows * (K // 16) + offs_ks[None, :], mask=mask_n & (offs_ks[None, :] < K // 16),
                        other=0)
    w = unpack_block(packed, raw_scale, BLOCK_N, BLOCK_K).to(tl.float32) * tl.load(global_scale_ptr)
    tl.store(out_ptr + rows * K + offs_k[None, :], w.to(out_ptr.dtype.element_ty), mask=mask_n & (offs_k[None, :] < K))
