"""Session 23, v46: v45 (``streamk_pieces.py``) with the loader and producer stepping their tile
origin by counting instead of dividing.

Why: on 96 programs, where each holds exactly one whole tile (v43's split of the work, no joins),
v45 took 38.0 us at (512, 3072, 3072) against v43's 29.7 (session 23, call 4). Nsight (same call):
both issue about a quarter of the cycles with three warps a scheduler, but v45 issues about 40%
more instructions. The new ones are v44's ``_tile_origin``: three integer divisions, about 20
instructions each, every K step, in every thread of the producer, whose decode sets the pace of
the ring. Here the loader and producer each carry (weight row, x row, step) and advance it by one
step, wrapping to the next x tile and then the next weight rows; only the consumer divides, once a
piece.

Prediction: 96 programs back to v43's time (29.7 -> 30-31 us); then 132 programs at (512, 3072,
3072) 23-25 us (0.76-0.83x), (512, 3072, 12288) 72-78 us (0.71-0.77x), (4096, 3072, 3072) 150-160.

    python3 bench/experiments/wgmma_s23/streamk_counted.py            # compile for sm_90
    timeout 120 python3 bench/experiments/wgmma_s23/streamk_counted.py --gpu   # error; times on 96-132 programs
"""

import argparse
import sys
from pathlib import Path

import torch
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import fence_async_shared, mbarrier, tma

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "bench" / "experiments" / "wgmma_s22"))
sys.path.insert(0, str(ROOT / "bench" / "experiments" / "wgmma_s23"))

from streamk_pieces import _consumer, streamk_pieces_gemm  # noqa: E402
from wgmma_streamk import BK, BN, _range, _tile_origin  # noqa: E402
from wgmma_tma import _decode_step, _ring, descriptors, wgmma_tma_gemm  # noqa: E402


@gluon.jit
def _next_step(n0, m0, step, steps, M, BM: gl.constexpr):
    """The origin one iteration on: the next K step, else the next x tile, else the next weight rows."""
    step += 1
    if step == steps:
        step = 0
        m0 += BM
        if m0 >= M:
            m0 = 0
            n0 += BN
    return n0, m0, step


