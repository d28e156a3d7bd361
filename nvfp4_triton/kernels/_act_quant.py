"""Run-time activation quantizers: NVFP4 (per-16 blocks under a static global scale) and FP8 (per token).

Both follow the plain-torch references operation for operation (``format.quantize_activation``
and ``fp8.quantize_rows``): fp32 math, IEEE-rounded divisions (``div_rn``), and round-to-nearest-
even E4M3 conversion (see ``_e4m3``), so their codes and scales match bit for bit, on the GPU and
in the interpreter alike.
"""

import triton
import triton.language as tl

from ._e4m3 import f32_to_e4m3_bits, to_e4m3_bits
from ._nvfp4_decode import e2m1_to_f16, e4m3_to_f16


@triton.jit
def e2m1_code(v):
    """fp32 -> E2M1 code (uint8): nearest grid value, ties to the even code, saturating at +-6.

    The seven comparisons are the rounding boundaries of the grid 0, .5, 1, 1.5, 2, 3, 4, 6;
    ``>`` or ``>=`` at each tie sends it to the even code. Negative values (tiny ones included)
    get the sign bit; NaN gets code 0.
    """
    m = tl.abs(v)
    code = ((m > 0.25).to(tl.uint8) + (m >= 0.75).to(tl.uint8) + (m > 1.25).to(tl.uint8)
            + (m >= 1.75).to(tl.uint8) + (m > 2.5).to(tl.uint8) + (m >= 3.5).to(tl.uint8)
            + (m > 5.0).to(tl.uint8))
    return code | ((v < 0).to(tl.uint8) << 3)


@triton.jit
def nvfp4_act_quant_kernel(
    x_ptr, input_scale_ptr, xq_ptr, packed_ptr, scale_ptr,
    M, K, stride_xm,
    WRITE_CODES: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """Quantize a ``BLOCK_M x BLOCK_K`` tile of x; grid (cdiv(M, BLOCK_M), cdiv(K, BLOCK_K)).

    Writes ``xq = e2m1 * e4m3`` (exact in bf16/fp16; the global scale is left to the GEMM) and,
    with WRITE_CODES, the packed codes ``[M, K/2]`` and the scale bytes ``[M, K/16]``.
    """
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_k = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    rows = offs_m.to(tl.int64)[:, None]
    mask = (offs_m[:, None] < M) & (offs_k[None, :] < K)
    x = tl.load(x_ptr + rows * stride_xm + offs_k[None, :], mask=mask, other=0.0).to(tl.float32)
    g = tl.load(input_scale_ptr)

    blocks = tl.reshape(x, (BLOCK_M, BLOCK_K // 16, 16))
    amax = tl.max(tl.abs(blocks), axis=2)
    has_nan = tl.max((blocks != blocks).to(tl.int32), axis=2) > 0
    scale = tl.math.div_rn(amax, 6.0 * g)
    scale = tl.where(scale == 0.0, 1.0, scale)
    scale8 = f32_to_e4m3_bits(tl.minimum(tl.maximum(scale, 0.001953125), 448.0))  # within [2**-9, 448]
    # A NaN anywhere in a block makes its scale E4M3's NaN, 0x7F.
    scale_bits = tl.where(has_nan, 0x7F, scale8).to(tl.uint8)
    block_scale = tl.where(has_nan, float("nan"), e4m3_to_f16(scale8).to(tl.float32))

    v = tl.math.div_rn(blocks, (block_scale * g)[:, :, None])
    codes = e2m1_code(v)
    xq = e2m1_to_f16(codes).to(tl.float32) * block_scale[:, :, None]
    tl.store(xq_ptr + rows * K + offs_k[None, :], tl.reshape(xq, (BLOCK_M, BLOCK_K)).to(xq_ptr.dtype.element_ty),
             mask=mask)

    if WRITE_CODES:
        pairs = tl.reshape(codes, (BLOCK_M, BLOCK_K // 2, 2))
        low, high = tl.split(pairs)
        offs_kh = tl.program_id(1) * (BLOCK_K // 2) + tl.arange(0, BLOCK_K // 2)
        tl.store(packed_ptr + rows * (K // 2) + offs_kh[None, :], low | (high << 4),
                 mask=(offs_m[:, None] < M) & (offs_kh[None, :] < K // 2))
        offs_ks = tl.program_id(1) * (BLOCK_K // 16) + tl.arange(0, BLOCK_K // 16)
        tl.store(scale_ptr + rows * (K // 16) + offs_ks[None, :], scale_bits,
                 mask=(offs_m[:, None] < M) & (offs_ks[None, :] < K // 16))


@triton.jit
def fp8_row_quant_kernel(
    x_ptr, xq_ptr, scale_ptr,
    K, stride_xm,
    BIT_MATH: tl.constexpr,
    BLOCK_K: tl.constexpr,
    ONE_TILE: tl.constexpr,
):
    """Quantize one row (token) of x per program to E4M3 bits (``xq_ptr``: uint8); grid (M,). See ``fp8_row``."""
    fp8_row(x_ptr, xq_ptr, scale_ptr, tl.program_id(0).to(tl.int64), K, stride_xm, BIT_MATH, BLOCK_K, ONE_TILE)


@triton.jit
def fp8_row(
    x_ptr, xq_ptr, scale_ptr,
    row, K, stride_xm,
    BIT_MATH: tl.constexpr,
    BLOCK_K: tl.constexpr,
    ONE_TILE: tl.constexpr,
):
    """Quantize row ``row`` (int64) of x to E4M3 bits with scale ``amax / 448``.

    ``clamp(x * (1 / scale), +-448)`` rounded to E4M3; an all-zero row gets scale 1. ONE_TILE
    (``K <= BLOCK_K``) keeps the row in registers between its amax and its quantization, so it is
    read from memory once; longer rows are swept twice. BIT_MATH: see ``_e4m3``.
    """
    offs = tl.arange(0, BLOCK_K)
    if ONE_TILE:
        x = tl.load(x_ptr + row * stride_xm + offs, mask=offs < K, other=0.0).to(tl.float32)
        amax = tl.abs(x)
    else:
        amax = tl.zeros((BLOCK_K,), dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            x = tl.load(x_ptr + row * stride_xm + k0 + offs, mask=k0 + offs < K, other=0.0).to(tl.float32)
            amax = tl.maximum(amax, tl.abs(x))
    scale = tl.math.div_rn(tl.max(amax, axis=0), 448.0)
    scale = tl.where(scale == 0.0, 1.0, scale)
    tl.store(scale_ptr + row, scale)
    inverse = tl.math.div_rn(1.0, scale)
    if ONE_TILE:
        q = tl.minimum(tl.maximum(x * inverse, -448.0), 448.0)
        tl.store(xq_ptr + row * K + offs, to_e4m3_bits(q, BIT_MATH), mask=offs < K)
    else:
        for k0 in range(0, K, BLOCK_K):
            x = tl.load(x_ptr + row * stride_xm + k0 + offs, mask=k0 + offs < K, other=0.0).to(tl.float32)
            q = tl.minimum(tl.maximum(x * inverse, -448.0), 448.0)
            tl.store(xq_ptr + row * K + k0 + offs, to_e4m3_bits(q, BIT_MATH), mask=k0 + offs < K)
