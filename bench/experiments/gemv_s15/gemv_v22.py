"""The session-15 GEMV (v21) with two K tiles in flight per program (v22), for ``ab.py`` to time
beside the library's kernel; same arguments as the library's kernel."""

import triton
import triton.language as tl

from nvfp4_triton.kernels._nvfp4_decode import e4m3_to_f16, nibble_pair_e2m1_f32
from nvfp4_triton.kernels._w4a16_gemm import epilogue
from nvfp4_triton.kernels._w4a16_gemv import _load_tile, activation_f32


@triton.jit(do_not_specialize=["M"])
def gemv_v22_kernel(
    x_ptr, words_ptr, scale_ptr, global_scale_ptr, bias_ptr, y_ptr,
    M, N, K, blocks_per_row, k_per_split,
    stride_xm, stride_ym, stride_yn,
    X_BF16: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    GELU_TANH: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    SPLIT_K: tl.constexpr,
):
    """The library's GEMV kernel (v21) with two K tiles in flight instead of one."""
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
        after = _load_tile(w_rows, s_rows, x_rows, k_start // 16 + BLOCKS + offs_b, mask_n, mask_m, blocks_per_row,
                           k_start + BLOCK_K < k_end)
        for k0 in range(k_start, k_end, BLOCK_K):
            # Two tiles in flight: the one after next is loaded before this one is decoded.
            blk, words, raw_scale, x0, x1, x2, x3 = tile
            tile = after
            after = _load_tile(w_rows, s_rows, x_rows, blk + 2 * BLOCKS, mask_n, mask_m, blocks_per_row,
                               k0 + 2 * BLOCK_K < k_end)
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
        mask_y = mask_m[:, None] & mask_n[None, :]
        if SPLIT_K == 1:
            out = epilogue(tl.sum(acc, axis=2), global_scale_ptr, bias_ptr, offs_n, mask_n, HAS_BIAS, GELU_TANH)
            y_ptrs = y_ptr + offs_m.to(tl.int64)[:, None] * stride_ym + offs_n[None, :] * stride_yn
            tl.store(y_ptrs, out.to(y_ptr.dtype.element_ty), mask=mask_y)
        else:
            rows = tl.program_id(1) * M + offs_m
            tl.store(y_ptr + rows.to(tl.int64)[:, None] * N + offs_n[None, :], tl.sum(acc, axis=2), mask=mask_y)
