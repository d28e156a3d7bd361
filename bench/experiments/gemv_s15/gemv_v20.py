"""The GEMV of session 15 before its K loop prefetched (v20): x read as int64 words, the next tile's
loads issued only when its trip begins. Kept only so that ``ab.py`` can time it beside the
library's kernel in one process; same arguments as the library's kernel."""

import triton
import triton.language as tl

from nvfp4_triton.kernels._nvfp4_decode import e4m3_to_f16, nibble_pair_e2m1_f32
from nvfp4_triton.kernels._w4a16_gemm import epilogue
from nvfp4_triton.kernels._w4a16_gemv import activation_f32


@triton.jit(do_not_specialize=["M"])
def gemv_v20_kernel(
    x_ptr, words_ptr, scale_ptr, global_scale_ptr, bias_ptr, y_ptr,
    M, N, K, blocks_per_row, k_per_split,
    stride_xm, stride_ym, stride_yn,
    X_BF16: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    GELU_TANH: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    SPLIT_K: tl.constexpr,
):
    """BLOCK_N output columns, every row of y, over ``k_per_split`` columns of K (a multiple of
    BLOCK_K) per program; grid (cdiv(N, BLOCK_N), SPLIT_K).

    ``words_ptr``: the packed codes viewed as int64 ``[N, K/16]``; ``blocks_per_row`` = K / 16
    (also the row stride of the words and of the scales). ``x_ptr``: x's rows viewed as int64
    words of four bf16 (``X_BF16``) or fp16 values, ``stride_xm`` words apart. Rows of x are taken BLOCK_M at a time;
    each group re-reads the program's weight strip, which by then sits in L1/L2. With
    ``SPLIT_K > 1``, ``y_ptr`` is a contiguous fp32 ``[SPLIT_K, M, N]`` of partial sums, without
    global scale, bias or GELU.
    """
    BLOCKS: tl.constexpr = BLOCK_K // 16
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    offs_b = tl.arange(0, BLOCKS)
    w_rows = words_ptr + offs_n.to(tl.int64)[:, None] * blocks_per_row
    s_rows = scale_ptr + offs_n.to(tl.int64)[:, None] * blocks_per_row
    k_start = tl.program_id(1) * k_per_split
    k_end = tl.minimum(K, k_start + k_per_split)
    for m0 in range(0, M, BLOCK_M):
        offs_m = m0 + tl.arange(0, BLOCK_M)
        mask_m = offs_m < M
        x_rows = x_ptr + offs_m.to(tl.int64)[:, None] * stride_xm
        acc = tl.zeros((BLOCK_M, BLOCK_N, BLOCKS), dtype=tl.float32)
        for k0 in range(k_start, k_end, BLOCK_K):
            blk = k0 // 16 + offs_b
            mask_w = mask_n[:, None] & (blk[None, :] < blocks_per_row)
            words = tl.load(w_rows + blk[None, :], mask=mask_w, other=0)
            raw_scale = tl.load(s_rows + blk[None, :], mask=mask_w, other=0)
            # e4m3 * 2**14: the nibbles below decode to e2m1 * 2**-14.
            scale = e4m3_to_f16(raw_scale).to(tl.float32) * 16384.0
            x_blocks = x_rows + 4 * blk[None, :]
            mask_x = mask_m[:, None] & (blk[None, :] < blocks_per_row)
            part = tl.zeros((BLOCK_M, BLOCK_N, BLOCKS), dtype=tl.float32)
            for half in tl.static_range(2):  # elements 0-7 of each block from the low 32 bits, 8-15 from the high
                half_words = ((words >> (32 * half)) & 0xFFFFFFFF).to(tl.uint32)
                # Elements 8h..8h+3 and 8h+4..8h+7 of x, one int64 word each: a load per four values.
                x_low = tl.load(x_blocks + 2 * half, mask=mask_x, other=0)
                x_high = tl.load(x_blocks + 2 * half + 1, mask=mask_x, other=0)
                for i in tl.static_range(4):
                    w_i, w_i4 = nibble_pair_e2m1_f32(half_words, i)
                    part += w_i[None] * activation_f32(x_low, i, X_BF16)[:, None, :]
                    part += w_i4[None] * activation_f32(x_high, i, X_BF16)[:, None, :]
            acc += part * scale[None]
        mask_y = mask_m[:, None] & mask_n[None, :]
        if SPLIT_K == 1:
            out = epilogue(tl.sum(acc, axis=2), global_scale_ptr, bias_ptr, offs_n, mask_n, HAS_BIAS, GELU_TANH)
            y_ptrs = y_ptr + offs_m.to(tl.int64)[:, None] * stride_ym + offs_n[None, :] * stride_yn
            tl.store(y_ptrs, out.to(y_ptr.dtype.element_ty), mask=mask_y)
        else:
            rows = tl.program_id(1) * M + offs_m
            tl.store(y_ptr + rows.to(tl.int64)[:, None] * N + offs_n[None, :], tl.sum(acc, axis=2), mask=mask_y)
