"""Session 22, v41: a warp-specialized W4A16 GEMM on wgmma. A producer warpgroup brings x's tile,
the weight's codes and its scales into shared memory by cp.async, decodes the codes into a bf16
tile in shared memory, and signals a consumer warpgroup, which only issues wgmma (both operands
from shared memory) and releases the slot when its MMA is done.

Why: v39 and v40 decode in the MMA warps themselves, with A in registers. Nsight (session 22,
calls 3-4) found them latency-bound: 2-3 warps a scheduler (166-184 registers), 6.4-7.4 cycles
between issued instructions, the tensor pipe 32-37% busy; v40 reached 0.48x of cuBLAS at
(512, 3072, 3072) and 0.58x at (4096, 3072, 3072). Here each kind of work has warps of its own,
so the warp scheduler overlaps the decode with the MMAs that the consumer keeps queued, and the
consumer needs no registers for A.

The MMA computes ``y^T = W x^T`` as v39: 64 weight rows a program (wgmma's M), x's BM rows as N,
K in steps of 64. The producer's thread (row r, half c) copies and decodes 16 bytes of row r's
32-byte step (four code words, blocks 2c and 2c + 1), so it reads only what it copied itself;
each word becomes 8 bf16 (byte j: elements 2j, 2j + 1, as ``nibble_pair_bits``' multiply), scaled
by one packed FMA, stored as 16 bytes into the NVMMA-swizzled A tile.

Prediction: the consumer's MMAs run back to back unless the producer falls behind. Producer work
a step: 64 x 64 weights (32 a thread, about 120 instructions) and x's tile (BM x 128 bytes:
8-16 cp.async a thread), against 256-512 tensor-core cycles a step (BM 128-256). So near wgmma's
rate for n = BM: 0.7-0.9x of cuBLAS at M >= 4096, and at M = 512 (96-192 programs for N = 3072)
0.6-0.8x.

    python3 bench/experiments/wgmma_s22/wgmma_ws.py            # compile for sm_90 on any machine
    python3 bench/experiments/wgmma_s22/wgmma_ws.py --gpu      # check against float64, time vs cuBLAS
    python3 bench/experiments/wgmma_s22/wgmma_ws.py --profile M N K CONFIG   # for Nsight Compute (CONFIGS[CONFIG])
"""

import argparse
import collections
import sys
from pathlib import Path

import torch
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import async_copy
from triton.experimental.gluon.language.nvidia.hopper import (fence_async_shared, mbarrier, warpgroup_mma,
                                                              warpgroup_mma_wait)

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "bench" / "experiments" / "wgmma_s21"))

from wgmma_gemm import problem, run_for_profiler  # noqa: E402

from nvfp4_triton.kernels._gluon_bf16 import e4m3_pair_to_bf16 as _e4m3_pair_to_bf16  # noqa: E402
from nvfp4_triton.kernels._gluon_bf16 import scaled_pairs as _scaled  # noqa: E402

BK = gl.constexpr(64)  # K a step: 8 code words and one scale word (4 E4M3 bytes) a row


@gluon.jit
def _pairs_of_byte(words, j: gl.constexpr, scale2):
    """Byte j of each code word -> its two elements (2j low, 2j + 1 high) as scaled bf16x2 patterns."""
    byte = (words >> (8 * j)) & 0xFF
    alone = (byte * 0x1001) & 0x000F000F  # the two nibbles, 16 bits apart
    return _scaled((alone * ((1 << 12) + (1 << 6))) & 0x81C081C0, scale2)


@gluon.jit
def _as_bf16(pairs):
    low = (pairs & 0xFFFF).to(gl.uint16).to(gl.bfloat16, bitcast=True)
    high = (pairs >> 16).to(gl.uint16).to(gl.bfloat16, bitcast=True)
    return gl.join(low, high)


