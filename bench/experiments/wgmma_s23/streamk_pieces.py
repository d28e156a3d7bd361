"""Session 23, v45: v44 (``wgmma_s22/wgmma_streamk.py``) with the consumer walking its range piece by
piece (a piece: the part of one tile's K steps inside the program's range).

Why: v44 ran correct but slower than v43 everywhere (session 23, call 2: 45.7 against 30.1 us at
(512, 3072, 3072), 249 against 149 at (4096, 3072, 3072)). Its SASS shows why: the consumer's one
flat loop restarted the sum with ``if first: acc = zeros``, which ptxas compiles to 128 FSELs over
the accumulator at the top of every iteration. Those read registers the previous wgmma (still in
flight after ``warpgroup_mma_wait(1)``) writes, so every step waited for the last MMA to finish,
and the loop ran about 1.7x v43's time a step. Here an inner loop covers one piece, the first
wgmma of a piece does not add the old sum (``use_acc``), and the accumulator is touched only
after ``warpgroup_mma_wait(0)``, at the piece's end. Loader and producer are v44's.

Prediction: the per-step time back to v43's (0.53 us a step at (4096, 3072, 3072): 149 -> 150-155
us), and then v44's own prediction: (512, 3072, 3072) 30 -> 22-24 us (0.80-0.85x), (512, 3072,
12288) 93 -> 70-74 us (0.75-0.78x).

    python3 bench/experiments/wgmma_s23/streamk_pieces.py            # compile for sm_90, no FSEL in the loop
    timeout 120 python3 bench/experiments/wgmma_s23/streamk_pieces.py --gpu        # against float64, cuBLAS, v43, v44
    timeout 120 python3 bench/experiments/wgmma_s23/streamk_pieces.py --programs   # on 48-132 programs
    ncu ... python3 bench/experiments/wgmma_s23/streamk_pieces.py --profile M N K PROGRAMS
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

import wgmma_streamk as v44  # noqa: E402
from wgmma_streamk import BN, BK, _finish_piece, _loader, _producer, _range  # noqa: E402
from wgmma_tma import _ring, descriptors, wgmma_tma_gemm  # noqa: E402


@gluon.jit
def _consumer(x_ring, a_ring, x_ready, a_ready, empty, global_scale_ptr, y_ptr, work_ptr, flag_ptr, M, N, K,
              stride_ym, tiles_m, total, BM: gl.constexpr, STAGES: gl.constexpr):
    """A warpgroup: for each piece of its range, wgmma on each slot (the first not adding the old sum),
    then the piece handed to ``_finish_piece``."""
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
        acc = _finish_piece(acc, piece_end - 1, start, steps, tiles_m, total, global_scale_ptr, y_ptr, work_ptr,
                            flag_ptr, M, N, stride_ym, BM)
        piece = piece_end
    return (acc,)


@gluon.jit
def w4a16_streamk_pieces_kernel(x_desc, code_desc, scale_ptr, global_scale_ptr, y_ptr, work_ptr, flag_ptr, M, N, K,
                                stride_ym, BM: gl.constexpr, STAGES: gl.constexpr):
    """v44's kernel (same contract) with ``_consumer`` above."""
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


def streamk_pieces_gemm(x: torch.Tensor, q, bm: int = 256, stages: int = 4, programs: int | None = None):
    """``x @ dequant(W)^T`` in bf16 (no bias), on ``programs`` persistent programs (the SM count)."""
    m, k = x.shape
    n = q.out_features
    g = programs or torch.cuda.get_device_properties(x.device).multi_processor_count
    y = torch.empty(m, n, device=x.device, dtype=x.dtype)
    work = torch.empty(g, 64, bm, device=x.device, dtype=torch.float32)
    flags = torch.zeros(g, device=x.device, dtype=torch.int32)
    x_desc, code_desc = descriptors(x, q.packed.view(torch.int32), 64, bm)
    w4a16_streamk_pieces_kernel[(g,)](x_desc, code_desc, q.scale_bits.view(torch.int32), q.global_scale, y, work,
                                      flags, m, n, k, y.stride(0), BM=bm, STAGES=stages, num_warps=4, maxnreg=168)
    return y


