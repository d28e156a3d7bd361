"""The split GEMV as it stood before session 15 (v17, commit 8928659), with its launch: one
nibble decoded at a time, and x read one element per load. Kept only so that ``ab.py`` can time
it beside the library's kernel in one process."""

import torch
import triton
import triton.language as tl

from nvfp4_triton import gemm
from nvfp4_triton.launch import Kernel
from nvfp4_triton.kernels._nvfp4_decode import e4m3_to_f16
from nvfp4_triton.kernels._w4a16_gemm import epilogue


@triton.jit
def nibble_e2m1_f32(word, i: tl.constexpr):
    """Nibble ``i`` (0-7, low first) of each uint32 in ``word`` -> its E2M1 value times 2**-14, exact, as fp32.

    :func:`e2m1_to_f16`'s bit pattern, shifted straight out of the word: two shifts and two masks
    per value, and no multiply (callers fold 2**14 into the block scale).
    """
    if 4 * i >= 12:
        sign = (word >> (4 * i - 12)) & 0x8000
    else:
        sign = (word << (12 - 4 * i)) & 0x8000
    if 4 * i >= 9:
        magnitude = (word >> (4 * i - 9)) & 0x0E00
    else:
        magnitude = (word << (9 - 4 * i)) & 0x0E00
    return (sign | magnitude).to(tl.uint16).to(tl.float16, bitcast=True).to(tl.float32)


@triton.jit(do_not_specialize=["M"])
def gemv_v17_kernel(
    x_ptr, words_ptr, scale_ptr, global_scale_ptr, bias_ptr, y_ptr,
    M, N, K, blocks_per_row, k_per_split,
    stride_xm, stride_xk, stride_ym, stride_yn,
    HAS_BIAS: tl.constexpr,
    GELU_TANH: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    SPLIT_K: tl.constexpr,
):
    """BLOCK_N output columns, every row of y, over ``k_per_split`` columns of K (a multiple of
    BLOCK_K) per program; grid (cdiv(N, BLOCK_N), SPLIT_K).

    ``words_ptr``: the packed codes viewed as int64 ``[N, K/16]``; ``blocks_per_row`` = K / 16
    (also the row stride of the words and of the scales). Rows of x are taken BLOCK_M at a time;
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
        mask_y = mask_m[:, None] & mask_n[None, :]
        if SPLIT_K == 1:
            out = epilogue(tl.sum(acc, axis=2), global_scale_ptr, bias_ptr, offs_n, mask_n, HAS_BIAS, GELU_TANH)
            y_ptrs = y_ptr + offs_m.to(tl.int64)[:, None] * stride_ym + offs_n[None, :] * stride_yn
            tl.store(y_ptrs, out.to(y_ptr.dtype.element_ty), mask=mask_y)
        else:
            rows = tl.program_id(1) * M + offs_m
            tl.store(y_ptr + rows.to(tl.int64)[:, None] * N + offs_n[None, :], tl.sum(acc, axis=2), mask=mask_y)



_kernel = Kernel(gemv_v17_kernel)


def launch_v17(cfg, x, words, scale_bits, global_scale, bias, y, gelu: bool) -> None:
    """``gemm._launch_gemv`` as of v17 (its arguments and effect)."""
    m, k = x.shape
    n = words.shape[0]
    k_per_split, split = gemm.gemv_slices(k, cfg.block_k, cfg.split_k)
    epilogue_here = split == 1
    out = y if epilogue_here else torch.empty((split, m, n), dtype=torch.float32, device=x.device)
    _kernel(
        (triton.cdiv(n, cfg.block_n), split), x, words, scale_bits, global_scale, bias if bias is not None else y, out,
        m, n, k, k // 16, k_per_split,
        x.stride(0), x.stride(1), y.stride(0), y.stride(1),
        HAS_BIAS=bias is not None and epilogue_here, GELU_TANH=gelu and epilogue_here,
        BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k, SPLIT_K=split, num_warps=cfg.num_warps,
    )
    if not epilogue_here:
        gemm._gemv_reduce_kernel((triton.cdiv(m * n, gemm._REDUCE_BLOCK),), out, global_scale,
                                 bias if bias is not None else y, y, m, n, y.stride(0), y.stride(1),
                                 HAS_BIAS=bias is not None, GELU_TANH=gelu, SPLIT_K=split,
                                 BLOCK=gemm._REDUCE_BLOCK, num_warps=4)
