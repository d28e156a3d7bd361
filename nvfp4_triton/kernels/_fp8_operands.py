"""Both FP8 operands of an ``activation="fp8"`` GEMM in one launch: x's rows and the weight's E4M3 copy.

Run as two kernels, the per-token quantizer and the dequantization each pay a launch and a tail
of their own; at M = 512 the quantizer is mostly that fixed cost, and in eager mode each launch
also costs host time. Here one grid does both: its first M programs quantize one row each
(``fp8_row``), the others each dequantize one weight tile (``dequant_tile``). The math, and so
every bit of the result, is that of the two kernels.
"""

import triton
import triton.language as tl

from ._act_quant import fp8_row
from ._dequant import dequant_tile


@triton.jit
def fp8_operands_kernel(
    x_ptr, xq_ptr, row_scale_ptr,
    packed_ptr, scale_ptr, multiplier_ptr, w8_ptr,
    M, N, K, stride_xm,
    BIT_MATH: tl.constexpr,
    ROW_TILE: tl.constexpr, ONE_TILE: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """grid (M + cdiv(N, BLOCK_N) * cdiv(K, BLOCK_K),).

    Rows: as ``fp8_row_quant_kernel`` with ``BLOCK_K=ROW_TILE``. Tiles: as ``nvfp4_dequant_kernel``
    with per-row ``multiplier_ptr`` into ``w8_ptr`` (uint8 E4M3 bits).
    """
    pid = tl.program_id(0)
    if pid < M:
        fp8_row(x_ptr, xq_ptr, row_scale_ptr, pid.to(tl.int64), K, stride_xm, BIT_MATH, ROW_TILE, ONE_TILE)
    else:
        tile = pid - M
        tiles_k = tl.cdiv(K, BLOCK_K)
        dequant_tile(packed_ptr, scale_ptr, multiplier_ptr, w8_ptr, N, K, tile // tiles_k, tile % tiles_k,
                     True, BIT_MATH, BLOCK_N, BLOCK_K)
