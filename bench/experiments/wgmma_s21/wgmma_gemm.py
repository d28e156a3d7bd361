"""Session 21, v39 (written and compiled on the CPU for sm_90; NOT YET RUN on a GPU): a W4A16 GEMM
for M >= 128 on Hopper's wgmma, with the weight decoded in registers as the MMA's A operand.
Needs N % 64 == 0 and K % 192 == 0 (every FLUX.1-dev GEMM).

Why: at M = 512 two-pass is bounded at 0.71-0.78x of cuBLAS (bench/NOTES.md, v37-v38), so only a
fused kernel reaches issue #5's 0.75x there. Triton's fused kernel decodes into shared memory and
makes 0.40-0.46x (v26); its wgmma waits for the decode (v9c). Here, in Gluon, the decode of step
i + 1 runs while the asynchronous wgmma of step i still runs, and A comes from registers, so the
decoded tile never goes through shared memory.

The MMA computes ``y^T = W x^T``: weight rows are its M (64 a warpgroup), x's rows its N (BM, up
to 256), K in steps of 64 (four k16 MMAs). x's tile goes through a cp.async ring into an NVMMA
shared layout and is read by wgmma as B (``permute``: x is K-contiguous). For A, the thread
(g, t) of a warp needs, per 16-K block, the element pairs (2t, 2t + 1) and (2t + 8, 2t + 9) of
rows g and g + 8: bytes t and t + 4 of the block's 8 code bytes, that is byte t of both of its
int32 words. So each thread loads its rows' 8 words of the step (all four threads of a quad load
the same words), shifts its byte down, and decodes it to a bf16 pair: the byte's two nibbles,
16 bits apart, then one multiply writes sign and magnitude copies of both (as
``nibble_pair_bits``; checked in Python for all 256 bytes), then the block scale by one packed FMA
(as the ring kernel). ModelOpt's codes and scales are read as stored.

What compiling for sm_90 on the CPU showed (``ptxas -v`` on the PTX, and the SASS):
- One A register set reused every step, or two alternating: ptxas serializes the wgmmas (C7513,
  "non wgmma instructions defining input registers of a wgmma") or moves the next step's decode
  below the wait for the current one, so nothing overlaps.
- Three steps a trip with ``warpgroup_mma_wait(1)`` (this form): no C7513; each group of four
  HGMMA.64x128x16 is followed by ``WARPGROUP.DEPBAR.LE gsb0, 0x1`` and then the next decode, so the
  decode runs beside the MMA just issued. A never goes through shared memory (no LDS/STS).
- BM 128, 3-4 stages: 180-184 registers, no spills, 223-232 instructions a step a thread (254-259
  when each block's scale was converted alone; now blocks 2j and 2j + 1 share one
  ``cvt.rn.f16x2.e4m3x2``). BM 256: 255 registers and 56 bytes of stack (spills).

Prediction (before any GPU run): at BM = 128 one step is 4 HGMMA.64x128x16 (about 256 cycles of
an SM's tensor cores) against about 230 issue cycles a scheduler for the decode, so at best the two
balance and the kernel runs near wgmma's rate for n = 128; with the usual losses, 0.6-0.9x of cuBLAS
at M = 512 and 0.5-0.8x at M >= 4096 (two-pass: 0.67-0.75x and 0.93x). Fewer decode instructions
or two consumer warpgroups sharing x's tile would come next.

Not done yet: split K, bias/GELU (the epilogue multiplies by the global scale only), a persistent
grid, two consumer warpgroups sharing x's tile, TMA.

    python3 bench/experiments/wgmma_s21/wgmma_gemm.py            # compile for sm_90 on any machine
    python3 bench/experiments/wgmma_s21/wgmma_gemm.py --gpu      # check against float64, time vs cuBLAS
    python3 bench/experiments/wgmma_s21/wgmma_gemm.py --profile M N K BM STAGES   # for Nsight Compute
"""

import argparse
import collections
import sys
from pathlib import Path

import torch
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import async_copy
from triton.experimental.gluon.language.nvidia.hopper import fence_async_shared, warpgroup_mma, warpgroup_mma_wait

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from nvfp4_triton.kernels._gluon_bf16 import e4m3_pair_to_bf16 as _e4m3_pair_to_bf16  # noqa: E402
from nvfp4_triton.kernels._gluon_bf16 import scaled_pairs as _scaled  # noqa: E402

BN = gl.constexpr(64)  # weight rows a program: one warpgroup, 16 rows a warp
BK = gl.constexpr(64)  # K a step: 8 int32 code words and 4 scale bytes a row


