"""Session 22, v40: v39 (``wgmma_s21/wgmma_gemm.py``) with the weight's codes and scales brought
through the cp.async ring in shared memory, like x, instead of loaded from global memory into
registers one step ahead.

Why: Nsight Compute on v39 at (4096, 3072, 3072), BM 128, 3 stages (session 22, call 3): 6.35
cycles a warp between issued instructions, of which 2.41 long scoreboard (the code-word loads:
only one step, about 900 cycles, ahead of their decode, and four threads of a quad loading the
same 64 bytes each), 1.31 wait, 0.51 dispatch, 0.44 barrier; issue slots 30% busy, tensor pipe
32%; 2 warps a scheduler (184 registers, 2 programs an SM). Here the codes of step i + 1 land in
shared memory with x's tile of step i (STAGES - 2 steps ahead of their use), and each thread reads
its rows' 8 words from there (the quad's four threads read the same addresses: a broadcast).
The decode and the MMA are v39's.

Prediction: the long-scoreboard share goes (2.41 -> under 0.5 of 6.35 cycles), so 25-35% less
time: (4096, 3072, 3072) 243-258 us -> 170-190 us (0.55-0.6x of cuBLAS), (512, 3072, 3072) 47 ->
33-36 us (0.53-0.58x). Still short of 0.75x at M = 512: with 2 warps a scheduler the decode's own
latencies stay exposed.

    python3 bench/experiments/wgmma_s22/wgmma_ring.py            # compile for sm_90 on any machine
    python3 bench/experiments/wgmma_s22/wgmma_ring.py --gpu      # check against float64, time vs v39 and cuBLAS
    python3 bench/experiments/wgmma_s22/wgmma_ring.py --profile M N K BM STAGES   # for Nsight Compute
"""

import argparse
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
sys.path.insert(0, str(ROOT / "bench" / "experiments" / "wgmma_s21"))

from wgmma_gemm import (BK, BN, _decoded_step, compile_for_sm90, problem, run_for_profiler,  # noqa: E402
                        wgmma_gemm)