def compile_for_sm90(m: int, n: int, k: int, bm: int, stages: int) -> None:
    """Compile for sm_90 without a GPU; print registers, spills, and the FSELs and waits in the kernel."""
    from triton.runtime.jit import mangle_type

    from kernel_asm import compile_kernel, sass_of
    x_desc, code_desc = descriptors(torch.empty(m, k, dtype=torch.bfloat16), torch.empty(n, k // 8, dtype=torch.int32),
                                    64, bm)
    args = dict(x_desc=mangle_type(x_desc), code_desc=mangle_type(code_desc), scale_ptr="*i32",
                global_scale_ptr="*fp32", y_ptr="*bf16", work_ptr="*fp32", flag_ptr="*i32", M=m, N=n, K=k,
                stride_ym=n, BM=bm, STAGES=stages)
    compiled = compile_kernel(w4a16_streamk_pieces_kernel, args, 4, 1, 90, maxnreg=168)
    lines, usage = sass_of(compiled.asm["cubin"])
    count = {op: sum(f" {op} " in line for line in lines) for op in ("FSEL", "HGMMA.64x256x16.F32.BF16")}
    waits = [line.split(";")[0].split("*/")[-1].strip() for line in lines if "WARPGROUP.DEPBAR" in line]
    print(f"BM {bm} stages {stages}: {usage.strip().splitlines()[-1].strip()[:60]}; {len(lines)} instructions; "
          f"{count}; waits {waits}")


def program_sweep() -> None:
    """v45 on fewer programs than SMs: at 96 programs and N = 3072, M = 512 each holds exactly one
    tile (v43's work split, no joins), so its time against v43's separates the persistent loop's own
    cost from the joins'."""
    from nvfp4_triton.autotune import benchmark_ms
    from wgmma_gemm import problem
    for m, n, k in [(512, 3072, 3072), (512, 3072, 12288), (4096, 3072, 3072)]:
        q, x, ref, dense = problem(m, n, k)
        v43_us = 1e3 * benchmark_ms(lambda: wgmma_tma_gemm(x, q, 64, 256, 4, 104, 168, 1))
        line = f"({m}, {n}, {k}) v43 {v43_us:.1f} us"
        for programs in (48, 96, 120, 132):
            y = streamk_pieces_gemm(x, q, 256, 4, programs)
            torch.cuda.synchronize()
            assert float((y.double() - ref).norm() / ref.norm()) < 5e-3, programs
            us = 1e3 * benchmark_ms(lambda: streamk_pieces_gemm(x, q, 256, 4, programs))
            line += f"; {programs} programs {us:.1f} us"
        print(line, flush=True)


def check_and_time() -> None:
    """Error against float64 at v44's shapes, and time against cuBLAS, v43 and v44 in one process."""
    import torch.nn.functional as F

    from nvfp4_triton.autotune import benchmark_ms
    from wgmma_gemm import problem
    for m, n, k in [(200, 128, 384), (512, 3072, 3072), (512, 12288, 3072), (512, 3072, 12288), (4096, 3072, 3072)]:
        q, x, ref, dense = problem(m, n, k)
        line = (f"({m}, {n}, {k}) cuBLAS {1e3 * benchmark_ms(lambda: F.linear(x, dense)):.1f} us, "
                f"v43 {1e3 * benchmark_ms(lambda: wgmma_tma_gemm(x, q, 64, 256, 4, 104, 168, 1)):.1f} us, "
                f"v44 {1e3 * benchmark_ms(lambda: v44.wgmma_streamk_gemm(x, q, 256, 4)):.1f} us")
        for stages in (4, 5):
            y = streamk_pieces_gemm(x, q, 256, stages)
            torch.cuda.synchronize()
            err = float((y.double() - ref).norm() / ref.norm())
            us = 1e3 * benchmark_ms(lambda: streamk_pieces_gemm(x, q, 256, stages))
            line += f"; v45 s{stages}: {us:.1f} us, err {err:.1e}"
        print(line, flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--programs", action="store_true", help="time v45 on 48-132 programs")
    parser.add_argument("--profile", type=int, nargs=4, metavar=("M", "N", "K", "PROGRAMS"))
    args = parser.parse_args()
    if args.profile:
        from wgmma_gemm import run_for_profiler
        m, n, k, programs = args.profile
        run_for_profiler(streamk_pieces_gemm, m, n, k, 256, 4, programs)
    elif args.programs:
        program_sweep()
    elif args.gpu:
        check_and_time()
    else:
        for bm, stages in ((256, 4), (256, 5)):
            compile_for_sm90(512, 3072, 3072, bm, stages)
