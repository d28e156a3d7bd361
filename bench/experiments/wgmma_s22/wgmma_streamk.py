"""Session 22, v44 (written and compiled on the CPU for sm_90; run in session 23, correct but 1.5-1.7x
slower than v43, see bench/NOTES.md and ``wgmma_s23/``): v43
(``wgmma_tma.py``) on a persistent stream-K grid, one program an SM, each walking an equal range of
(tile, K step) iterations, so that every SM works at M = 512.

Why: v43 gives each program one 64 x 256 tile of ``y^T``. At N = 3072, M = 512 that is 96 programs
for 132 SMs, one an SM (168 registers x 12 warps), so 36 SMs idle. If the 96 tiles' work were
spread over 132 SMs, (512, 3072, 3072) would take about 29.1 x 96 / 132 = 21 us (0.89x of cuBLAS)
and (512, 3072, 12288) about 67 us (0.82x), less the cost of joining split tiles (bench/NOTES.md).

How: iteration ``it`` is K step ``it % steps`` of tile ``it // steps`` (x's row tiles fastest, so
neighbouring programs share weight rows). Program c takes iterations ``[c T / G, (c + 1) T / G)``.
The loader, producer and consumer walk the same range, so the ring runs on across tile boundaries.
Where a tile's steps are split between programs:
- the program that holds the tile's step 0 finishes it. It holds those steps at the end of its
  range, so the programs after it have long finished their part, which they hold at the start of
  theirs (or, for a tile spanning three programs, all of the middle one's range);
- each other program writes its part (64 x BM fp32) to its own slot of a workspace and raises its
  flag (release); the finisher waits for each flag (acquire), adds the part, and lowers the flag
  again, so the flags are clean for the next launch.
A program has at most one such part (the first piece of its range, when that does not start at a
tile's step 0), so a workspace of one tile a program suffices. The finisher waits only on programs
after it; all run at once (one an SM, no more programs than SMs), so nothing waits on a program
that has not started.

Prediction: (512, 3072, 3072) 29.1 -> 22-24 us (0.80-0.85x), (512, 3072, 12288) 91.7 -> 70-74 us
(0.75-0.78x), (512, 12288, 3072) 78.7 -> 76-79 us (384 tiles already fill 2.9 waves), (4096,
3072, 3072) unchanged within 3%.

    python3 bench/experiments/wgmma_s22/wgmma_streamk.py            # compile for sm_90; check the partition
    timeout 120 python3 bench/experiments/wgmma_s22/wgmma_streamk.py --gpu   # against float64, v43, cuBLAS
    (under a timeout: a mistake in the flags would hang the GPU rather than fail)
"""

import argparse
import collections
import sys
from pathlib import Path

import torch
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (fence_async_shared, mbarrier, tma, warpgroup_mma,
                                                              warpgroup_mma_wait)

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "bench" / "experiments" / "wgmma_s21"))
sys.path.insert(0, str(ROOT / "bench" / "experiments" / "wgmma_s22"))

from wgmma_gemm import problem  # noqa: E402
from wgmma_tma import _decode_step, _ring, descriptors, wgmma_tma_gemm  # noqa: E402
from wgmma_ws import BK  # noqa: E402

BN = gl.constexpr(64)


def iteration_range(c: int, g: int, total: int) -> tuple[int, int]:
    """Program c's iterations of ``total`` among ``g`` programs (as the kernel computes them)."""
    return c * total // g, (c + 1) * total // g


@gluon.jit
def _range(total):
    c = gl.program_id(0)
    g = gl.num_programs(0)
    return c * total // g, (c + 1) * total // g


