"""Candidate (not yet timed): the fused W4A16 GEMM with swapped operands, computing y^T tile by tile.

Each program decodes a ``[BLOCK_N, BLOCK_K]`` weight tile in registers and hands it to the MMA as
its A operand; the activation tile ``x^T [BLOCK_K, BLOCK_M]`` is the B operand, staged in shared
memory by the pipeline. On sm_90 Triton 3.6 then emits wgmma with A in registers
(``HGMMA.64x128x16.F32.BF16 R24, R100, gdesc[..]``): the decoded weight never passes through
shared memory, where the library's fused kernel (both operands from shared memory) stores it and
reads it back on every K step. Its decoding can overlap the previous step's asynchronous wgmma.
"""

import triton
import triton.language as tl

from nvfp4_triton.kernels._nvfp4_decode import unpack_block
from nvfp4_triton.kernels._w4a16_gemm import gelu_tanh


@triton.jit(do_not_specialize=["M"])
def swapped_gemm_kernel(
    x_ptr, packed_ptr, scale_ptr, global_scale_ptr, bias_ptr, y_ptr,
    M, N, K,
    stride_xm, stride_xk, stride_ym, stride_yn,
    HAS_BIAS: tl.constexpr,
    GELU_TANH: tl.constexpr,
    DOT_F32: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_N: tl.constexpr,
):
    """One ``[BLOCK_N, BLOCK_M]`` tile of y^T per program, programs in GROUP_N-row bands of weight tiles."""
    pid = tl.program_id(0)
    num_n = tl.cdiv(N, BLOCK_N)
    num_m = tl.cdiv(M, BLOCK_M)
    band = GROUP_N * num_m
    first_n = (pid // band) * GROUP_N
    rows_in_band = min(num_n - first_n, GROUP_N)
    pid_n = first_n + (pid % band) % rows_in_band
    pid_m = (pid % band) // rows_in_band

    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_kh = tl.arange(0, BLOCK_K // 2)
    offs_ks = tl.arange(0, BLOCK_K // 16)
    offs_k = tl.arange(0, BLOCK_K)
    mask_n = offs_n < N
    mask_m = offs_m < M
    half_k = K // 2
    scale_k = K // 16
    w_rows = packed_ptr + offs_n.to(tl.int64)[:, None] * half_k
    s_rows = scale_ptr + offs_n.to(tl.int64)[:, None] * scale_k
    x_cols = x_ptr + offs_m.to(tl.int64)[None, :] * stride_xm

    acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kh = k0 // 2 + offs_kh
        packed = tl.load(w_rows + kh[None, :], mask=mask_n[:, None] & (kh[None, :] < half_k), other=0)
        ks = k0 // 16 + offs_ks
        raw_scale = tl.load(s_rows + ks[None, :], mask=mask_n[:, None] & (ks[None, :] < scale_k), other=0)
        w = unpack_block(packed, raw_scale, BLOCK_N, BLOCK_K)
        kx = k0 + offs_k
        xt = tl.load(x_cols + kx[:, None] * stride_xk, mask=(kx[:, None] < K) & mask_m[None, :], other=0.0)
        if DOT_F32:
            acc = tl.dot(w.to(tl.float32), xt.to(tl.float32), acc)
        else:
            acc = tl.dot(w.to(xt.dtype), xt, acc)

    acc = acc * tl.load(global_scale_ptr)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)[:, None]
    if GELU_TANH:
        acc = gelu_tanh(acc)
    y_ptrs = y_ptr + offs_m.to(tl.int64)[None, :] * stride_ym + offs_n[:, None] * stride_yn
    tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=mask_n[:, None] & mask_m[None, :])