@gluon.jit
def _copy_step(x_ring, code_ring, scale_ring, x_src, x_mask, code_src, scale_src, x_step, code_step, steps,
               STAGES: gl.constexpr):
    """One commit group: x's tile of ``x_step`` and the codes and scales of ``code_step`` (clamped to the last step)."""
    async_copy.async_copy_global_to_shared(x_ring.index(x_step % STAGES), x_src + gl.minimum(x_step, steps - 1) * BK,
                                           mask=x_mask)
    async_copy.async_copy_global_to_shared(code_ring.index(code_step % STAGES),
                                           code_src + gl.minimum(code_step, steps - 1) * (BK // 8))
    async_copy.async_copy_global_to_shared(scale_ring.index(code_step % STAGES),
                                           scale_src + gl.minimum(code_step, steps - 1))
    async_copy.commit_group()


@gluon.jit
def _step(acc, prev, cur, i, steps, x_ring, code_ring, scale_ring, x_src, x_mask, code_src, scale_src, byte_shift,
          block_shift, words_layout: gl.constexpr, row_layout: gl.constexpr, a_layout: gl.constexpr,
          STAGES: gl.constexpr):
    """Step i: its MMA on A ``cur`` while step i + 1's A is decoded from the codes in shared memory;
    the wait then leaves only step i's MMA running (as v39)."""
    async_copy.wait_group(STAGES - 3)  # this thread's group i (x of step i, codes of step i + 1) has landed
    gl.thread_barrier()  # everyone's has, every warp's MMA of step i - 2 and decode of step i - 1 are done
    ahead = i + STAGES - 2
    _copy_step(x_ring, code_ring, scale_ring, x_src, x_mask, code_src, scale_src, ahead, ahead + 1, steps, STAGES)
    fence_async_shared()  # the copies are generic-proxy writes; wgmma reads through the async proxy
    token = warpgroup_mma(cur, x_ring.index(i % STAGES).permute((1, 0)), acc, is_async=True)
    slot = (i + 1) % STAGES
    words = code_ring.index(slot).load(gl.SliceLayout(1, words_layout)).to(gl.uint32, bitcast=True)
    scale_word = scale_ring.index(slot).load(row_layout).to(gl.uint32, bitcast=True)
    following = _decoded_step(words[:, None, :, :], scale_word, byte_shift, block_shift, a_layout, BN, BK)
    acc, prev, cur = warpgroup_mma_wait(1, deps=[token, prev, cur])  # step i - 1's MMA is done
    return acc, cur, following


@gluon.jit
def w4a16_wgmma_ring_kernel(words_ptr, scale_ptr, x_ptr, global_scale_ptr, y_ptr, M, N, K, stride_xm, stride_ym,
                            BM: gl.constexpr, STAGES: gl.constexpr):
    """Program (n, m): weight rows ``64n ..`` against x rows ``BM m ..``, all of K (as v39). Needs N % 64 == 0,
    K % 192 == 0, STAGES >= 3, x 16-byte aligned with unit K stride and a row stride that is a multiple of 8."""
    mma: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BM, 16])
    a_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=mma, k_width=2)
    # [BN, t, block, half]: word 2 block + half of a thread's rows; t (lane % 4) picks the byte.
    words_layout: gl.constexpr = gl.DistributedLinearLayout(
        reg_bases=[[0, 0, 0, 1], [0, 0, 1, 0], [0, 0, 2, 0], [8, 0, 0, 0]],
        lane_bases=[[0, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [2, 0, 0, 0], [4, 0, 0, 0]],
        warp_bases=[[16, 0, 0, 0], [32, 0, 0, 0]], block_bases=[], shape=[BN, 4, 4, 2])
    row_layout: gl.constexpr = gl.SliceLayout(1, gl.SliceLayout(2, gl.SliceLayout(3, words_layout)))
    x_shared: gl.constexpr = gl.NVMMASharedLayout(swizzle_byte_width=128, element_bitwidth=16, rank=2)
    x_copy: gl.constexpr = gl.BlockedLayout(size_per_thread=[1, 8], threads_per_warp=[4, 8], warps_per_cta=[4, 1],
                                            order=[1, 0])
    # A step's codes, [BN, block, half] int32 as stored (32 bytes a row): 16 bytes a thread.
    code_copy: gl.constexpr = gl.BlockedLayout(size_per_thread=[1, 2, 2], threads_per_warp=[16, 2, 1],
                                               warps_per_cta=[4, 1, 1], order=[2, 1, 0])
    code_shared: gl.constexpr = gl.SwizzledSharedLayout(vec=1, per_phase=1, max_phase=1, order=[2, 1, 0])
    scale_copy: gl.constexpr = gl.BlockedLayout(size_per_thread=[1], threads_per_warp=[32], warps_per_cta=[4],
                                                order=[0])
    scale_shared: gl.constexpr = gl.SwizzledSharedLayout(vec=1, per_phase=1, max_phase=1, order=[0])
    x_ring = gl.allocate_shared_memory(gl.bfloat16, [STAGES, BM, BK], x_shared)
    code_ring = gl.allocate_shared_memory(gl.int32, [STAGES, BN, 4, 2], code_shared)
    scale_ring = gl.allocate_shared_memory(gl.int32, [STAGES, BN], scale_shared)

    n0 = gl.program_id(0) * BN
    m0 = gl.program_id(1) * BM
    ts = gl.arange(0, 4, layout=gl.SliceLayout(0, gl.SliceLayout(2, gl.SliceLayout(3, words_layout))))
    blocks = gl.arange(0, 4, layout=gl.SliceLayout(0, gl.SliceLayout(1, gl.SliceLayout(3, words_layout))))
    byte_shift = 8 * ts[None, :, None, None]
    block_shift = 8 * blocks[None, None, :, None]

    c_rows = n0 + gl.arange(0, BN, layout=gl.SliceLayout(1, gl.SliceLayout(2, code_copy)))
    c_blocks = gl.arange(0, 4, layout=gl.SliceLayout(0, gl.SliceLayout(2, code_copy)))
    c_halves = gl.arange(0, 2, layout=gl.SliceLayout(0, gl.SliceLayout(1, code_copy)))
    code_src = (words_ptr + c_rows[:, None, None] * (K // 8) + 2 * c_blocks[None, :, None]
                + c_halves[None, None, :])
    scale_src = scale_ptr + (n0 + gl.arange(0, BN, layout=scale_copy)) * (K // 64)  # int32: a step's 4 scales
    x_rows = gl.arange(0, BM, layout=gl.SliceLayout(1, x_copy))
    x_cols = gl.arange(0, BK, layout=gl.SliceLayout(0, x_copy))
    x_src = x_ptr + (m0 + x_rows)[:, None] * stride_xm + x_cols[None, :]
    x_mask = ((m0 + x_rows) < M)[:, None] & (x_cols >= 0)[None, :]

    steps = K // BK
    # Group s holds x of step s and the codes of step s + 1; the codes of step 0 come with group 0.
    async_copy.async_copy_global_to_shared(code_ring.index(0), code_src)
    async_copy.async_copy_global_to_shared(scale_ring.index(0), scale_src)
    for s in gl.static_range(STAGES - 2):
        _copy_step(x_ring, code_ring, scale_ring, x_src, x_mask, code_src, scale_src, s, s + 1, steps, STAGES)
    async_copy.wait_group(STAGES - 3)
    gl.thread_barrier()
    words = code_ring.index(0).load(gl.SliceLayout(1, words_layout)).to(gl.uint32, bitcast=True)
    scale_word = scale_ring.index(0).load(row_layout).to(gl.uint32, bitcast=True)
    cur = _decoded_step(words[:, None, :, :], scale_word, byte_shift, block_shift, a_layout, BN, BK)
    prev = cur  # kept alive by the first wait, which has nothing of its own to wait for

    acc = gl.zeros([BN, BM], gl.float32, layout=mma)
    # Three steps a trip, as v39 (three A register sets, so that ptxas does not serialize the wgmmas).
    for i in range(0, steps, 3):
        acc, prev, cur = _step(acc, prev, cur, i, steps, x_ring, code_ring, scale_ring, x_src, x_mask, code_src,
                               scale_src, byte_shift, block_shift, words_layout, row_layout, a_layout, STAGES)
        acc, prev, cur = _step(acc, prev, cur, i + 1, steps, x_ring, code_ring, scale_ring, x_src, x_mask, code_src,
                               scale_src, byte_shift, block_shift, words_layout, row_layout, a_layout, STAGES)
        acc, prev, cur = _step(acc, prev, cur, i + 2, steps, x_ring, code_ring, scale_ring, x_src, x_mask, code_src,
                               scale_src, byte_shift, block_shift, words_layout, row_layout, a_layout, STAGES)
    acc = warpgroup_mma_wait(0, deps=[acc])
    async_copy.wait_group(0)

    out = acc * (gl.load(global_scale_ptr) * 128.0)
    out_rows = n0 + gl.arange(0, BN, layout=gl.SliceLayout(1, mma))
    ms = m0 + gl.arange(0, BM, layout=gl.SliceLayout(0, mma))
    gl.store(y_ptr + ms[None, :] * stride_ym + out_rows[:, None], out.to(y_ptr.dtype.element_ty),
             mask=(ms < M)[None, :] & (out_rows < N)[:, None])


def wgmma_ring_gemm(x: torch.Tensor, q, bm: int = 128, stages: int = 4) -> torch.Tensor:
    """``x @ dequant(W)^T`` in bf16 (no bias)."""
    return wgmma_gemm(x, q, bm, stages, w4a16_wgmma_ring_kernel)


def check_and_time() -> None:
    import torch.nn.functional as F

    from nvfp4_triton.autotune import benchmark_ms
    for m, n, k in [(200, 128, 384), (512, 3072, 3072), (512, 12288, 3072), (512, 3072, 12288), (4096, 3072, 3072)]:
        q, x, ref, dense = problem(m, n, k)
        line = (f"({m}, {n}, {k}) cuBLAS {1e3 * benchmark_ms(lambda: F.linear(x, dense)):.1f} us, "
                f"v39 128/3 {1e3 * benchmark_ms(lambda: wgmma_gemm(x, q, 128, 3)):.1f} us")
        for bm in (64, 128, 256):
            for stages in (3, 4, 6):
                y = wgmma_ring_gemm(x, q, bm, stages)
                err = float((y.double() - ref).norm() / ref.norm())
                us = 1e3 * benchmark_ms(lambda: wgmma_ring_gemm(x, q, bm, stages))
                line += f"; {bm}/{stages}: {us:.1f} us, err {err:.1e}"
        print(line, flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--profile", type=int, nargs=5, metavar=("M", "N", "K", "BM", "STAGES"))
    args = parser.parse_args()
    if args.profile:
        run_for_profiler(wgmma_ring_gemm, *args.profile)
    elif args.gpu:
        check_and_time()
    else:
        for bm, stages in ((64, 4), (128, 3), (128, 4), (256, 4)):
            compile_for_sm90(512, 3072, 3072, bm, stages, w4a16_wgmma_ring_kernel)