@gluon.jit
def _tile_origin(it, steps, tiles_m, BM: gl.constexpr):
    """(n0, m0, step) of iteration ``it``."""
    t = it // steps
    return (t // tiles_m) * BN, (t % tiles_m) * BM, it % steps


@gluon.jit
def _loader(x_desc, code_desc, scale_ptr, x_ring, code_ring, a_ring, x_ready, code_ready, a_ready, empty, K, tiles_m,
            total, BM: gl.constexpr, STAGES: gl.constexpr):
    """One warp: each iteration's x tile and codes by TMA into the next ring slot once it is free."""
    steps = K // BK
    start, end = _range(total)
    for it in range(start, end):
        i = it - start
        slot = i % STAGES
        n0, m0, step = _tile_origin(it, steps, tiles_m, BM)
        mbarrier.wait(empty.index(slot), ((i // STAGES) & 1) ^ 1)
        mbarrier.expect(x_ready.index(slot), x_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(x_desc, [m0, step * BK], x_ready.index(slot), x_ring.index(slot))
        mbarrier.expect(code_ready.index(slot), code_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(code_desc, [n0, step * (BK // 8)], code_ready.index(slot),
                                        code_ring.index(slot))


@gluon.jit
def _producer(x_desc, code_desc, scale_ptr, x_ring, code_ring, a_ring, x_ready, code_ready, a_ready, empty, K,
              tiles_m, total, BM: gl.constexpr, STAGES: gl.constexpr):
    """A warpgroup: each iteration's codes decoded into its A slot (as v43), the scales loaded one
    iteration ahead (the next iteration may be another tile's)."""
    code_layout: gl.constexpr = gl.BlockedLayout([1, 4], [16, 2], [4, 1], [1, 0])
    rows = gl.arange(0, BN, layout=gl.SliceLayout(1, code_layout))
    steps = K // BK
    start, end = _range(total)
    n0, m0, step = _tile_origin(start, steps, tiles_m, BM)
    scale_next = gl.load(scale_ptr + (n0 + rows) * (K // 64) + step)
    for it in range(start, end):
        scale_word = scale_next.to(gl.uint32, bitcast=True)
        n0, m0, step = _tile_origin(gl.minimum(it + 1, end - 1), steps, tiles_m, BM)
        scale_next = gl.load(scale_ptr + (n0 + rows) * (K // 64) + step)
        i = it - start
        slot = i % STAGES
        mbarrier.wait(code_ready.index(slot), (i // STAGES) & 1)
        _decode_step(code_ring.index(slot), a_ring.index(slot), scale_word, code_layout, BN)
        fence_async_shared()
        mbarrier.arrive(a_ready.index(slot), count=1)


@gluon.jit
def _finish_piece(acc, it, start, steps, tiles_m, total, global_scale_ptr, y_ptr, work_ptr, flag_ptr, M, N,
                  stride_ym, BM: gl.constexpr):
    """The piece of tile ``it // steps`` that ends at iteration ``it``: stored to y if this program holds
    the tile's step 0 (after adding the other programs' parts), else left in its workspace slot."""
    mma: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BM, 16])
    rows = gl.arange(0, BN, layout=gl.SliceLayout(1, mma))
    cols = gl.arange(0, BM, layout=gl.SliceLayout(0, mma))
    tile_slot = rows[:, None] * BM + cols[None, :]
    c = gl.program_id(0)
    g = gl.num_programs(0)
    first_it = (it // steps) * steps
    if first_it >= start:  # this program finishes the tile
        other = c + 1
        while (other < g) & (other * total // g <= first_it + steps - 1):  # ranges starting in the tile
            if other * total // g < (other + 1) * total // g:  # programs with no iterations hold nothing
                while gl.atomic_add(flag_ptr + other, 0, sem="acquire") == 0:
                    pass
                gl.thread_barrier()  # the whole warpgroup reads after the acquire, from L2 (".cg")
                acc = acc + gl.load(work_ptr + other * (BN * BM) + tile_slot, cache_modifier=".cg")
                gl.atomic_xchg(flag_ptr + other, 0, sem="relaxed")
            other += 1
        n0, m0, step = _tile_origin(it, steps, tiles_m, BM)
        out = acc * (gl.load(global_scale_ptr) * 128.0)
        ms = m0 + cols
        gl.store(y_ptr + ms[None, :] * stride_ym + (n0 + rows)[:, None], out.to(y_ptr.dtype.element_ty),
                 mask=(ms < M)[None, :] & ((n0 + rows) < N)[:, None])
    else:  # a later part of a tile that an earlier program finishes
        gl.store(work_ptr + c * (BN * BM) + tile_slot, acc)
        gl.thread_barrier()  # every consumer thread's part is written before the flag goes up
        gl.atomic_xchg(flag_ptr + c, 1, sem="release")
    return acc


@gluon.jit
def _consumer(x_ring, a_ring, x_ready, a_ready, empty, global_scale_ptr, y_ptr, work_ptr, flag_ptr, M, N, K,
              stride_ym, tiles_m, total, BM: gl.constexpr, STAGES: gl.constexpr):
    """A warpgroup: wgmma on each slot, the sum restarted at each piece's first iteration and handed to
    ``_finish_piece`` at its last."""
    mma: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BM, 16])
    steps = K // BK
    start, end = _range(total)
    acc = gl.zeros([BN, BM], gl.float32, layout=mma)
    for it in range(start, end):
        i = it - start
        slot = i % STAGES
        phase = (i // STAGES) & 1
        mbarrier.wait(x_ready.index(slot), phase)
        mbarrier.wait(a_ready.index(slot), phase)
        if (it % steps == 0) | (it == start):
            acc = gl.zeros([BN, BM], gl.float32, layout=mma)
        acc = warpgroup_mma(a_ring.index(slot), x_ring.index(slot).permute((1, 0)), acc, is_async=True)
        acc = warpgroup_mma_wait(1, deps=[acc])
        mbarrier.arrive(empty.index((i + STAGES - 1) % STAGES), count=1, pred=i > 0)
        if (it % steps == steps - 1) | (it == end - 1):
            acc = warpgroup_mma_wait(0, deps=[acc])
            acc = _finish_piece(acc, it, start, steps, tiles_m, total, global_scale_ptr, y_ptr, work_ptr, flag_ptr,
                                M, N, stride_ym, BM)
    return (acc,)


@gluon.jit
def w4a16_wgmma_streamk_kernel(x_desc, code_desc, scale_ptr, global_scale_ptr, y_ptr, work_ptr, flag_ptr, M, N, K,
                               stride_ym, BM: gl.constexpr, STAGES: gl.constexpr):
    """Program c of G (one an SM): iterations ``[c T / G, (c + 1) T / G)`` of T = tiles x steps. Needs
    N % 64 == 0, K % 64 == 0, G no more than the programs that run at once, ``work_ptr`` fp32
    ``[G, 64, BM]`` and ``flag_ptr`` int32 ``[G]`` zeros (left zero)."""
    x_ring, code_ring, a_ring, x_ready, code_ready, a_ready, empty = _ring(x_desc, code_desc, BN, BM, STAGES)
    tiles_m = (M + BM - 1) // BM
    total = (N // BN) * tiles_m * (K // BK)
    gl.warp_specialize([
        (_consumer, (x_ring, a_ring, x_ready, a_ready, empty, global_scale_ptr, y_ptr, work_ptr, flag_ptr, M, N, K,
                     stride_ym, tiles_m, total, BM, STAGES)),
        (_loader, (x_desc, code_desc, scale_ptr, x_ring, code_ring, a_ring, x_ready, code_ready, a_ready, empty, K,
                   tiles_m, total, BM, STAGES)),
        (_producer, (x_desc, code_desc, scale_ptr, x_ring, code_ring, a_ring, x_ready, code_ready, a_ready, empty, K,
                     tiles_m, total, BM, STAGES)),
    ], [1, 4], [24, 104])


def check_partition(tiles: int, steps: int, g: int) -> None:
    """The kernel's split of ``tiles x steps`` iterations among ``g`` programs, replayed in Python: every
    tile's steps are covered once; the program holding its step 0 finishes it, and the programs it
    waits for (``_finish_piece``'s loop) are exactly the others holding its steps, each with that part
    as the first piece of its range (its one workspace slot)."""
    total = tiles * steps
    holders = collections.defaultdict(list)
    for c in range(g):
        start, end = iteration_range(c, g, total)
        for it in range(start, end):
            holders[it // steps].append(c)
    for t in range(tiles):
        programs = sorted(set(holders[t]))
        assert len(holders[t]) == steps, (t, len(holders[t]))
        finisher = holders[t][0]
        last_it = t * steps + steps - 1
        waited = [o for o in range(finisher + 1, g) if iteration_range(o, g, total)[0] <= last_it
                  and iteration_range(o, g, total)[0] < iteration_range(o, g, total)[1]]
        assert waited == programs[1:], (t, finisher, waited, programs)
        for o in waited:
            assert iteration_range(o, g, total)[0] > t * steps, "a contributor starts inside the tile"
            assert iteration_range(o, g, total)[0] // steps == t, "its part is the first piece of its range"


def compile_for_sm90(m: int, n: int, k: int, bm: int, stages: int) -> None:
    from triton.runtime.jit import mangle_type

    from kernel_asm import compile_kernel, sass_of
    x_desc, code_desc = descriptors(torch.empty(m, k, dtype=torch.bfloat16), torch.empty(n, k // 8, dtype=torch.int32),
                                    64, bm)
    args = dict(x_desc=mangle_type(x_desc), code_desc=mangle_type(code_desc), scale_ptr="*i32",
                global_scale_ptr="*fp32", y_ptr="*bf16", work_ptr="*fp32", flag_ptr="*i32", M=m, N=n, K=k,
                stride_ym=n, BM=bm, STAGES=stages)
    compiled = compile_kernel(w4a16_wgmma_streamk_kernel, args, 4, 1, 90, maxnreg=168)
    lines, usage = sass_of(compiled.asm["cubin"])
    print(f"BM {bm} stages {stages}: {usage.strip().splitlines()[-1].strip()[:60]}; {len(lines)} instructions")


def wgmma_streamk_gemm(x: torch.Tensor, q, bm: int = 256, stages: int = 4, programs: int | None = None):
    """``x @ dequant(W)^T`` in bf16 (no bias), on ``programs`` persistent programs (the SM count)."""
    m, k = x.shape
    n = q.out_features
    g = programs or torch.cuda.get_device_properties(x.device).multi_processor_count
    y = torch.empty(m, n, device=x.device, dtype=x.dtype)
    work = torch.empty(g, 64, bm, device=x.device, dtype=torch.float32)
    flags = torch.zeros(g, device=x.device, dtype=torch.int32)
    x_desc, code_desc = descriptors(x, q.packed.view(torch.int32), 64, bm)
    w4a16_wgmma_streamk_kernel[(g,)](x_desc, code_desc, q.scale_bits.view(torch.int32), q.global_scale, y, work,
                                     flags, m, n, k, y.stride(0), BM=bm, STAGES=stages, num_warps=4, maxnreg=168)
    return y


def check_and_time() -> None:
    import torch.nn.functional as F

    from nvfp4_triton.autotune import benchmark_ms
    for m, n, k in [(200, 128, 384), (512, 3072, 3072), (512, 12288, 3072), (512, 3072, 12288), (4096, 3072, 3072)]:
        q, x, ref, dense = problem(m, n, k)
        line = (f"({m}, {n}, {k}) cuBLAS {1e3 * benchmark_ms(lambda: F.linear(x, dense)):.1f} us, "
                f"v43 {1e3 * benchmark_ms(lambda: wgmma_tma_gemm(x, q, 64, 256, 4, 104, 168, 1)):.1f} us")
        for stages in (4, 5):
            y = wgmma_streamk_gemm(x, q, 256, stages)
            torch.cuda.synchronize()
            err = float((y.double() - ref).norm() / ref.norm())
            us = 1e3 * benchmark_ms(lambda: wgmma_streamk_gemm(x, q, 256, stages))
            line += f"; stream-K s{stages}: {us:.1f} us, err {err:.1e}"
        print(line, flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--gpu", action="store_true")
    if parser.parse_args().gpu:
        check_and_time()
    else:
        for tiles, steps in [(96, 48), (96, 192), (384, 48), (768, 48), (2, 6), (1, 6), (7, 3)]:
            for g in (1, 2, 5, 132):
                check_partition(tiles, steps, g)
        print("partition checked")
        for bm, stages in ((256, 4), (256, 5)):
            compile_for_sm90(512, 3072, 3072, bm, stages)
