"""Candidate (not yet timed): per-token E4M3 quantization that reads each row once.

The library's ``fp8_row_quant_kernel`` sweeps a row twice (amax, then quantize) in tiles of at
most 2048, so every FLUX row is loaded twice. Here the whole row is one tile (BLOCK_K, the next
power of two of K, up to 16384 for FLUX's K = 15360): one load, the amax from registers, then the
same math as the library kernel, so the output must match it bit for bit.
"""

import triton
import triton.language as tl

from nvfp4_triton.kernels._e4m3 import to_e4m3_bits


@triton.jit
def fp8_row_quant_one_sweep_kernel(
    x_ptr, xq_ptr, scale_ptr,
    K, stride_xm,
    BIT_MATH: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """One row per program, ``K <= BLOCK_K``: scale ``amax / 448`` (1 for an all-zero row), then E4M3 bits."""
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK_K)
    x = tl.load(x_ptr + row * stride_xm + offs, mask=offs < K, other=0.0).to(tl.float32)
    scale = tl.math.div_rn(tl.max(tl.abs(x), axis=0), 448.0)
    scale = tl.where(scale == 0.0, 1.0, scale)
    tl.store(scale_ptr + row, scale)
    q = tl.minimum(tl.maximum(x * tl.math.div_rn(1.0, scale), -448.0), 448.0)
    tl.store(xq_ptr + row * K + offs, to_e4m3_bits(q, BIT_MATH), mask=offs < K)
