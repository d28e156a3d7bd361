"""GEMV with the E2M1 codes decoded two at a time in 32-bit integer ops (staged, session 12).

The library's GEMV (``kernels/_w4a16_gemv.py``) decodes each nibble on its own with 16-bit
integer ops: 8.12 SASS instructions per weight element on sm_90 (``bench/kernel_asm.py gemv``),
and the kernel is instruction-bound (bench/NOTES.md, v8-v9). Here each 32-bit word of 8 codes is
read as two halves of 4: shifting the word moves code j and code j + 4 together, so two shifts
and two masks give the fp16 bit patterns of both (``pair_f16``), one in each half of the result.

    PYTHONPATH=. python bench/experiments/gemv_s12/gemv_pairs.py          # SASS counts, CPU machine
    PYTHONPATH=. python bench/experiments/gemv_s12/gemv_pairs.py --time   # GPU: correctness, then timing
"""
import argparse
import sys
from pathlib import Path

import torch
import triton
import triton.language as tl

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from nvfp4_triton.kernels._nvfp4_decode import e4m3_to_f16  # noqa: E402


@triton.jit
def pair_f16(word, j: tl.constexpr):
    """Codes j and j + 4 of each uint32 ``word`` (low nibble first) as two fp16 bit patterns of
    ``e2m1 * 2**-14`` (as ``e2m1_to_f16`` builds them): code j in bits 0-15, code j + 4 in 16-31."""
    if 9 >= 4 * j:
        magnitude = (word << (9 - 4 * j)) & 0x0E000E00
    else:
        magnitude = (word >> (4 * j - 9)) & 0x0E000E00
    return magnitude | ((word << (12 - 4 * j)) & 0x80008000)


@triton.jit
def half_f32(pair, high: tl.constexpr):
    """One half of ``pair_f16``'s result as fp32."""
    bits = (pair >> 16) if high else (pair & 0xFFFF)
    return bits.to(tl.uint16).to(tl.float16, bitcast=True).to(tl.float32)


@triton.jit(do_not_specialize=["M"])
def gemv_pairs_kernel(
    x_ptr, words_ptr, scale_ptr, global_scale_ptr, y_ptr,
    M, N, K, blocks_per_row, stride_xm,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """``y = x @ dequant(W)^T * global_scale`` for x ``[M, K]`` (unit K stride), y ``[M, N]`` contiguous."""
    BLOCKS: tl.constexpr = BLOCK_K // 16
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    offs_b = tl.arange(0, BLOCKS)
    w_rows = words_ptr + offs_n.to(tl.int64)[:, None] * blocks_per_row
    s_rows = scale_ptr + offs_n.to(tl.int64)[:, None] * blocks_per_row
    g = tl.load(global_scale_ptr)
    for m0 in range(0, M, BLOCK_M):
        offs_m = m0 + tl.arange(0, BLOCK_M)
        mask_m = offs_m < M
        x_rows = x_ptr + offs_m.to(tl.int64)[:, None] * stride_xm
        acc = tl.zeros((BLOCK_M, BLOCK_N, BLOCKS), dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            blk = k0 // 16 + offs_b
            mask_w = mask_n[:, None] & (blk[None, :] < blocks_per_row)
            words = tl.load(w_rows + blk[None, :], mask=mask_w, other=0)
            scale = e4m3_to_f16(tl.load(s_rows + blk[None, :], mask=mask_w, other=0)).to(tl.float32) * 16384.0
            first = 16 * blk[None, :]
            mask_x = mask_m[:, None] & (first < K)
            part = tl.zeros((BLOCK_M, BLOCK_N, BLOCKS), dtype=tl.float32)
            for h in tl.static_range(2):
                word = ((words >> (32 * h)) & 0xFFFFFFFF).to(tl.uint32)
                for j in tl.static_range(4):
                    pair = pair_f16(word, j)
                    x_lo = tl.load(x_rows + first + 8 * h + j, mask=mask_x, other=0.0).to(tl.float32)
                    x_hi = tl.load(x_rows + first + 8 * h + j + 4, mask=mask_x, other=0.0).to(tl.float32)
                    part += half_f32(pair, False)[None] * x_lo[:, None, :]
                    part += half_f32(pair, True)[None] * x_hi[:, None, :]
            acc += part * scale[None]
        out = tl.sum(acc, axis=2) * g
        tl.store(y_ptr + offs_m.to(tl.int64)[:, None] * N + offs_n[None, :], out.to(y_ptr.dtype.element_ty),
                 mask=mask_m[:, None] & mask_n[None, :])


def launch(x, q, block_m=1, block_n=32, block_k=512, warps=4):
    """Run the kernel (no bias); ``block_m`` must be a power of two."""
    m, k = x.shape
    n = q.packed.shape[0]
    y = torch.empty((m, n), dtype=x.dtype, device=x.device)
    gemv_pairs_kernel[(triton.cdiv(n, block_n),)](
        x, q.packed.view(torch.int64), q.scale_bits, q.global_scale, y, m, n, k, k // 16, x.stride(0),
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, num_warps=warps)
    return y


def sass_counts() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1].parent / "bench"))
    from kernel_asm import compile_kernel, innermost_loop, sass_of
    for (m, n, k), (bm, bn, bk, warps) in (((1, 18432, 3072), (1, 32, 512, 4)), ((4, 18432, 3072), (4, 32, 512, 4))):
        args = dict(x_ptr="*bf16", words_ptr="*i64", scale_ptr="*u8", global_scale_ptr="*fp32", y_ptr="*bf16",
                    M=m, N=n, K=k, blocks_per_row=k // 16, stride_xm=k, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk)
        compiled = compile_kernel(gemv_pairs_kernel, args, warps, 1, 90)
        lines, usage = sass_of(compiled.asm["cubin"])
        loop = innermost_loop(lines)
        print(f"pairs M={m} BLOCK {bm}x{bn}x{bk} w{warps}: {usage.split('REG:')[1].split()[0]} registers, "
              f"inner loop {loop} instructions, {loop / (bn * bk / (32 * warps)):.2f} per weight element")


def time_against_library() -> None:
    from nvfp4_triton import quantize
    from nvfp4_triton.autotune import benchmark_ms
    from nvfp4_triton.gemm import w4a16_gemm
    from nvfp4_triton.tiling import GemvConfig
    print(torch.cuda.get_device_name(), triton.__version__)
    for m in (1, 2, 4):
        for n, k in ((18432, 3072), (9216, 3072), (12288, 3072), (3072, 12288)):
            q = quantize(torch.randn(n, k, device="cuda"))
            x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
            ref = x.double() @ q.dequantize(torch.float64).T
            w = q.dequantize(torch.bfloat16)
            bf16 = benchmark_ms(lambda: x @ w.t())
            row = [f"M={m} N={n:5} K={k:5} bf16 {bf16 * 1e3:6.1f} us"]
            for name, fn in (("library gemv", lambda: w4a16_gemm(x, q.packed, q.block_scale, q.global_scale, None,
                                                                  config=GemvConfig(min(m, 4), 32, 512))),
                             ("pairs", lambda: launch(x, q, block_m=min(m, 4)))):  # m: 1, 2 or 4
                err = float((fn().double() - ref).norm() / ref.norm())
                t = benchmark_ms(fn)
                row.append(f"{name} {t * 1e3:6.1f} us ({bf16 / t:4.2f}x, err {err:.1e})")
            print(" | ".join(row), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--time", action="store_true", help="on a GPU: check and time against the library's GEMV")
    time_against_library() if parser.parse_args().time else sass_counts()
