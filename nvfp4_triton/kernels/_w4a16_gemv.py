"""W4A16 GEMV for a handful of activation rows: ``y = (x @ dequant(W)^T) * global_scale (+ bias)``.

At M <= 4 the GEMM is a stream of weight bytes, and tensor cores buy nothing: the fused GEMM
pads M to 16 and passes every dequantized tile through shared memory to reach them. Here the
packed codes arrive as one int64 word per 16-element scale block, so a program's tile of words
``[BLOCK_N, BLOCK_K / 16]`` lines up element for element with its tile of block scales: each
nibble is decoded where it was loaded, multiplied on CUDA cores by the matching activation, and
the block's scale is applied once per 16 products. No tensor is reshaped or interleaved.
"""

import triton
import triton.language as tl

from ._nvfp4_decode import e4m3_to_f16, nibble_e2m1_f32
from ._w4a16_gemm import gelu_tanh


@triton.jit(do_not_specialize=["M"])
def w4a16_gemv_kernel(
    x_ptr, words_ptr, scale_ptr, global_scale_ptr, bias_ptr, y_ptr,
    M, N, K, blocks_per_row,
    stride_xm, stride_xk, stride_ym, stride_yn,
    HAS_BIAS: tl.constexpr,
    GELU_TANH: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """BLOCK_N output columns, every row of y, per program; grid (cdiv(N, BLOCK_N),).

    ``words_ptr``: the packed codes viewed as int64 ``[N, K/16]``; ``blocks_per_row`` = K / 16
    (also the row stride of the words and of the scales). Rows of x are taken BLOCK_M at a time;
    each group re-reads the program's weight strip, which by then sits in L1/L2.
    """
    BLOCKS: tl.constexpr = BLOCK_K // 16
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    offs_b = tl.arange(0, BLOCKS)
    w_rows = words_ptr + offs_n.to(tl.int64)[:, None] * blocks_per_row
    s_rows = scale_ptr + offs_n.to(tl.int64)[:, None] * blocks_per_row
    g = tl.load(global_scale_ptr)
    for m0 in range(0, M, BLOCK_M):
        offs_m = m0 + tl.arange(0, BLOCK_M)
        mask_m = offs_m < M
        x_rows = x_ptr + offs_m.to(tl.int64)[:, None] * stride_xm
        acc = tl.zeros((BLOCK_M, BLOCK_N, BLOCKS), dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            blk = k0 // 16 + offs_b
            mask_w = mask_n[:, None] & (blk[None, :] < blocks_per_row)
            words = tl.load(w_rows + blk[None, :], mask=mask_w, other=0)
            # e4m3 * 2**14: the nibbles below decode to e2m1 * 2**-14.
            scale = e4m3_to_f16(tl.load(s_rows + blk[None, :], mask=mask_w, other=0)).to(tl.float32) * 16384.0
            low = (words & 0xFFFFFFFF).to(tl.uint32)  # elements 0-7 of each block
            high = (words >> 32).to(tl.uint32)  # elements 8-15
            first = 16 * blk[None, :]
            mask_x = mask_m[:, None] & (first < K)
            part = tl.zeros((BLOCK_M, BLOCK_N, BLOCKS), dtype=tl.float32)
            for i in tl.static_range(8):
                x_i = tl.load(x_rows + (first + i) * stride_xk, mask=mask_x, other=0.0).to(tl.float32)
                part += nibble_e2m1_f32(low, i)[None] * x_i[:, None, :]
            for i in tl.static_range(8):
                x_i = tl.load(x_rows + (first + 8 + i) * stride_xk, mask=mask_x, other=0.0).to(tl.float32)
                part += nibble_e2m1_f32(high, i)[None] * x_i[:, None, :]
            acc += part * scale[None]
        out = tl.sum(acc, axis=2) * g
        if HAS_BIAS:
            out += tl.load(bias_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
        if GELU_TANH:
            out = gelu_tanh(out)
        y_ptrs = y_ptr + offs_m.to(tl.int64)[:, None] * stride_ym + offs_n[None, :] * stride_yn
        tl.store(y_ptrs, out.to(y_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])