@gluon.jit
def _loader(x_desc, code_desc, scale_ptr, x_ring, code_ring, a_ring, x_ready, code_ready, a_ready, empty, M, K,
            tiles_m, total, BM: gl.constexpr, STAGES: gl.constexpr):
    """One warp: each iteration's x tile and codes by TMA into the next ring slot once it is free."""
    steps = K // BK
    start, end = _range(total)
    n0, m0, step = _tile_origin(start, steps, tiles_m, BM)
    for it in range(start, end):
        i = it - start
        slot = i % STAGES
        mbarrier.wait(empty.index(slot), ((i // STAGES) & 1) ^ 1)
        mbarrier.expect(x_ready.index(slot), x_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(x_desc, [m0, step * BK], x_ready.index(slot), x_ring.index(slot))
        mbarrier.expect(code_ready.index(slot), code_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(code_desc, [n0, step * (BK // 8)], code_ready.index(slot),
                                        code_ring.index(slot))
        n0, m0, step = _next_step(n0, m0, step, steps, M, BM)


@gluon.jit
def _producer(x_desc, code_desc, scale_ptr, x_ring, code_ring, a_ring, x_ready, code_ready, a_ready, empty, M, K,
              tiles_m, total, BM: gl.constexpr, STAGES: gl.constexpr):
    """A warpgroup: each iteration's codes decoded into its A slot, the scales loaded one iteration
    ahead (the last iteration loads its own again)."""
    code_layout: gl.constexpr = gl.BlockedLayout([1, 4], [16, 2], [4, 1], [1, 0])
    rows = gl.arange(0, BN, layout=gl.SliceLayout(1, code_layout))
    steps = K // BK
    start, end = _range(total)
    n0, m0, step = _tile_origin(start, steps, tiles_m, BM)
    scale_next = gl.load(scale_ptr + (n0 + rows) * (K // 64) + step)
    for it in range(start, end):
        scale_word = scale_next.to(gl.uint32, bitcast=True)
        if it + 1 < end:
            n0, m0, step = _next_step(n0, m0, step, steps, M, BM)
        scale_next = gl.load(scale_ptr + (n0 + rows) * (K // 64) + step)
        i = it - start
        slot = i % STAGES
        mbarrier.wait(code_ready.index(slot), (i // STAGES) & 1)
        _decode_step(code_ring.index(slot), a_ring.index(slot), scale_word, code_layout, BN)
        fence_async_shared()
        mbarrier.arrive(a_ready.index(slot), count=1)


@gluon.jit
def w4a16_streamk_counted_kernel(x_desc, code_desc, scale_ptr, global_scale_ptr, y_ptr, work_ptr, flag_ptr, M, N, K,
                                 stride_ym, BM: gl.constexpr, STAGES: gl.constexpr):
    """v44's kernel (same contract) with v45's consumer and the loader and producer above."""
    x_ring, code_ring, a_ring, x_ready, code_ready, a_ready, empty = _ring(x_desc, code_desc, BN, BM, STAGES)
    tiles_m = (M + BM - 1) // BM
    total = (N // BN) * tiles_m * (K // BK)
    gl.warp_specialize([
        (_consumer, (x_ring, a_ring, x_ready, a_ready, empty, global_scale_ptr, y_ptr, work_ptr, flag_ptr, M, N, K,
                     stride_ym, tiles_m, total, BM, STAGES)),
        (_loader, (x_desc, code_desc, scale_ptr, x_ring, code_ring, a_ring, x_ready, code_ready, a_ready, empty, M,
                   K, tiles_m, total, BM, STAGES)),
        (_producer, (x_desc, code_desc, scale_ptr, x_ring, code_ring, a_ring, x_ready, code_ready, a_ready, empty,
                     M, K, tiles_m, total, BM, STAGES)),
    ], [1, 4], [24, 104])


def streamk_counted_gemm(x: torch.Tensor, q, bm: int = 256, stages: int = 4, programs: int | None = None):
    """``x @ dequant(W)^T`` in bf16 (no bias), on ``programs`` persistent programs (the SM count)."""
    m, k = x.shape
    n = q.out_features
    g = programs or torch.cuda.get_device_properties(x.device).multi_processor_count
    y = torch.empty(m, n, device=x.device, dtype=x.dtype)
    work = torch.empty(g, 64, bm, device=x.device, dtype=torch.float32)
    flags = torch.zeros(g, device=x.device, dtype=torch.int32)
    x_desc, code_desc = descriptors(x, q.packed.view(torch.int32), 64, bm)
    w4a16_streamk_counted_kernel[(g,)](x_desc, code_desc, q.scale_bits.view(torch.int32), q.global_scale, y, work,
                                       flags, m, n, k, y.stride(0), BM=bm, STAGES=stages, num_warps=4, maxnreg=168)
    return y


def compile_for_sm90(m: int, n: int, k: int, bm: int, stages: int) -> None:
    """Compile for sm_90 without a GPU; print registers, spills and the instruction count."""
    from triton.runtime.jit import mangle_type

    from kernel_asm import compile_kernel, sass_of
    x_desc, code_desc = descriptors(torch.empty(m, k, dtype=torch.bfloat16), torch.empty(n, k // 8, dtype=torch.int32),
                                    64, bm)
    args = dict(x_desc=mangle_type(x_desc), code_desc=mangle_type(code_desc), scale_ptr="*i32",
                global_scale_ptr="*fp32", y_ptr="*bf16", work_ptr="*fp32", flag_ptr="*i32", M=m, N=n, K=k,
                stride_ym=n, BM=bm, STAGES=stages)
    compiled = compile_kernel(w4a16_streamk_counted_kernel, args, 4, 1, 90, maxnreg=168)
    lines, usage = sass_of(compiled.asm["cubin"])
    divisions = sum("MUFU.RCP" in line for line in lines)
    print(f"BM {bm} stages {stages}: {usage.strip().splitlines()[-1].strip()[:60]}; {len(lines)} instructions, "
          f"{divisions} MUFU.RCP (integer divisions)")


def check_and_time() -> None:
    """Error against float64 at v44's shapes; then, in one process, cuBLAS, v43, v45 on 132 programs
    and v46 on 96, 120 and 132, each timed twice in turn (the lower kept)."""
    import torch.nn.functional as F

    from nvfp4_triton.autotune import benchmark_ms
    from wgmma_gemm import problem
    for m, n, k in [(200, 128, 384), (512, 3072, 3072), (512, 12288, 3072), (512, 3072, 12288), (4096, 3072, 3072)]:
        q, x, ref, dense = problem(m, n, k)
        calls = {"cuBLAS": lambda: F.linear(x, dense), "v43": lambda: wgmma_tma_gemm(x, q, 64, 256, 4, 104, 168, 1),
                 "v45 132": lambda: streamk_pieces_gemm(x, q, 256, 4, 132)}
        for programs in (96, 120, 132):
            calls[f"v46 {programs}"] = lambda programs=programs: streamk_counted_gemm(x, q, 256, 4, programs)
            y = calls[f"v46 {programs}"]()
            torch.cuda.synchronize()
            err = float((y.double() - ref).norm() / ref.norm())
            assert err < 5e-3, (m, n, k, programs, err)
        times = {name: min(1e3 * benchmark_ms(fn) for _ in range(2)) for name, fn in calls.items()}
        print(f"({m}, {n}, {k}) v46 err {err:.1e}; "
              + ", ".join(f"{name} {us:.1f} us ({times['cuBLAS'] / us:.3f})" for name, us in times.items()),
              flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--profile", type=int, nargs=4, metavar=("M", "N", "K", "PROGRAMS"))
    args = parser.parse_args()
    if args.profile:
        from wgmma_gemm import run_for_profiler
        m, n, k, programs = args.profile
        run_for_profiler(streamk_counted_gemm, m, n, k, 256, 4, programs)
    elif args.gpu:
        check_and_time()
    else:
        for bm, stages in ((256, 4), (256, 5)):
            compile_for_sm90(512, 3072, 3072, bm, stages)
