"""W4A16 GEMV for a handful of activation rows: ``y = (x @ dequant(W)^T) * global_scale (+ bias)``.

At M <= 4 the GEMM is a stream of weight bytes, and tensor cores buy nothing: the fused GEMM
pads M to 16 and passes every dequantized tile through shared memory to reach them. Here the
packed codes arrive as one int64 word per 16-element scale block, so a program's tile of words
``[BLOCK_N, BLOCK_K / 16]`` lines up element for element with its tile of block scales: each
nibble is decoded where it was loaded, multiplied on CUDA cores by the matching activation, and
the block's scale is applied once per 16 products. No tensor is reshaped or interleaved.

x arrives as int64 words too, four values per load: one load per value (16 per block, each
spanning a warp's 32 blocks, 1 KB) cost 15-25% of the time on an H200 (bench/NOTES.md, v20).
Each program also loads its next K tile before decoding the current one (v21).

A weight with few output rows and long ones (FLUX's ``[3072, 12288]``) gives too few programs
to keep every SM streaming: there each program takes one of ``SPLIT_K`` slices of K and writes fp32
partial sums, and the last of a column strip's programs to finish adds them up and applies the
epilogue, as in the fused kernel.
"""

import triton
import triton.language as tl

from ._nvfp4_decode import e4m3_to_f16, nibble_pair_e2m1_f32
from ._w4a16_gemm import splitk_arrive, splitk_store, splitk_sum, store_output


@triton.jit
def activation_f32(word, i: tl.constexpr, BF16: tl.constexpr):
    """Value ``i`` (0-3, low first) of the four 16-bit floats in each int64 of ``word``, as fp32.

    A bf16 is the top half of the fp32 with the same value, so it takes one shift or mask; fp16
    takes a conversion.
    """
    bits = ((word >> (32 * (i // 2))) & 0xFFFFFFFF).to(tl.uint32)
    if BF16:
        if i % 2 == 0:
            bits = bits << 16
        else:
            bits = bits & 0xFFFF0000
        return bits.to(tl.float32, bitcast=True)
    return ((bits >> (16 * (i % 2))) & 0xFFFF).to(tl.uint16).to(tl.float16, bitcast=True).to(tl.float32)


@triton.jit
def _load_tile(w_rows, s_rows, x_rows, blk, mask_n, mask_m, blocks_per_row, wanted):
    """K tile ``blk`` (scale-block indices): its codes and scales ``[BLOCK_N, BLOCKS]``, and x's four
    int64 words per block ``[BLOCK_M, BLOCKS]`` (elements 0-3, 4-7, 8-11, 12-15); all zero where
    ``wanted`` is false or past K."""
    in_k = (blk < blocks_per_row) & wanted
    mask_w = mask_n[:, None] & in_k[None, :]
    words = tl.load(w_rows + blk[None, :], mask=mask_w, other=0)
    raw_scale = tl.load(s_rows + blk[None, :], mask=mask_w, other=0)
    x_blocks = x_rows + 4 * blk[None, :]
    mask_x = mask_m[:, None] & in_k[None, :]
    x0 = tl.load(x_blocks, mask=mask_x, other=0)
    x1 = tl.load(x_blocks + 1, mask=mask_x, other=0)
    x2 = tl.load(x_blocks + 2, mask=mask_x, other=0)
    x3 = tl.load(x_blocks + 3, mask=mask_x, other=0)
    return blk, words, raw_scale, x0, x1, x2, x3


@triton.jit(do_not_specialize=["M"])
def w4a16_gemv_kernel(
    x_ptr, words_ptr, scale_ptr, global_scale_ptr, bias_ptr, y_ptr, partial_ptr, counter_ptr,
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
    words of four bf16 (``X_BF16``) or fp16 values, ``stride_xm`` words apart. Rows of x are
    taken BLOCK_M at a time; each group re-reads the program's weight strip, which by then sits
    in L1/L2. With ``SPLIT_K > 1``, ``partial_ptr`` and ``counter_ptr`` are as in the fused
    kernel (one counter per program column).
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
        tile = _load_tile(w_rows, s_rows, x_rows, k_start // 16 + offs_b, mask_n, mask_m, blocks_per_row, True)
        for k0 in range(k_start, k_end, BLOCK_K):
            # The next tile's loads go out before this tile is decoded, and stream in meanwhile; the
            # barrier keeps the compiler from sinking them to the end of the loop.
            blk, words, raw_scale, x0, x1, x2, x3 = tile
            tile = _load_tile(w_rows, s_rows, x_rows, blk + BLOCKS, mask_n, mask_m, blocks_per_row,
                              k0 + BLOCK_K < k_end)
            tl.debug_barrier()
            # e4m3 * 2**14: the nibbles below decode to e2m1 * 2**-14.
            scale = e4m3_to_f16(raw_scale).to(tl.float32) * 16384.0
            low = (words & 0xFFFFFFFF).to(tl.uint32)  # elements 0-7 of each block
            high = (words >> 32).to(tl.uint32)  # elements 8-15
            part = tl.zeros((BLOCK_M, BLOCK_N, BLOCKS), dtype=tl.float32)
            for i in tl.static_range(4):
                w_i, w_i4 = nibble_pair_e2m1_f32(low, i)
                part += w_i[None] * activation_f32(x0, i, X_BF16)[:, None, :]
                part += w_i4[None] * activation_f32(x1, i, X_BF16)[:, None, :]
                w_i, w_i4 = nibble_pair_e2m1_f32(high, i)
                part += w_i[None] * activation_f32(x2, i, X_BF16)[:, None, :]
                part += w_i4[None] * activation_f32(x3, i, X_BF16)[:, None, :]
            acc += part * scale[None]
        if SPLIT_K == 1:
            store_output(tl.sum(acc, axis=2), global_scale_ptr, bias_ptr, y_ptr, offs_m, offs_n, mask_m, mask_n,
                         stride_ym, stride_yn, HAS_BIAS, GELU_TANH)
        else:
            splitk_store(partial_ptr, tl.sum(acc, axis=2), offs_m, offs_n, mask_m[:, None] & mask_n[None, :], M, N)
    if SPLIT_K > 1:
        if splitk_arrive(counter_ptr, tl.program_id(0), SPLIT_K):
            for m0 in range(0, M, BLOCK_M):
                offs_m = m0 + tl.arange(0, BLOCK_M)
                mask_m = offs_m < M
                sums = splitk_sum(partial_ptr, offs_m, offs_n, mask_m[:, None] & mask_n[None, :], M, N, SPLIT_K)
                store_output(sums, global_scale_ptr, bias_ptr, y_ptr, offs_m, offs_n, mask_m, mask_n, stride_ym,
                             stride_yn, HAS_BIAS, GELU_TANH)

