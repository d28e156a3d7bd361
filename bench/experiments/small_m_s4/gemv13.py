"""Candidate (not yet timed): the GEMV with every tile 2-D [BLOCK_N, blocks] and one activation row per pass.

The x loads take the words' layout (both unvectorized: ``max_contiguous(.., 1)`` on the block
offsets), so no layout conversion or barrier is left in the K loop (``bench/kernel_asm.py``-style
SASS: 0 BAR against 36 in the library GEMV), at 10.9 instead of 8.1 instructions per weight
element: each thread reloads x for each of its rows from L1.
"""
import triton
import triton.language as tl
from nvfp4_triton.kernels._nvfp4_decode import e4m3_to_f16, nibble_e2m1_f32
from nvfp4_triton.kernels._w4a16_gemm import gelu_tanh


@triton.jit(do_not_specialize=["M"])
def gemv13_kernel(
    x_ptr, words_ptr, scale_ptr, global_scale_ptr, bias_ptr, y_ptr,
    M, N, K, blocks_per_row,
    stride_xm, stride_xk, stride_ym, stride_yn,
    HAS_BIAS: tl.constexpr, GELU_TANH: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    BLOCKS: tl.constexpr = BLOCK_K // 16
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    offs_b = tl.max_contiguous(tl.arange(0, BLOCKS), 1)
    zero_n = (offs_n * 0)[:, None]
    w_rows = words_ptr + offs_n.to(tl.int64)[:, None] * blocks_per_row
    s_rows = scale_ptr + offs_n.to(tl.int64)[:, None] * blocks_per_row
    g = tl.load(global_scale_ptr)
    for m in range(0, M):
        x_row = x_ptr + m * stride_xm.to(tl.int64)
        acc = tl.zeros((BLOCK_N, BLOCKS), dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            blk = k0 // 16 + offs_b
            mask_w = mask_n[:, None] & (blk[None, :] < blocks_per_row)
            words = tl.load(w_rows + blk[None, :], mask=mask_w, other=0)
            scale = e4m3_to_f16(tl.load(s_rows + blk[None, :], mask=mask_w, other=0)).to(tl.float32) * 16384.0
            low = (words & 0xFFFFFFFF).to(tl.uint32)
            high = (words >> 32).to(tl.uint32)
            first = 16 * blk[None, :] + zero_n
            mask_x = first < K
            part = tl.zeros((BLOCK_N, BLOCKS), dtype=tl.float32)
            for i in tl.static_range(8):
                x_i = tl.load(x_row + (first + i) * stride_xk, mask=mask_x, other=0.0).to(tl.float32)
                part += nibble_e2m1_f32(low, i) * x_i
            for i in tl.static_range(8):
                x_i = tl.load(x_row + (first + 8 + i) * stride_xk, mask=mask_x, other=0.0).to(tl.float32)
                part += nibble_e2m1_f32(high, i) * x_i
            acc += part * scale
        out = tl.sum(acc, axis=1) * g
        if HAS_BIAS:
            out += tl.load(bias_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)
        if GELU_TANH:
            out = gelu_tanh(out)
        tl.store(y_ptr + m * stride_ym.to(tl.int64) + offs_n * stride_yn, out.to(y_ptr.dtype.element_ty), mask=mask_n)