@gluon.jit
def _byte_pairs(byte):
    """A code byte (bits 0-7 of a uint32; element 2j in the low nibble) -> bf16x2 patterns worth
    ``e2m1 * 2**-126``, the low nibble in the low half: the nibbles moved 16 bits apart, then
    ``nibble_pair_bits``' multiply (sign copy at bits 12-15, magnitude copy from bit 6)."""
    alone = (byte * 0x1001) & 0x000F000F
    return (alone * ((1 << 12) + (1 << 6))) & 0x81C081C0


@gluon.jit
def _decoded_step(words, scale_word, byte_shift, block_shift, a_layout: gl.constexpr, BN: gl.constexpr,
                  BK: gl.constexpr):
    """One step's A operand [BN, BK] (bf16, ``e2m1 * e4m3 * 2**-7``) from its code words [BN, t, block,
    half] (uint32; each thread keeps byte t) and its rows' scale words (4 E4M3 bytes, block b in byte b)."""
    # Blocks 2j and 2j + 1 convert together (the same input for both, which the compiler merges).
    two = _e4m3_pair_to_bf16((scale_word[:, None, None, None] >> (block_shift & 16)) & 0xFFFF)  # times 2**119
    scale2 = gl.where((block_shift & 8) == 0, (two & 0xFFFF) | (two << 16), (two >> 16) | (two & 0xFFFF0000))
    pairs = _scaled(_byte_pairs((words >> byte_shift) & 0xFF), scale2)
    low = (pairs & 0xFFFF).to(gl.uint16).to(gl.bfloat16, bitcast=True)
    high = (pairs >> 16).to(gl.uint16).to(gl.bfloat16, bitcast=True)
    # [n, t, block, half, s] -> K 16 block + 8 half + 2t + s
    w = gl.permute(gl.join(low, high), [0, 2, 3, 1, 4])
    return gl.convert_layout(gl.reshape(w, [BN, BK]), a_layout, assert_trivial=True)


