"""Session 15's fused kernel (2af93fe), kept for the A/B in ``ab.py``: W4A16 GEMM: ``y = (x @ dequant(W)^T) * global_scale (+ bias)`` with W in NVFP4.

x is ``[M, K]`` bf16/fp16, W arrives as packed E2M1 codes ``[N, K/2]`` (element 2j in the low
nibble) and E4M3 block scales ``[N, K/16]`` viewed as uint8, both row-major. Each program
computes one ``BLOCK_M x BLOCK_N`` tile of y: per K step it dequantizes a ``BLOCK_N x BLOCK_K``
weight tile to x's dtype (exact: ``e2m1 * e4m3`` has at most 6 significant bits) and feeds
it to ``tl.dot`` with an fp32 accumulator. The global scale is applied once, in the epilogue,
followed by the bias and, optionally, GELU (tanh approximation).
"""

import triton
import triton.language as tl

from nvfp4_triton.kernels._nvfp4_decode import unpack_block
from nvfp4_triton.kernels._w4a16_gemm import epilogue


@triton.jit(do_not_specialize=["M"])
def w4a16_gemm_kernel(
    x_ptr, packed_ptr, scale_ptr, global_scale_ptr, bias_ptr, y_ptr,
    M, N, K,
    stride_xm, stride_xk, stride_ym, stride_yn,
    HAS_BIAS: tl.constexpr,
    GELU_TANH: tl.constexpr,
    DOT_F32: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
):
    """One output tile per program; programs ordered in GROUP_M-row bands for L2 reuse of W.

    DOT_F32 upcasts both dot operands to fp32: Triton's interpreter multiplies bf16 operands
    wrongly, so launchers set it there and nowhere else. M is not specialized, so one binary
    serves every batch size of a tuned key.
    """
    pid = tl.program_id(0)
    num_m = tl.cdiv(M, BLOCK_M)
    num_n = tl.cdiv(N, BLOCK_N)
    band = GROUP_M * num_n
    first_m = (pid // band) * GROUP_M
    rows_in_band = min(num_m - first_m, GROUP_M)
    pid_m = first_m + (pid % band) % rows_in_band
    pid_n = (pid % band) // rows_in_band

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_kh = tl.arange(0, BLOCK_K // 2)
    offs_ks = tl.arange(0, BLOCK_K // 16)
    offs_k = tl.arange(0, BLOCK_K)
    mask_m = offs_m < M
    mask_n = offs_n < N
    half_k = K // 2
    scale_k = K // 16

    x_rows = x_ptr + offs_m.to(tl.int64)[:, None] * stride_xm
    w_rows = packed_ptr + offs_n.to(tl.int64)[:, None] * half_k
    s_rows = scale_ptr + offs_n.to(tl.int64)[:, None] * scale_k

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kx = k0 + offs_k
        x = tl.load(x_rows + kx[None, :] * stride_xk, mask=mask_m[:, None] & (kx[None, :] < K), other=0.0)

        kh = k0 // 2 + offs_kh
        packed = tl.load(w_rows + kh[None, :], mask=mask_n[:, None] & (kh[None, :] < half_k), other=0)
        ks = k0 // 16 + offs_ks
        raw_scale = tl.load(s_rows + ks[None, :], mask=mask_n[:, None] & (ks[None, :] < scale_k), other=0)

        w = unpack_block(packed, raw_scale, BLOCK_N, BLOCK_K)

        if DOT_F32:
            acc = tl.dot(x.to(tl.float32), tl.trans(w.to(tl.float32)), acc)
        else:
            acc = tl.dot(x, tl.trans(w.to(x.dtype)), acc)

    acc = epilogue(acc, global_scale_ptr, bias_ptr, offs_n, mask_n, HAS_BIAS, GELU_TANH)
    y_ptrs = y_ptr + offs_m.to(tl.int64)[:, None] * stride_ym + offs_n[None, :] * stride_yn
    tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])
