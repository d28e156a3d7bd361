"""Session 23, v48: v43 (``wgmma_s22/wgmma_tma.py``) with the 256 x rows of a tile split between two
consumer warpgroups (each a 64 x 128 sum), so that the launch has room for two producer warpgroups.

Why: v47 (``wide_rows.py``, call 10) found x's L2 traffic is not what holds v43 back. 128 x 128
tiles with one producer warpgroup ran 10-23% slower than v43, and with two producers they came
within 3% of it at M = 512 and 6% ahead at (4096, 12288, 3072). So what sets the pace is the decode:
one producer warp a scheduler, a dependent chain of about 140 instructions a step. v43 cannot take a
second producer warpgroup. The launch would have 16 warps (the loader's warp is padded to a
warpgroup), hence 128 registers a thread, and ptxas needs 154 for a 64 x 256 wgmma. Split across two
warpgroups, each sum is 64 registers a thread and its wgmma is 64 x 128, which compiled at 96
registers in v47. The A tile (the decoded weight) is shared by both consumers; x's tile is read half
by each.

Prediction: 10-20% less time than v43 at (512, 12288, 3072) and (4096, 3072, 3072), where the
decode bounds it (0.75-0.8x); at (512, 3072, 3072) the 96 programs still leave 36 SMs idle
(0.68-0.72x).

    python3 bench/experiments/wgmma_s23/split_columns.py            # compile for sm_90
    timeout 200 python3 bench/experiments/wgmma_s23/split_columns.py --gpu
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

from wgmma_tma import _loader, _producer, _ring, descriptors, wgmma_tma_gemm  # noqa: E402
from wgmma_ws import BK, check_and_time  # noqa: E402

BN = gl.constexpr(64)


@gluon.constexpr_function
def _sum_layout(bm):
    """The consumers' sum [64, BM]: two warpgroups side by side, BM / 2 x columns each."""
    return gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 2], instr_shape=[16, bm // 2, 16])


@gluon.jit
def _consumer(x_ring, a_ring, x_ready, a_ready, empty, K, BM: gl.constexpr, STAGES: gl.constexpr):
    """Two warpgroups: wgmma on each slot (each its half of x's tile against the shared A tile); a slot
    is released once the MMA after it has been issued and its own is done."""
    acc = gl.zeros([BN, BM], gl.float32, layout=_sum_layout(BM))
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
def w4a16_split_columns_kernel(x_desc, code_desc, scale_ptr, global_scale_ptr, y_ptr, M, N, K, stride_ym,
                               BM: gl.constexpr, STAGES: gl.constexpr, PRODUCER_REGS: gl.constexpr,
                               PRODUCERS: gl.constexpr):
    """v43's program (64 weight rows against BM x rows, all of K) with two consumer warpgroups and one or
    two producer warpgroups (even and odd steps)."""
    x_ring, code_ring, a_ring, x_ready, code_ready, a_ready, empty = _ring(x_desc, code_desc, BN, BM, STAGES)
    n0 = gl.program_id(0) * BN
    m0 = gl.program_id(1) * BM
    if PRODUCERS == 1:
        acc, = gl.warp_specialize([
            (_consumer, (x_ring, a_ring, x_ready, a_ready, empty, K, BM, STAGES)),
            (_loader, (x_desc, code_desc, x_ring, code_ring, a_ring, x_ready, code_ready, a_ready, empty, scale_ptr,
                       K, n0, m0, BN, BM, STAGES, 0, 1)),
            (_producer, (x_desc, code_desc, x_ring, code_ring, a_ring, x_ready, code_ready, a_ready, empty,
                         scale_ptr, K, n0, m0, BN, BM, STAGES, 0, 1)),
        ], [1, 4], [24, PRODUCER_REGS])
    else:
        acc, = gl.warp_specialize([
            (_consumer, (x_ring, a_ring, x_ready, a_ready, empty, K, BM, STAGES)),
            (_loader, (x_desc, code_desc, x_ring, code_ring, a_ring, x_ready, code_ready, a_ready, empty, scale_ptr,
                       K, n0, m0, BN, BM, STAGES, 0, 2)),
            (_producer, (x_desc, code_desc, x_ring, code_ring, a_ring, x_ready, code_ready, a_ready, empty,
                         scale_ptr, K, n0, m0, BN, BM, STAGES, 0, 2)),
            (_producer, (x_desc, code_desc, x_ring, code_ring, a_ring, x_ready, code_ready, a_ready, empty,
                         scale_ptr, K, n0, m0, BN, BM, STAGES, 1, 2)),
        ], [1, 4, 4], [24, PRODUCER_REGS, PRODUCER_REGS])
    out = acc * (gl.load(global_scale_ptr) * 128.0)
    rows = n0 + gl.arange(0, BN, layout=gl.SliceLayout(1, _sum_layout(BM)))
    ms = m0 + gl.arange(0, BM, layout=gl.SliceLayout(0, _sum_layout(BM)))
    gl.store(y_ptr + ms[None, :] * stride_ym + rows[:, None], out.to(y_ptr.dtype.element_ty),
             mask=(ms < M)[None, :] & (rows < N)[:, None])


def split_columns_gemm(x: torch.Tensor, q, bm: int = 256, stages: int = 4, producer_regs: int = 88,
                       maxnreg: int = 96, producers: int = 2) -> torch.Tensor:
    """``x @ dequant(W)^T`` in bf16 (no bias)."""
    m, k = x.shape
    n = q.out_features
    y = torch.empty(m, n, device=x.device, dtype=x.dtype)
    x_desc, code_desc = descriptors(x, q.packed.view(torch.int32), 64, bm)
    w4a16_split_columns_kernel[(n // 64, -(-m // bm))](x_desc, code_desc, q.scale_bits.view(torch.int32),
                                                       q.global_scale, y, m, n, k, y.stride(0), BM=bm, STAGES=stages,
                                                       PRODUCER_REGS=producer_regs, PRODUCERS=producers,
                                                       num_warps=8, maxnreg=maxnreg)
    return y


def _either(x, q, bn, *config):
    """v43 (``bn`` = 64 with v43's config) or v48 (``bn`` = 1 with v48's), for ``check_and_time``,
    which skips configs whose first entry does not divide N."""
    return wgmma_tma_gemm(x, q, bn, *config) if bn == 64 else split_columns_gemm(x, q, *config)


CONFIGS = [(64, 256, 4, 104, 168, 1), (64, 256, 5, 104, 168, 1), (1, 256, 4, 88, 96, 2), (1, 256, 5, 88, 96, 2),
           (1, 256, 4, 80, 96, 2), (1, 256, 4, 104, 128, 1)]
"""v43's two best, then v48's (1 stands for "v48": it divides every N): (BM, STAGES, producer
registers, maxnreg, producers). Two producers make 20 warps with the padded loader (96 registers a
thread), one 16 (128)."""


def compile_for_sm90(m: int, n: int, k: int, bm: int, stages: int, producer_regs: int, maxnreg: int,
                     producers: int) -> None:
    """Compile for sm_90 without a GPU; print registers, spills and the register split."""
    from triton.runtime.jit import mangle_type

    from kernel_asm import compile_kernel, sass_of
    x_desc, code_desc = descriptors(torch.empty(m, k, dtype=torch.bfloat16), torch.empty(n, k // 8, dtype=torch.int32),
                                    64, bm)
    args = dict(x_desc=mangle_type(x_desc), code_desc=mangle_type(code_desc), scale_ptr="*i32",
                global_scale_ptr="*fp32", y_ptr="*bf16", M=m, N=n, K=k, stride_ym=n, BM=bm, STAGES=stages,
                PRODUCER_REGS=producer_regs, PRODUCERS=producers)
    compiled = compile_kernel(w4a16_split_columns_kernel, args, 8, 1, 90, maxnreg=maxnreg)
    lines, usage = sass_of(compiled.asm["cubin"])
    setmaxnreg = [line.split()[-1].rstrip(";") for line in compiled.asm["ptx"].splitlines() if "setmaxnreg" in line]
    hgmma = sorted({line.split("*/")[1].split()[0] for line in lines if "HGMMA" in line})
    print(f"BM {bm} stages {stages} producers {producers} x {producer_regs}, maxnreg {maxnreg}: "
          f"{usage.strip().splitlines()[-1].strip()[:60]}; setmaxnreg {' '.join(setmaxnreg)}; {hgmma}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--gpu", action="store_true")
    if parser.parse_args().gpu:
        check_and_time(_either, CONFIGS)
    else:
        for cfg in CONFIGS[2:]:
            compile_for_sm90(512, 3072, 3072, *cfg[1:])
