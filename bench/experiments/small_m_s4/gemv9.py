"""Rejected variant (bench/NOTES.md, v8): nibbles split into low/high tiles of a [BLOCK_N, BLOCK_K/16, 8] byte load."""
import triton
import triton.language as tl
from nvfp4_triton.kernels._nvfp4_decode import e4m3_to_f16
from nvfp4_triton.kernels._w4a16_gemm import gelu_tanh


@triton.jit
def e2m1_bits_f16(code):
    c = code.to(tl.uint16)
    return (((c & 0x8) << 12) | ((c & 0x7) << 9)).to(tl.float16, bitcast=True)


@triton.jit(do_not_specialize=["M"])
def gemv9_kernel(
    x_ptr, packed_ptr, scale_ptr, global_scale_ptr, bias_ptr, y_ptr,
    M, N, K, stride_wn, stride_sn,
    stride_xm, stride_xk, stride_ym, stride_yn,
    HAS_BIAS: tl.constexpr, GELU_TANH: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    G: tl.constexpr = BLOCK_K // 16
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    offs_g = tl.arange(0, G)
    offs_8 = tl.arange(0, 8)
    offs_2 = tl.arange(0, 2)
    w_rows = packed_ptr + offs_n.to(tl.int64)[:, None, None] * stride_wn
    s_rows = scale_ptr + offs_n.to(tl.int64)[:, None] * stride_sn
    for m0 in range(0, M, BLOCK_M):
        offs_m = m0 + tl.arange(0, BLOCK_M)
        mask_m = offs_m < M
        x_rows = x_ptr + offs_m.to(tl.int64)[:, None, None, None] * stride_xm
        acc = tl.zeros((BLOCK_M, BLOCK_N, G), dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            g = k0 // 16 + offs_g
            b = g[:, None] * 8 + offs_8[None, :]                      # [G, 8] byte offsets
            packed = tl.load(w_rows + b[None, :, :], mask=mask_n[:, None, None] & (b[None, :, :] < stride_wn), other=0)
            s = tl.load(s_rows + g[None, :], mask=mask_n[:, None] & (g[None, :] < stride_sn), other=0)
            lo = e2m1_bits_f16(packed & 0xF).to(tl.float32)[None]      # [1, BN, G, 8]
            hi = e2m1_bits_f16(packed >> 4).to(tl.float32)[None]
            kx = 2 * b[:, :, None] + offs_2[None, None, :]               # [G, 8, 2]
            xp = tl.load(x_rows + kx[None] * stride_xk, mask=mask_m[:, None, None, None] & (kx[None] < K), other=0.0)
            xe, xo = tl.split(xp.to(tl.float32))                          # [BM, G, 8]
            part = tl.sum(lo * xe[:, None] + hi * xo[:, None], axis=3)   # [BM, BN, G]
            acc += part * (e4m3_to_f16(s).to(tl.float32) * 16384.0)[None, :, :]
        out = tl.sum(acc, axis=2) * tl.load(global_scale_ptr)
        if HAS_BIAS:
            out += tl.load(bias_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
        if GELU_TANH:
            out = gelu_tanh(out)
        y_ptrs = y_ptr + offs_m.to(tl.int64)[:, None] * stride_ym + offs_n[None, :] * stride_yn
        tl.store(y_ptrs, out.to(y_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])
