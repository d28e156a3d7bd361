"""Rejected variant (bench/NOTES.md, v8): one weight tile per program, split K, fp32 atomics into a workspace."""
import triton
import triton.language as tl
from nvfp4_triton.kernels._nvfp4_decode import e4m3_to_f16, nibble_e2m1_f32


@triton.jit(do_not_specialize=["M"])
def gemv11_kernel(
    x_ptr, packed_ptr, scale_ptr, ws_ptr,
    M, N, K, stride_wn, stride_sn, stride_xm,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """One (BLOCK_N, BLOCK_K) weight tile per program, every row of x; fp32 partial sums atomically added to ws[M, N]."""
    G: tl.constexpr = BLOCK_K // 16
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    g = tl.program_id(1) * G + tl.arange(0, G)
    mask_w = mask_n[:, None] & (g[None, :] < stride_sn)
    words = tl.load(packed_ptr + offs_n.to(tl.int64)[:, None] * stride_wn + g[None, :], mask=mask_w, other=0)
    s = tl.load(scale_ptr + offs_n.to(tl.int64)[:, None] * stride_sn + g[None, :], mask=mask_w, other=0)
    scale = (e4m3_to_f16(s).to(tl.float32) * 16384.0)[None]
    lo = (words & 0xFFFFFFFF).to(tl.uint32)
    hi = (words >> 32).to(tl.uint32)
    kx = 16 * g[None, :]
    for m0 in range(0, M, BLOCK_M):
        offs_m = m0 + tl.arange(0, BLOCK_M)
        mask_m = offs_m < M
        x_rows = x_ptr + offs_m.to(tl.int64)[:, None] * stride_xm
        mask_x = mask_m[:, None] & (kx < K)
        part = tl.zeros((BLOCK_M, BLOCK_N, G), dtype=tl.float32)
        for i in tl.static_range(8):
            x_i = tl.load(x_rows + kx + i, mask=mask_x, other=0.0).to(tl.float32)
            part += nibble_e2m1_f32(lo, i)[None] * x_i[:, None, :]
        for i in tl.static_range(8):
            x_i = tl.load(x_rows + kx + 8 + i, mask=mask_x, other=0.0).to(tl.float32)
            part += nibble_e2m1_f32(hi, i)[None] * x_i[:, None, :]
        out = tl.sum(part * scale, axis=2)
        tl.atomic_add(ws_ptr + offs_m.to(tl.int64)[:, None] * N + offs_n[None, :], out,
                      mask=mask_m[:, None] & mask_n[None, :], sem="relaxed")
