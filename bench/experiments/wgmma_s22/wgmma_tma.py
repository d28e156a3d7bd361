"""Session 22, v43: v41 (``wgmma_ws.py``) with x's tile and the weight's codes brought by TMA, issued by
a loader warp into the ring, so that the producer warps only decode.

Why: in v41 the producer warpgroup copied x's tile (8-16 cp.async a thread a step), waited for its
own copies with no other group in flight, decoded, stored, fenced and signalled, one chain a step;
Nsight (session 22, calls 7-8) found it waiting on its cp.async groups and the consumer waiting for
it, with L2 32% busy and the issue slots 21-25%. Here TMA fills x's and the codes' slots as soon as
the consumer releases them (an mbarrier's expected bytes signal them), and a producer step is:
wait for the codes, decode from shared memory, store the A tile, fence, signal. The block scales
(4 bytes a row a step, below TMA's 16-byte box) are loaded by the producer one of its steps ahead.

Prediction: the producer's chain loses the copy issue and the wait for its own copies; with the
ring's STAGES steps of TMA in flight the consumer should wait less: 0.6-0.7x of cuBLAS at
(4096, 3072, 3072) (v40: 0.58x, v41: 0.51x), 0.5-0.6x at (512, 3072, 3072).

    python3 bench/experiments/wgmma_s22/wgmma_tma.py            # compile for sm_90 on any machine
    python3 bench/experiments/wgmma_s22/wgmma_tma.py --gpu      # check against float64, time vs cuBLAS
    python3 bench/experiments/wgmma_s22/wgmma_tma.py --profile M N K CONFIG   # for Nsight Compute
    python3 bench/experiments/wgmma_s22/wgmma_tma.py --versus-library   # against the library, one process
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
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "bench" / "experiments" / "wgmma_s21"))
sys.path.insert(0, str(ROOT / "bench" / "experiments" / "wgmma_s22"))

from wgmma_gemm import problem, run_for_profiler  # noqa: E402
from wgmma_ws import BK, _as_bf16, _pairs_of_byte, _store_y, check_and_time  # noqa: E402

from nvfp4_triton.kernels._gluon_bf16 import e4m3_pair_to_bf16 as _e4m3_pair_to_bf16  # noqa: E402

X_SHARED = gl.NVMMASharedLayout(swizzle_byte_width=128, element_bitwidth=16, rank=2)
CODE_SHARED = gl.NVMMASharedLayout(swizzle_byte_width=32, element_bitwidth=32, rank=2)


@gluon.jit
def _loader(x_desc, code_desc, x_ring, code_ring, a_ring, x_ready, code_ready, a_ready, empty, scale_ptr, K, n0, m0,
            BN: gl.constexpr, BM: gl.constexpr, STAGES: gl.constexpr, FIRST: gl.constexpr,
            PRODUCERS: gl.constexpr):
    """One warp: TMA of step i's x tile and codes into slot i % STAGES once the consumer has released it."""
    for i in range(K // BK):
        slot = i % STAGES
        mbarrier.wait(empty.index(slot), ((i // STAGES) & 1) ^ 1)  # a fresh barrier passes phase 1 at once
        mbarrier.expect(x_ready.index(slot), x_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(x_desc, [m0, i * BK], x_ready.index(slot), x_ring.index(slot))
        mbarrier.expect(code_ready.index(slot), code_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(code_desc, [n0, i * (BK // 8)], code_ready.index(slot), code_ring.index(slot))


@gluon.jit
def _decode_step(code_slot, a_slot, scale_word, code_layout: gl.constexpr, BN: gl.constexpr):
    """A step's codes in ``code_slot`` ([BN, 8] words) with their rows' scale words -> the bf16 A tile in
    ``a_slot``; v44 decodes the same way."""
    cols = gl.arange(0, 8, layout=gl.SliceLayout(0, code_layout))
    half_shift = 16 * (cols // 4)[None, :]  # word w's block is w // 2, its scale byte w // 2
    high_block = (((cols // 2) % 2) == 1)[None, :]
    words = code_slot.load(code_layout).to(gl.uint32, bitcast=True)
    two = _e4m3_pair_to_bf16((scale_word[:, None] >> half_shift) & 0xFFFF)
    scale2 = gl.where(high_block, (two >> 16) | (two & 0xFFFF0000), (two & 0xFFFF) | (two << 16))
    e01 = gl.join(_as_bf16(_pairs_of_byte(words, 0, scale2)), _as_bf16(_pairs_of_byte(words, 1, scale2)))
    e23 = gl.join(_as_bf16(_pairs_of_byte(words, 2, scale2)), _as_bf16(_pairs_of_byte(words, 3, scale2)))
    a_slot.store(gl.reshape(gl.permute(gl.join(e01, e23), [0, 1, 4, 3, 2]), [BN, BK]))


@gluon.jit
def _producer(x_desc, code_desc, x_ring, code_ring, a_ring, x_ready, code_ready, a_ready, empty, scale_ptr, K, n0, m0,
              BN: gl.constexpr, BM: gl.constexpr, STAGES: gl.constexpr, FIRST: gl.constexpr,
              PRODUCERS: gl.constexpr):
    """Steps FIRST, FIRST + PRODUCERS, ..: once step i's codes have landed, decode them (with the
    scales loaded one own step ahead) into its A slot and signal it ready."""
    code_layout: gl.constexpr = gl.BlockedLayout([1, 4 * BN // 64], [16 * BN // 64, 128 // BN], [4, 1], [1, 0])
    scale_layout: gl.constexpr = gl.SliceLayout(1, code_layout)
    rows = gl.arange(0, BN, layout=scale_layout)
    scale_src = scale_ptr + (n0 + rows) * (K // 64)
    steps = K // BK
    scale_next = gl.load(scale_src + FIRST)
    for i in range(FIRST, steps, PRODUCERS):
        scale_word = scale_next.to(gl.uint32, bitcast=True)
        scale_next = gl.load(scale_src + gl.minimum(i + PRODUCERS, steps - 1))
        slot = i % STAGES
        mbarrier.wait(code_ready.index(slot), (i // STAGES) & 1)
        _decode_step(code_ring.index(slot), a_ring.index(slot), scale_word, code_layout, BN)
        # The stores are generic-proxy writes read by wgmma (async proxy); the fence also orders this
        # step's code loads before the TMA that will refill the slot.
        fence_async_shared()
        mbarrier.arrive(a_ready.index(slot), count=1)


@gluon.jit
def _consumer(x_ring, a_ring, x_ready, a_ready, empty, K, BN: gl.constexpr, BM: gl.constexpr, STAGES: gl.constexpr):
    """wgmma on each slot once x and A are both in; a slot is released once the MMA after it has been
    issued and its own is done."""
    mma: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[BN // 16, 1],
                                                  instr_shape=[16, BM, 16])
    acc = gl.zeros([BN, BM], gl.float32, layout=mma)
    for i in range(K // BK):
        slot = i % STAGES
        phase = (i // STAGES) & 1
        mbarrier.wait(x_ready.index(slot), phase)
        mbarrier.wait(a_ready.index(slot), phase)
        acc = warpgroup_mma(a_ring.index(slot), x_ring.index(slot).permute((1, 0)), acc, is_async=True)
        acc = warpgroup_mma_wait(1, deps=[acc])
        mbarrier.arrive(empty.index((i + STAGES - 1) % STAGES), count=1, pred=i > 0)
    return (warpgroup_mma_wait(0, deps=[acc]),)


@gluon.jit
def _ring(x_desc, code_desc, BN: gl.constexpr, BM: gl.constexpr, STAGES: gl.constexpr):
    """The ring's slots (x's tile, the codes, the decoded A tile) and their barriers, initialized;
    v44 sets up the same ring."""
    x_ring = gl.allocate_shared_memory(gl.bfloat16, [STAGES, BM, BK], x_desc.layout)
    code_ring = gl.allocate_shared_memory(gl.int32, [STAGES, BN, BK // 8], code_desc.layout)
    a_ring = gl.allocate_shared_memory(gl.bfloat16, [STAGES, BN, BK], x_desc.layout)
    x_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    code_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    a_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    for s in gl.static_range(STAGES):
        mbarrier.init(x_ready.index(s), count=1)
        mbarrier.init(code_ready.index(s), count=1)
        mbarrier.init(a_ready.index(s), count=1)
        mbarrier.init(empty.index(s), count=1)
    return x_ring, code_ring, a_ring, x_ready, code_ready, a_ready, empty


@gluon.jit
def w4a16_wgmma_tma_kernel(x_desc, code_desc, scale_ptr, global_scale_ptr, y_ptr, M, N, K, stride_ym,
                           BN: gl.constexpr, BM: gl.constexpr, STAGES: gl.constexpr, PRODUCER_REGS: gl.constexpr,
                           PRODUCERS: gl.constexpr):
    """Program (n, m): weight rows ``BN n ..`` against x rows ``BM m ..``, all of K. Needs N % BN == 0,
    K % 64 == 0 and TMA-able x (unit K stride, 16-byte aligned rows)."""
    x_ring, code_ring, a_ring, x_ready, code_ready, a_ready, empty = _ring(x_desc, code_desc, BN, BM, STAGES)

    n0 = gl.program_id(0) * BN
    m0 = gl.program_id(1) * BM
    if PRODUCERS == 1:
        acc, = gl.warp_specialize([
            (_consumer, (x_ring, a_ring, x_ready, a_ready, empty, K, BN, BM, STAGES)),
            (_loader, (x_desc, code_desc, x_ring, code_ring, a_ring, x_ready, code_ready, a_ready, empty, scale_ptr,
                       K, n0, m0, BN, BM, STAGES, 0, 1)),
            (_producer, (x_desc, code_desc, x_ring, code_ring, a_ring, x_ready, code_ready, a_ready, empty,
                         scale_ptr, K, n0, m0, BN, BM, STAGES, 0, 1)),
        ], [1, 4], [24, PRODUCER_REGS])
    else:  # two producers, even and odd steps
        acc, = gl.warp_specialize([
            (_consumer, (x_ring, a_ring, x_ready, a_ready, empty, K, BN, BM, STAGES)),
            (_loader, (x_desc, code_desc, x_ring, code_ring, a_ring, x_ready, code_ready, a_ready, empty, scale_ptr,
                       K, n0, m0, BN, BM, STAGES, 0, 2)),
            (_producer, (x_desc, code_desc, x_ring, code_ring, a_ring, x_ready, code_ready, a_ready, empty,
                         scale_ptr, K, n0, m0, BN, BM, STAGES, 0, 2)),
            (_producer, (x_desc, code_desc, x_ring, code_ring, a_ring, x_ready, code_ready, a_ready, empty,
                         scale_ptr, K, n0, m0, BN, BM, STAGES, 1, 2)),
        ], [1, 4, 4], [24, PRODUCER_REGS, PRODUCER_REGS])

    _store_y(acc, global_scale_ptr, y_ptr, M, N, stride_ym, n0, m0, BN, BM)


def descriptors(x: torch.Tensor, codes: torch.Tensor, bn: int, bm: int):
    """TMA descriptors of x ([BM, 64] bf16 tiles) and of the codes as int32 words ([BN, 8] a step)."""
    return (TensorDescriptor.from_tensor(x, [bm, 64], X_SHARED),
            TensorDescriptor.from_tensor(codes, [bn, 8], CODE_SHARED))


def compile_for_sm90(m: int, n: int, k: int, bn: int, bm: int, stages: int, producer_regs: int, maxnreg: int,
                     producers: int):
    """Compile for sm_90 without a GPU and print registers, spills, the main opcodes and the register split."""
    from triton.runtime.jit import mangle_type

    from kernel_asm import compile_kernel, sass_of
    x_desc, code_desc = descriptors(torch.empty(m, k, dtype=torch.bfloat16), torch.empty(n, k // 8, dtype=torch.int32),
                                    bn, bm)
    args = dict(x_desc=mangle_type(x_desc), code_desc=mangle_type(code_desc), scale_ptr="*i32",
                global_scale_ptr="*fp32", y_ptr="*bf16", M=m, N=n, K=k, stride_ym=n, BN=bn, BM=bm, STAGES=stages,
                PRODUCER_REGS=producer_regs, PRODUCERS=producers)
    compiled = compile_kernel(w4a16_wgmma_tma_kernel, args, bn // 16, 1, 90, maxnreg=maxnreg)
    lines, usage = sass_of(compiled.asm["cubin"])
    ops = collections.Counter(line.split("*/", 1)[1].split()[0].split(".")[0].lstrip("@!P0123456789 ")
                              for line in lines)
    setmaxnreg = [line.split()[-1].rstrip(";") for line in compiled.asm["ptx"].splitlines() if "setmaxnreg" in line]
    print(f"BN {bn} BM {bm} stages {stages} producers {producers} x {producer_regs} registers, maxnreg {maxnreg}: "
          f"{usage.strip().splitlines()[-1].strip()[:60]}; setmaxnreg {' '.join(setmaxnreg)}; "
          + ", ".join(f"{op} {ops[op]}" for op in ("HGMMA", "UTMALDG", "LDG", "LDS", "STS", "BAR", "SYNCS")))


def wgmma_tma_gemm(x: torch.Tensor, q, bn: int = 64, bm: int = 256, stages: int = 5, producer_regs: int = 104,
                   maxnreg: int = 168, producers: int = 1) -> torch.Tensor:
    """``x @ dequant(W)^T`` in bf16 (no bias)."""
    m, k = x.shape
    n = q.out_features
    y = torch.empty(m, n, device=x.device, dtype=x.dtype)
    x_desc, code_desc = descriptors(x, q.packed.view(torch.int32), bn, bm)
    w4a16_wgmma_tma_kernel[(n // bn, -(-m // bm))](x_desc, code_desc, q.scale_bits.view(torch.int32), q.global_scale,
                                                   y, m, n, k, y.stride(0), BN=bn, BM=bm, STAGES=stages,
                                                   PRODUCER_REGS=producer_regs, PRODUCERS=producers,
                                                   num_warps=bn // 16, maxnreg=maxnreg)
    return y


CONFIGS = [(64, 256, 5, 104, 168, 1), (64, 256, 4, 104, 168, 1), (64, 128, 6, 104, 128, 1), (64, 128, 8, 88, 128, 2),
           (64, 256, 3, 104, 168, 1), (64, 256, 4, 120, 168, 1), (64, 256, 4, 88, 168, 1)]
"""(BN, BM, STAGES, producer registers, maxnreg, producers). Call 11 ran the first four and (128, 256, 4,
104, 168, 1), which cannot launch (16 warps at 168 registers); the last three came in call 12. At
BM 128, two programs an SM would need 85 registers a thread at most; ptxas needs more for the wgmma."""


def versus_library() -> None:
    """At each M = 512 and 4096 shape, in one process: cuBLAS, the library (tuned), and v43's two BM 256
    configs, each twice in turn, with ratios to cuBLAS."""
    import torch.nn.functional as F

    from nvfp4_triton import gemm, nvfp4_linear
    from nvfp4_triton.autotune import benchmark_ms
    from nvfp4_triton.tiling import describe
    for m, n, k in [(512, 3072, 3072), (512, 12288, 3072), (512, 3072, 12288), (4096, 3072, 3072)]:
        q, x, ref, dense = problem(m, n, k)
        calls = {"cuBLAS": lambda: F.linear(x, dense), "library": lambda: nvfp4_linear(x, q),
                 "v43 s5": lambda: wgmma_tma_gemm(x, q, *CONFIGS[0]),
                 "v43 s4": lambda: wgmma_tma_gemm(x, q, *CONFIGS[1])}
        for name in ("library", "v43 s5", "v43 s4"):
            y = calls[name]()
            assert float((y.double() - ref).norm() / ref.norm()) < 5e-3, name
        times = {name: [] for name in calls}
        for _ in range(2):
            for name, fn in calls.items():
                times[name].append(1e3 * benchmark_ms(fn))
        base = min(times["cuBLAS"])
        chosen = gemm.tuner.lookup(gemm.tuning_key(x.device, x.dtype, m, n, k, False))  # no bias
        chosen = describe(chosen) if chosen is not None else "not found"
        print(f"({m}, {n}, {k}): "
              + ", ".join(f"{name} {min(t):.1f} us ({base / min(t):.3f})" for name, t in times.items())
              + f"; the library's choice: {chosen}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--profile", type=int, nargs=4, metavar=("M", "N", "K", "CONFIG"))
    parser.add_argument("--versus-library", action="store_true")
    args = parser.parse_args()
    if args.versus_library:
        versus_library()
    elif args.profile:
        m, n, k, index = args.profile
        run_for_profiler(wgmma_tma_gemm, m, n, k, *CONFIGS[index])
    elif args.gpu:
        check_and_time(wgmma_tma_gemm, CONFIGS)
    else:
        for cfg in CONFIGS:
            compile_for_sm90(512, 3072, 3072, *cfg)
