"""Session 23, probe (not a kernel to keep): what the joins of split tiles cost v46
(``streamk_counted.py``) on 132 programs.

Why: at (512, 3072, 3072) v46 took 28.7 us (Nsight) on 96 programs, one whole tile each, and 29.8
on 132, where by the work alone it should take about 96 / 132 of that, 21 us, plus the joins
(session 23, call 5). Either the joins cost about 8 us, or each step is slower when all 132 SMs
run. This runs v46 with the joins switched off (``JOIN = False``: every piece is stored to y as if
it were the whole tile, no workspace, no flags; the output is wrong and only timed) beside the
real thing at the M = 512 shapes and (4096, 3072, 3072).

Prediction: without joins, 132 programs take about 96 / 132 of 96 programs' time; then the joins
cost the rest, and their design (one 64 KB part written and read through L2, flags polled by a
warpgroup) is what to change.

    timeout 120 python3 bench/experiments/wgmma_s23/streamk_joins.py --gpu
"""

import argparse
import sys
from pathlib import Path

import torch
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import mbarrier, warpgroup_mma, warpgroup_mma_wait

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "bench" / "experiments" / "wgmma_s22"))
sys.path.insert(0, str(ROOT / "bench" / "experiments" / "wgmma_s23"))

from streamk_counted import _loader, _producer, streamk_counted_gemm  # noqa: E402
from wgmma_streamk import BK, BN, _finish_piece, _range, _tile_origin  # noqa: E402
from wgmma_tma import _ring, descriptors  # noqa: E402


@gluon.jit
def _consumer(x_ring, a_ring, x_ready, a_ready, empty, global_scale_ptr, y_ptr, work_ptr, flag_ptr, M, N, K,
              stride_ym, tiles_m, total, BM: gl.constexpr, STAGES: gl.constexpr, JOIN: gl.constexpr):
    """v45's consumer; with ``JOIN`` off each piece goes straight to y (wrong, for timing)."""
    mma: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BM, 16])
    steps = K // BK
    start, end = _range(total)
    acc = gl.zeros([BN, BM], gl.float32, layout=mma)
    piece = start
    while piece < end:
        piece_end = gl.minimum((piece // steps + 1) * steps, end)
        for it in range(piece, piece_end):
            i = it - start
            slot = i % STAGES
            phase = (i // STAGES) & 1
            mbarrier.wait(x_ready.index(slot), phase)
            mbarrier.wait(a_ready.index(slot), phase)
            acc = warpgroup_mma(a_ring.index(slot), x_ring.index(slot).permute((1, 0)), acc, use_acc=it > piece,
                                is_async=True)
            acc = warpgroup_mma_wait(1, deps=[acc])
            mbarrier.arrive(empty.index((i + STAGES - 1) % STAGES), count=1, pred=i > 0)
        acc = warpgroup_mma_wait(0, deps=[acc])
        if JOIN:
            acc = _finish_piece(acc, piece_end - 1, start, steps, tiles_m, total, global_scale_ptr, y_ptr, work_ptr,
                                flag_ptr, M, N, stride_ym, BM)
        else:
            rows = gl.arange(0, BN, layout=gl.SliceLayout(1, mma))
            cols = gl.arange(0, BM, layout=gl.SliceLayout(0, mma))
            n0, m0, step = _tile_origin(piece_end - 1, steps, tiles_m, BM)
            ms = m0 + cols
            gl.store(y_ptr + ms[None, :] * stride_ym + (n0 + rows)[:, None], acc.to(y_ptr.dtype.element_ty),
                     mask=(ms < M)[None, :] & ((n0 + rows) < N)[:, None])
        piece = piece_end
    return (acc,)


@gluon.jit
def w4a16_streamk_joins_kernel(x_desc, code_desc, scale_ptr, global_scale_ptr, y_ptr, work_ptr, flag_ptr, M, N, K,
                               stride_ym, BM: gl.constexpr, STAGES: gl.constexpr, JOIN: gl.constexpr):
    """v46's kernel with the consumer above."""
    x_ring, code_ring, a_ring, x_ready, code_ready, a_ready, empty = _ring(x_desc, code_desc, BN, BM, STAGES)
    tiles_m = (M + BM - 1) // BM
    total = (N // BN) * tiles_m * (K // BK)
    gl.warp_specialize([
        (_consumer, (x_ring, a_ring, x_ready, a_ready, empty, global_scale_ptr, y_ptr, work_ptr, flag_ptr, M, N, K,
                     stride_ym, tiles_m, total, BM, STAGES, JOIN)),
        (_loader, (x_desc, code_desc, scale_ptr, x_ring, code_ring, a_ring, x_ready, code_ready, a_ready, empty, M,
                   K, tiles_m, total, BM, STAGES)),
        (_producer, (x_desc, code_desc, scale_ptr, x_ring, code_ring, a_ring, x_ready, code_ready, a_ready, empty,
                     M, K, tiles_m, total, BM, STAGES)),
    ], [1, 4], [24, 104])


def streamk_joins_gemm(x: torch.Tensor, q, join: bool, programs: int):
    """v46 on ``programs`` programs (BM 256, 4 stages); without ``join`` the output is wrong."""
    m, k = x.shape
    n = q.out_features
    y = torch.empty(m, n, device=x.device, dtype=x.dtype)
    work = torch.empty(programs, 64, 256, device=x.device, dtype=torch.float32)
    flags = torch.zeros(programs, device=x.device, dtype=torch.int32)
    x_desc, code_desc = descriptors(x, q.packed.view(torch.int32), 64, 256)
    w4a16_streamk_joins_kernel[(programs,)](x_desc, code_desc, q.scale_bits.view(torch.int32), q.global_scale, y,
                                            work, flags, m, n, k, y.stride(0), BM=256, STAGES=4, JOIN=join,
                                            num_warps=4, maxnreg=168)
    return y


def time_joins() -> None:
    """v46 and this probe with and without joins on 96 and 132 programs, each timed twice (lower kept)."""
    from nvfp4_triton.autotune import benchmark_ms
    from wgmma_gemm import problem
    for m, n, k in [(512, 3072, 3072), (512, 12288, 3072), (512, 3072, 12288), (4096, 3072, 3072)]:
        q, x, ref, dense = problem(m, n, k)
        y = streamk_joins_gemm(x, q, True, 132)
        torch.cuda.synchronize()
        err = float((y.double() - ref).norm() / ref.norm())
        calls = {"v46 132": lambda: streamk_counted_gemm(x, q, 256, 4, 132)}
        for programs in (96, 132):
            for join in (True, False):
                calls[f"{programs} {'joins' if join else 'no joins'}"] = (
                    lambda join=join, programs=programs: streamk_joins_gemm(x, q, join, programs))
        times = {name: min(1e3 * benchmark_ms(fn) for _ in range(2)) for name, fn in calls.items()}
        print(f"({m}, {n}, {k}) err with joins {err:.1e}; " + ", ".join(f"{name} {us:.1f} us" for name, us in
                                                                        times.items()), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--gpu", action="store_true")
    if parser.parse_args().gpu:
        time_joins()
