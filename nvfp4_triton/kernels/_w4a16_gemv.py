"""W4A16 GEMV for a handful of activation rows: ``y = (x @ dequant(W)^T) * global_scale (+ bias)``.

At M <= 4 the GEMM is a stream of weight bytes, and tensor cores buy nothing: the fused GEMM
pads M to 16 and passes every dequantized tile through shared memory to reach them. Here each
program owns BLOCK_N weight rows and walks K once per BLOCK_M activation rows, multiplying on
CUDA cores with the weight tile in the registers where it was decoded.
"""

import triton
import triton.language as tl

from ._nvfp4_decode import unpack_block
from ._w4a16_gemm import gelu_tanh


@triton.jit(do_not_specialize=["M"])
def w4a16_gemv_kernel(
    x_ptr, packed_ptr, scale_ptr, global_scale_ptr, bias_ptr, y_ptr,
    M, N, K,
    stride_xm, stride_xk, stride_ym, stride_yn,
    HAS_BIAS: tl.constexpr,
    GELU_TANH: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """BLOCK_N output columns, every row of y, per program; grid (cdiv(N, BLOCK_N),).

    Rows of x are taken BLOCK_M at a time; each group re-reads the program's weight strip, which
    by then sits in L1/L2, so HBM sees the weight once.
    """
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    offs_kh = tl.arange(0, BLOCK_K // 2)
    offs_ks = tl.arange(0, BLOCK_K // 16)
    offs_k = tl.arange(0, BLOCK_K)
    w_rows = packed_ptr + offs_n.to(tl.int64)[:, None] * (K // 2)
    s_rows = scale_ptr + offs_n.to(tl.int64)[:, None] * (K // 16)
    g = tl.load(global_scale_ptr)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)
    for m0 in range(0, M, BLOCK_M):
        offs_m = m0 + tl.arange(0, BLOCK_M)
        mask_m = offs_m < M
        x_rows = x_ptr + offs_m.to(tl.int64)[:, None] * stride_xm
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            kh = k0 // 2 + offs_kh
            packed = tl.load(w_rows + kh[None, :], mask=mask_n[:, None] & (kh[None, :] < K // 2), other=0)
            ks = k0 // 16 + offs_ks
            raw_scale = tl.load(s_rows + ks[None, :], mask=mask_n[:, None] & (ks[None, :] < K // 16), other=0)
            w = unpack_block(packed, raw_scale, BLOCK_N, BLOCK_K).to(tl.float32)
            kx = k0 + offs_k
            x = tl.load(x_rows + kx[None, :] * stride_xk, mask=mask_m[:, None] & (kx[None, :] < K),
                        other=0.0).to(tl.float32)
            acc += tl.sum(x[:, None, :] * w[None, :, :], axis=2)
        acc = acc * g
        if HAS_BIAS:
            acc += bias[None, :]
        if GELU_TANH:
            acc = gelu_tanh(acc)
        y_ptrs = y_ptr + offs_m.to(tl.int64)[:, None] * stride_ym + offs_n[None, :] * stride_yn
        tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])