@gluon.jit
def _producer(x_ring, a_ring, code_ring, scale_ring, ready, empty, words_ptr, scale_ptr, x_ptr, M, K, stride_xm,
              n0, m0, BN: gl.constexpr, BM: gl.constexpr, STAGES: gl.constexpr, FIRST: gl.constexpr,
              PRODUCERS: gl.constexpr):
    """Steps FIRST, FIRST + PRODUCERS, ..: decode step i (its copies, this thread's own, have landed) into
    its A slot and signal it ready, then copy step i + STAGES - PRODUCERS into the slot of step
    i - PRODUCERS once the consumer has released it."""
    # [BN, 8] words: a thread copies and decodes 16 bytes of a row's step (BN 64) or all 32 (BN 128).
    code_layout: gl.constexpr = gl.BlockedLayout([1, 4 * BN // 64], [16 * BN // 64, 128 // BN], [4, 1], [1, 0])
    x_copy: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [4, 1], [1, 0])
    scale_layout: gl.constexpr = gl.SliceLayout(1, code_layout)
    rows = gl.arange(0, BN, layout=scale_layout)
    cols = gl.arange(0, 8, layout=gl.SliceLayout(0, code_layout))
    code_src = words_ptr + (n0 + rows)[:, None] * (K // 8) + cols[None, :]
    scale_src = scale_ptr + (n0 + rows) * (K // 64)
    x_rows = gl.arange(0, BM, layout=gl.SliceLayout(1, x_copy))
    x_cols = gl.arange(0, BK, layout=gl.SliceLayout(0, x_copy))
    x_src = x_ptr + (m0 + x_rows)[:, None] * stride_xm + x_cols[None, :]
    x_mask = ((m0 + x_rows) < M)[:, None] & (x_cols >= 0)[None, :]
    # Word w of a step holds elements 8w ..; its block is w // 2, whose scale is byte w // 2 of the word.
    half_shift = 16 * (cols // 4)[None, :]
    high_block = (((cols // 2) % 2) == 1)[None, :]

    steps = K // BK
    for j in range(FIRST, FIRST + STAGES - PRODUCERS, PRODUCERS):
        _copy(x_ring, code_ring, scale_ring, empty, x_src, x_mask, code_src, scale_src, j, steps, STAGES)
    for i in range(FIRST, steps, PRODUCERS):
        async_copy.wait_group(STAGES // PRODUCERS - 2)  # this thread's copies of step i have landed
        slot = i % STAGES
        words = code_ring.index(slot).load(code_layout).to(gl.uint32, bitcast=True)
        scale_word = scale_ring.index(slot).load(scale_layout).to(gl.uint32, bitcast=True)
        two = _e4m3_pair_to_bf16((scale_word[:, None] >> half_shift) & 0xFFFF)  # blocks 2c, 2c + 1: x 2**119
        scale2 = gl.where(high_block, (two >> 16) | (two & 0xFFFF0000), (two & 0xFFFF) | (two << 16))
        # [BN, word, s, j0, j1] -> K = 8 word + 2 (2 j1 + j0) + s
        e01 = gl.join(_as_bf16(_pairs_of_byte(words, 0, scale2)), _as_bf16(_pairs_of_byte(words, 1, scale2)))
        e23 = gl.join(_as_bf16(_pairs_of_byte(words, 2, scale2)), _as_bf16(_pairs_of_byte(words, 3, scale2)))
        tile = gl.reshape(gl.permute(gl.join(e01, e23), [0, 1, 4, 3, 2]), [BN, BK])
        a_ring.index(slot).store(tile)
        fence_async_shared()  # the stores and copies are generic-proxy writes; wgmma reads through the async proxy
        gl.thread_barrier()  # every producer thread's copies and stores are in
        mbarrier.arrive(ready.index(slot), count=1)
        # Only now: with one producer, its slot is released once the consumer has issued step i's MMA
        # (just made ready) and finished step i - 1's, so waiting for it earlier would deadlock.
        _copy(x_ring, code_ring, scale_ring, empty, x_src, x_mask, code_src, scale_src, i + STAGES - PRODUCERS,
              steps, STAGES)


@gluon.jit
def _copy(x_ring, code_ring, scale_ring, empty, x_src, x_mask, code_src, scale_src, j, steps, STAGES: gl.constexpr):
    """One commit group: step j's x tile, codes and scales into slot j % STAGES, once the consumer has
    released it (past the last step: the last step's data again, never read)."""
    slot = j % STAGES
    mbarrier.wait(empty.index(slot), ((j // STAGES) & 1) ^ 1)  # a fresh barrier passes phase 1 at once
    step = gl.minimum(j, steps - 1)
    async_copy.async_copy_global_to_shared(x_ring.index(slot), x_src + step * BK, mask=x_mask)
    async_copy.async_copy_global_to_shared(code_ring.index(slot), code_src + step * (BK // 8))
    async_copy.async_copy_global_to_shared(scale_ring.index(slot), scale_src + step)
    async_copy.commit_group()


@gluon.jit
def _consumer(x_ring, a_ring, ready, empty, K, BN: gl.constexpr, BM: gl.constexpr, STAGES: gl.constexpr):
    """wgmma on each ready slot; a slot is released once the MMA after it has been issued and its own is done."""
    mma: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[BN // 16, 1],
                                                  instr_shape=[16, BM, 16])
    acc = gl.zeros([BN, BM], gl.float32, layout=mma)
    steps = K // BK
    for i in range(steps):
        slot = i % STAGES
        mbarrier.wait(ready.index(slot), (i // STAGES) & 1)
        acc = warpgroup_mma(a_ring.index(slot), x_ring.index(slot).permute((1, 0)), acc, is_async=True)
        acc = warpgroup_mma_wait(1, deps=[acc])  # step i - 1's MMA is done
        mbarrier.arrive(empty.index((i + STAGES - 1) % STAGES), count=1, pred=i > 0)
    return (warpgroup_mma_wait(0, deps=[acc]),)  # the default partition returns a tuple


@gluon.jit
def _store_y(acc, global_scale_ptr, y_ptr, M, N, stride_ym, n0, m0, BN: gl.constexpr, BM: gl.constexpr):
    """y's [BM, BN] tile from the consumer's sum (``y^T``), times the global scale (and the 2**7 the
    decode left out)."""
    mma: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[BN // 16, 1],
                                                  instr_shape=[16, BM, 16])
    out = acc * (gl.load(global_scale_ptr) * 128.0)
    out_rows = n0 + gl.arange(0, BN, layout=gl.SliceLayout(1, mma))
    ms = m0 + gl.arange(0, BM, layout=gl.SliceLayout(0, mma))
    gl.store(y_ptr + ms[None, :] * stride_ym + out_rows[:, None], out.to(y_ptr.dtype.element_ty),
             mask=(ms < M)[None, :] & (out_rows < N)[:, None])


@gluon.jit
def w4a16_wgmma_ws_kernel(words_ptr, scale_ptr, x_ptr, global_scale_ptr, y_ptr, M, N, K, stride_xm, stride_ym,
                          BN: gl.constexpr, BM: gl.constexpr, STAGES: gl.constexpr, PRODUCER_REGS: gl.constexpr,
                          PRODUCERS: gl.constexpr):
    """Program (n, m): weight rows ``64n ..`` against x rows ``BM m ..``, all of K. Needs N % 64 == 0,
    K % 64 == 0, x 16-byte aligned with unit K stride and a row stride that is a multiple of 8."""
    x_shared: gl.constexpr = gl.NVMMASharedLayout(swizzle_byte_width=128, element_bitwidth=16, rank=2)
    plain2: gl.constexpr = gl.SwizzledSharedLayout(vec=1, per_phase=1, max_phase=1, order=[1, 0])
    plain1: gl.constexpr = gl.SwizzledSharedLayout(vec=1, per_phase=1, max_phase=1, order=[0])
    x_ring = gl.allocate_shared_memory(gl.bfloat16, [STAGES, BM, BK], x_shared)
    a_ring = gl.allocate_shared_memory(gl.bfloat16, [STAGES, BN, BK], x_shared)
    code_ring = gl.allocate_shared_memory(gl.int32, [STAGES, BN, 8], plain2)
    scale_ring = gl.allocate_shared_memory(gl.int32, [STAGES, BN], plain1)
    ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    for s in gl.static_range(STAGES):
        mbarrier.init(ready.index(s), count=1)
        mbarrier.init(empty.index(s), count=1)

    n0 = gl.program_id(0) * BN
    m0 = gl.program_id(1) * BM
    if PRODUCERS == 1:
        acc, = gl.warp_specialize([
            (_consumer, (x_ring, a_ring, ready, empty, K, BN, BM, STAGES)),
            (_producer, (x_ring, a_ring, code_ring, scale_ring, ready, empty, words_ptr, scale_ptr, x_ptr, M, K,
                         stride_xm, n0, m0, BN, BM, STAGES, 0, 1)),
        ], [4], [PRODUCER_REGS])
    else:  # two producers, even and odd steps (STAGES even)
        acc, = gl.warp_specialize([
            (_consumer, (x_ring, a_ring, ready, empty, K, BN, BM, STAGES)),
            (_producer, (x_ring, a_ring, code_ring, scale_ring, ready, empty, words_ptr, scale_ptr, x_ptr, M, K,
                         stride_xm, n0, m0, BN, BM, STAGES, 0, 2)),
            (_producer, (x_ring, a_ring, code_ring, scale_ring, ready, empty, words_ptr, scale_ptr, x_ptr, M, K,
                         stride_xm, n0, m0, BN, BM, STAGES, 1, 2)),
        ], [4, 4], [PRODUCER_REGS, PRODUCER_REGS])

    _store_y(acc, global_scale_ptr, y_ptr, M, N, stride_ym, n0, m0, BN, BM)


def compile_for_sm90(m: int, n: int, k: int, bn: int, bm: int, stages: int, producer_regs: int, maxnreg: int,
                     producers: int):
    """Compile for sm_90 without a GPU and print registers, spills and the main opcodes."""
    from kernel_asm import compile_kernel, sass_of
    args = dict(words_ptr="*i32", scale_ptr="*i32", x_ptr="*bf16", global_scale_ptr="*fp32", y_ptr="*bf16",
                M=m, N=n, K=k, stride_xm=k, stride_ym=n, BN=bn, BM=bm, STAGES=stages, PRODUCER_REGS=producer_regs,
                PRODUCERS=producers)
    compiled = compile_kernel(w4a16_wgmma_ws_kernel, args, bn // 16, 1, 90, maxnreg=maxnreg)
    lines, usage = sass_of(compiled.asm["cubin"])
    ops = collections.Counter(line.split("*/", 1)[1].split()[0].split(".")[0].lstrip("@!P0123456789 ")
                              for line in lines)
    print(f"BN {bn} BM {bm} stages {stages} producers {producers} x {producer_regs} registers, maxnreg {maxnreg}: "
          f"{usage.strip().splitlines()[-1].strip()[:60]}; "
          + ", ".join(f"{op} {ops[op]}" for op in ("HGMMA", "LDG", "LDGSTS", "LDS", "STS", "BAR", "SYNCS",
                                                    "USETMAXREG")))
    return compiled


def wgmma_ws_gemm(x: torch.Tensor, q, bn: int = 64, bm: int = 128, stages: int = 4, producer_regs: int = 96,
                  maxnreg: int = 128, producers: int = 1) -> torch.Tensor:
    """``x @ dequant(W)^T`` in bf16 (no bias)."""
    m, k = x.shape
    n = q.out_features
    y = torch.empty(m, n, device=x.device, dtype=x.dtype)
    grid = (n // bn, -(-m // bm))
    w4a16_wgmma_ws_kernel[grid](q.packed.view(torch.int32), q.scale_bits.view(torch.int32), x, q.global_scale, y,
                                m, n, k, x.stride(0), y.stride(0), BN=bn, BM=bm,
                                STAGES=stages, PRODUCER_REGS=producer_regs, PRODUCERS=producers, num_warps=bn // 16,
                                maxnreg=maxnreg)
    return y


CONFIGS = [(64, 256, 4, 104, 168, 2), (128, 128, 6, 104, 128, 2), (128, 128, 4, 104, 128, 2),
           (128, 256, 4, 104, 168, 1), (128, 256, 3, 104, 168, 1)]
"""(BN, BM, STAGES, producer registers, maxnreg, producers). Calls 6-7 of session 22 ran BN = 64 only (then the
tuples had no BN): (BM 128, 4 stages, 1 producer) and (256, 4, 1) at 96 producer registers, (256, 4, 2),
(128, 6, 2) and (128, 8, 2) at 104."""


SHAPES = [(200, 128, 384), (512, 3072, 3072), (512, 12288, 3072), (512, 3072, 12288), (4096, 3072, 3072),
          (4096, 12288, 3072)]


def check_and_time(gemm=None, configs=None) -> None:
    """Each config of ``gemm`` (this kernel's by default; v43 passes its own) at each shape: its error
    against float64 and its time, after cuBLAS's."""
    import torch.nn.functional as F

    from nvfp4_triton.autotune import benchmark_ms
    gemm, configs = gemm or wgmma_ws_gemm, configs or CONFIGS
    for m, n, k in SHAPES:
        q, x, ref, dense = problem(m, n, k)
        print(f"({m}, {n}, {k}) cuBLAS {1e3 * benchmark_ms(lambda: F.linear(x, dense)):.1f} us", flush=True)
        for cfg in configs:
            if n % cfg[0]:  # BN
                continue
            try:
                y = gemm(x, q, *cfg)
                torch.cuda.synchronize()
            except Exception as err:  # noqa: BLE001  (an experiment: report and go on)
                print(f"    {cfg}: {type(err).__name__} {str(err)[:100]}", flush=True)
                continue
            err = float((y.double() - ref).norm() / ref.norm())
            us = 1e3 * benchmark_ms(lambda: gemm(x, q, *cfg))
            print(f"    {cfg}: {us:.1f} us, err {err:.1e}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--profile", type=int, nargs=4, metavar=("M", "N", "K", "CONFIG"))
    args = parser.parse_args()
    if args.profile:
        m, n, k, index = args.profile
        run_for_profiler(wgmma_ws_gemm, m, n, k, *CONFIGS[index])
    elif args.gpu:
        check_and_time()
    else:
        for cfg in CONFIGS:
            compile_for_sm90(512, 3072, 3072, *cfg)