@gluon.jit
def _raw_step(word_src, scale_src, step):
    """A step's code words and scale words, as uint32."""
    words = gl.load(word_src + step * (BK // 8)).to(gl.uint32, bitcast=True)
    return words, gl.load(scale_src + step).to(gl.uint32, bitcast=True)


@gluon.jit
def _step(acc, prev, cur, words, scale_word, i, steps, x_ring, x_src, x_mask, word_src, scale_src, byte_shift,
          block_shift, a_layout: gl.constexpr, BN: gl.constexpr, BK: gl.constexpr, STAGES: gl.constexpr):
    """Step i: its MMA on A ``cur`` and x's slot, issued while step i - 1's (on ``prev``) may still run.
    Step i + 1's A is decoded from its words (loaded a step ago) into registers of its own, step i + 2's
    words are loaded, and then the wait leaves only step i's MMA running: even if ptxas moves the
    decode below the wait, an MMA runs beside it. Returns the sum, step i's and step i + 1's A, and
    step i + 2's words (past the last step: the last step's, unused)."""
    async_copy.wait_group(STAGES - 3)  # this thread's copies of step i have landed
    gl.thread_barrier()  # everyone's have, and every warp's MMA of step i - 2 is done
    ahead = i + STAGES - 2  # into step i - 2's slot
    async_copy.async_copy_global_to_shared(x_ring.index(ahead % STAGES), x_src + gl.minimum(ahead, steps - 1) * BK,
                                           mask=x_mask)
    async_copy.commit_group()
    fence_async_shared()  # the copies are generic-proxy writes; wgmma reads through the async proxy
    token = warpgroup_mma(cur, x_ring.index(i % STAGES).permute((1, 0)), acc, is_async=True)
    words_later, scale_later = _raw_step(word_src, scale_src, gl.minimum(i + 2, steps - 1))
    following = _decoded_step(words, scale_word, byte_shift, block_shift, a_layout, BN, BK)
    acc, prev, cur = warpgroup_mma_wait(1, deps=[token, prev, cur])  # step i - 1's MMA is done
    return acc, cur, following, words_later, scale_later


@gluon.jit
def w4a16_wgmma_kernel(words_ptr, scale_ptr, x_ptr, global_scale_ptr, y_ptr, M, N, K, stride_xm, stride_ym,
                       BM: gl.constexpr, STAGES: gl.constexpr):
    """Program (n, m): weight rows ``64n ..`` against x rows ``BM m ..``, all of K. Needs N % 64 == 0,
    K % 192 == 0, STAGES >= 3, x 16-byte aligned with unit K stride and a row stride that is a multiple of 8."""
    mma: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BM, 16])
    a_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=mma, k_width=2)
    # The step's code words of a thread's rows, [BN, t, block, half]: word 2 block + half of the row,
    # the same for all four t (each thread keeps byte t of them).
    words_layout: gl.constexpr = gl.DistributedLinearLayout(
        reg_bases=[[0, 0, 0, 1], [0, 0, 1, 0], [0, 0, 2, 0], [8, 0, 0, 0]],
        lane_bases=[[0, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [2, 0, 0, 0], [4, 0, 0, 0]],
        warp_bases=[[16, 0, 0, 0], [32, 0, 0, 0]], block_bases=[], shape=[BN, 4, 4, 2])
    row_layout: gl.constexpr = gl.SliceLayout(1, gl.SliceLayout(2, gl.SliceLayout(3, words_layout)))
    x_shared: gl.constexpr = gl.NVMMASharedLayout(swizzle_byte_width=128, element_bitwidth=16, rank=2)
    x_copy: gl.constexpr = gl.BlockedLayout(size_per_thread=[1, 8], threads_per_warp=[4, 8], warps_per_cta=[4, 1],
                                            order=[1, 0])
    x_ring = gl.allocate_shared_memory(gl.bfloat16, [STAGES, BM, BK], x_shared)

    n0 = gl.program_id(0) * BN
    m0 = gl.program_id(1) * BM
    rows = n0 + gl.arange(0, BN, layout=row_layout)
    ts = gl.arange(0, 4, layout=gl.SliceLayout(0, gl.SliceLayout(2, gl.SliceLayout(3, words_layout))))
    blocks = gl.arange(0, 4, layout=gl.SliceLayout(0, gl.SliceLayout(1, gl.SliceLayout(3, words_layout))))
    halves = gl.arange(0, 2, layout=gl.SliceLayout(0, gl.SliceLayout(1, gl.SliceLayout(2, words_layout))))
    word_offsets = (rows[:, None, None, None] * (K // 8) + 0 * ts[None, :, None, None]
                    + 2 * blocks[None, None, :, None] + halves[None, None, None, :])
    byte_shift = 8 * ts[None, :, None, None]
    scale_src = scale_ptr + rows * (K // 64)  # int32: the 4 scale bytes of a step
    block_shift = 8 * blocks[None, None, :, None]
    x_rows = gl.arange(0, BM, layout=gl.SliceLayout(1, x_copy))
    x_cols = gl.arange(0, BK, layout=gl.SliceLayout(0, x_copy))
    x_src = x_ptr + (m0 + x_rows)[:, None] * stride_xm + x_cols[None, :]
    x_mask = ((m0 + x_rows) < M)[:, None] & (x_cols >= 0)[None, :]

    steps = K // BK
    for s in gl.static_range(STAGES - 2):
        async_copy.async_copy_global_to_shared(x_ring.index(s), x_src + gl.minimum(s, steps - 1) * BK, mask=x_mask)
        async_copy.commit_group()
    word_src = words_ptr + word_offsets
    words, scale_word = _raw_step(word_src, scale_src, 0)
    cur = _decoded_step(words, scale_word, byte_shift, block_shift, a_layout, BN, BK)
    prev = cur  # kept alive by the first wait, which has nothing of its own to wait for
    words, scale_word = _raw_step(word_src, scale_src, gl.minimum(1, steps - 1))

    acc = gl.zeros([BN, BM], gl.float32, layout=mma)
    # Three steps a trip, so that the A of the step in flight, of the one before (which the wait
    # retires) and of the one being decoded keep registers of their own without moves: ptxas
    # serializes wgmma when a register it reads is written while it runs (C7513).
    for i in range(0, steps, 3):
        acc, prev, cur, words, scale_word = _step(acc, prev, cur, words, scale_word, i, steps, x_ring, x_src, x_mask,
                                                  word_src, scale_src, byte_shift, block_shift, a_layout, BN, BK,
                                                  STAGES)
        acc, prev, cur, words, scale_word = _step(acc, prev, cur, words, scale_word, i + 1, steps, x_ring, x_src,
                                                  x_mask, word_src, scale_src, byte_shift, block_shift, a_layout, BN,
                                                  BK, STAGES)
        acc, prev, cur, words, scale_word = _step(acc, prev, cur, words, scale_word, i + 2, steps, x_ring, x_src,
                                                  x_mask, word_src, scale_src, byte_shift, block_shift, a_layout, BN,
                                                  BK, STAGES)
    acc = warpgroup_mma_wait(0, deps=[acc])
    async_copy.wait_group(0)

    out = acc * (gl.load(global_scale_ptr) * 128.0)
    out_rows = n0 + gl.arange(0, BN, layout=gl.SliceLayout(1, mma))
    ms = m0 + gl.arange(0, BM, layout=gl.SliceLayout(0, mma))
    gl.store(y_ptr + ms[None, :] * stride_ym + out_rows[:, None], out.to(y_ptr.dtype.element_ty),
             mask=(ms < M)[None, :] & (out_rows < N)[:, None])


def compile_for_sm90(m: int, n: int, k: int, bm: int, stages: int, kernel=None) -> None:
    """Compile ``kernel`` (this one by default; v40's takes the same arguments) for sm_90 without a
    GPU and print registers, spills and the main opcodes."""
    from kernel_asm import compile_kernel, innermost_loop, sass_of
    args = dict(words_ptr="*i32", scale_ptr="*i32", x_ptr="*bf16", global_scale_ptr="*fp32", y_ptr="*bf16",
                M=m, N=n, K=k, stride_xm=k, stride_ym=n, BM=bm, STAGES=stages)
    compiled = compile_kernel(kernel or w4a16_wgmma_kernel, args, 4, 1, 90)
    lines, usage = sass_of(compiled.asm["cubin"])
    ops = collections.Counter(line.split("*/", 1)[1].split()[0].split(".")[0].lstrip("@!P0123456789 ")
                              for line in lines)
    print(f"BM {bm} stages {stages}: {usage.strip().splitlines()[-1].strip()[:60]}; "
          f"loop {innermost_loop(lines)} instructions; "
          + ", ".join(f"{op} {ops[op]}" for op in ("HGMMA", "LDG", "LDGSTS", "LDS", "STS", "BAR", "WARPSYNC")))


def wgmma_gemm(x: torch.Tensor, q, bm: int = 128, stages: int = 3, kernel=None) -> torch.Tensor:
    """``x @ dequant(W)^T`` in bf16 (no bias), by ``kernel`` (this one by default; v40's takes the same
    arguments)."""
    m, k = x.shape
    n = q.out_features
    y = torch.empty(m, n, device=x.device, dtype=x.dtype)
    grid = (n // BN, -(-m // bm))
    (kernel or w4a16_wgmma_kernel)[grid](q.packed.view(torch.int32), q.scale_bits.view(torch.int32), x,
                                         q.global_scale, y, m, n, k, x.stride(0), y.stride(0), BM=bm,
                                         STAGES=stages, num_warps=4)
    return y


def problem(m: int, n: int, k: int):
    """A random weight (quantized), x, the float64 reference product and the bf16 weight, seeded."""
    from nvfp4_triton import quantize
    torch.manual_seed(0)
    q = quantize(torch.randn(n, k, device="cuda", dtype=torch.bfloat16))
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    return q, x, x.double() @ q.dequantize(torch.float64).T, q.dequantize(torch.bfloat16)


def check_and_time() -> None:
    import torch.nn.functional as F

    from nvfp4_triton import nvfp4_linear
    from nvfp4_triton.autotune import benchmark_ms
    for m, n, k in [(200, 128, 384), (512, 3072, 3072), (512, 12288, 3072), (512, 3072, 12288), (4096, 3072, 3072)]:
        q, x, ref, dense = problem(m, n, k)
        line = f"({m}, {n}, {k}) cuBLAS {1e3 * benchmark_ms(lambda: F.linear(x, dense)):.1f} us, library " \
               f"{1e3 * benchmark_ms(lambda: nvfp4_linear(x, q)):.1f} us"
        for bm in (128, 256):
            for stages in (3, 4, 5):
                y = wgmma_gemm(x, q, bm, stages)
                err = float((y.double() - ref).norm() / ref.norm())
                line += f"; {bm}/{stages}: {1e3 * benchmark_ms(lambda: wgmma_gemm(x, q, bm, stages)):.1f} us, err {err:.1e}"
        print(line, flush=True)


def run_for_profiler(gemm, m: int, n: int, k: int, *config) -> None:
    """Three launches of ``gemm(x, q, *config)`` at one shape, for Nsight Compute (``--launch-skip 2
    --launch-count 1``); v40-v42 use it too."""
    from nvfp4_triton import quantize
    q = quantize(torch.randn(n, k, device="cuda", dtype=torch.bfloat16))
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        gemm(x, q, *config)
    torch.cuda.synchronize()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--profile", type=int, nargs=5, metavar=("M", "N", "K", "BM", "STAGES"))
    args = parser.parse_args()
    if args.profile:
        run_for_profiler(wgmma_gemm, *args.profile)
    elif args.gpu:
        check_and_time()
    else:
        for bm, stages in ((128, 3), (128, 4), (256, 4)):
            compile_for_sm90(512, 3072, 3072, bm, stages)
