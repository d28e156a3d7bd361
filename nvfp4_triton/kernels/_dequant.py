"""Dequantize an NVFP4 weight to a dense matrix: ``out[n, k] = e2m1 * e4m3 * factor``.

The first pass of the two-pass strategies (dense matrix, then cuBLAS). ``e2m1 * e4m3`` is
exact in fp32; the product with the factor is rounded once, to the output dtype.
- bf16/fp16 output: the factor is the global scale, so the matrix is the weight itself, rounded as
  a BF16 checkpoint of it would be.
- E4M3 output (the FP8 path; ``out`` is its uint8 bit view): the factor is a per-row power of two chosen at load time so that the
  row's largest possible value fits under 448 (``fp8.row_multipliers``); cuBLAS applies
  ``global / factor`` as a per-row scale. A power of two adds no rounding of its own.
"""

import triton
import triton.language as tl

from ._e4m3 import to_e4m3_bits
from ._nvfp4_decode import unpack_block


@triton.jit
def nvfp4_dequant_kernel(
    packed_ptr, scale_ptr, factor_ptr, out_ptr,
    N, K,
    PER_ROW: tl.constexpr, BIT_MATH: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """One [BLOCK_N, BLOCK_K] tile of the dense weight per program; grid (cdiv(N, BLOCK_N), cdiv(K, BLOCK_K)).

    ``factor_ptr``: one fp32 per row with PER_ROW, else one fp32 for the whole matrix. BIT_MATH:
    see ``_e4m3`` (E4M3 output only).
    """
    dequant_tile(packed_ptr, scale_ptr, factor_ptr, out_ptr, N, K, tl.program_id(0), tl.program_id(1),
                 PER_ROW, BIT_MATH, BLOCK_N, BLOCK_K)


@triton.jit
def dequant_tile(
    packed_ptr, scale_ptr, factor_ptr, out_ptr,
    N, K, tile_n, tile_k,
    PER_ROW: tl.constexpr, BIT_MATH: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """Write tile ``(tile_n, tile_k)`` of the dense weight (arguments as in ``nvfp4_dequant_kernel``)."""
    offs_n = tile_n * BLOCK_N + tl.arange(0, BLOCK_N)
    k0 = tile_k * BLOCK_K
    offs_kh = k0 // 2 + tl.arange(0, BLOCK_K // 2)
    offs_ks = k0 // 16 + tl.arange(0, BLOCK_K // 16)
    offs_k = k0 + tl.arange(0, BLOCK_K)
    rows = offs_n.to(tl.int64)[:, None]
    mask_n = offs_n[:, None] < N
    packed = tl.load(packed_ptr + rows * (K // 2) + offs_kh[None, :], mask=mask_n & (offs_kh[None, :] < K // 2), other=0)
    raw_scale = tl.load(scale_ptr + rows * (K // 16) + offs_ks[None, :], mask=mask_n & (offs_ks[None, :] < K // 16),
                        other=0)
    w = unpack_block(packed, raw_scale, BLOCK_N, BLOCK_K).to(tl.float32)
    if PER_ROW:
        w = w * tl.load(factor_ptr + offs_n, mask=offs_n < N, other=1.0)[:, None]
    else:
        w = w * tl.load(factor_ptr)
    if out_ptr.dtype.element_ty == tl.uint8:
        w = to_e4m3_bits(w, BIT_MATH)
    tl.store(out_ptr + rows * K + offs_k[None, :], w.to(out_ptr.dtype.element_ty), mask=mask_n & (offs_k[None, :] < K))
