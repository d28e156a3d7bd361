"""Session 17, CPU only: can Gluon feed mma.sync with NVFP4 weights decoded in registers, no shared memory?

Compiles (for sm_90, without a GPU) a small-M GEMM ``y^T[BN, BM] = W[BN, K] @ x^T[K, BM]`` written
in Gluon (Triton 3.6's ``triton.experimental.gluon``), and prints its registers, shared memory and
the SASS of its K loop. The weight's packed codes are loaded in a layout chosen so that
``gl.fp4_to_fp`` (E2M1 bytes -> bf16, two per byte) yields exactly mma.sync's A-operand layout
(``convert_layout(..., assert_trivial=True)`` checks that nothing moves); the block scales are
broadcast into the same layout the same way and multiplied in; x is loaded straight into the
B-operand layout. The weight's rows are the MMA's rows, x's (up to 16) its columns.

NOT RUN on a GPU: whether it computes the right product is unchecked. Its purpose is the layout
question, and the instruction count as a baseline for a real kernel (bench/NOTES.md, session 17).

    python bench/experiments/gluon_s17/compile_probe.py
"""

import collections
import sys
from pathlib import Path

import triton
from triton.backends.compiler import GPUTarget
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon._runtime import GluonASTSource
from triton.experimental.gluon.language.nvidia.ampere import mma_v2

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import kernel_asm  # noqa: E402

BK = gl.constexpr(128)  # K per trip: 8 scale blocks


@gluon.jit
def small_m_gemm(codes_ptr, scale_ptr, x_ptr, y_ptr, N, K, BN: gl.constexpr, BM: gl.constexpr,
                 WARPS: gl.constexpr, WARP_BASES: gl.constexpr, WARP_BASES_3D: gl.constexpr):
    mma: gl.constexpr = gl.NVMMADistributedLayout(version=[2, 0], warps_per_cta=[WARPS, 1], instr_shape=[16, 8])
    a_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=mma, k_width=2)
    b_layout: gl.constexpr = gl.DotOperandLayout(operand_index=1, parent=mma, k_width=2)
    # The A layout for [BN, BK] bf16 has register bases [0,1] [8,0] [0,8] [0,16] [0,32] [0,64] and
    # lane bases [0,2] [0,4] [1,0] [2,0] [4,0]: a thread holds elements 2q and 2q+1 (byte q) and
    # 2q+8, 2q+9 (byte q + 4) of each 16-wide block, for rows g and g + 8 (lane = 4g + q). The
    # bytes' layout is that without the first register basis and with K halved.
    byte_layout: gl.constexpr = gl.DistributedLinearLayout(
        reg_bases=[[8, 0], [0, 4], [0, 8], [0, 16], [0, 32]], lane_bases=[[0, 1], [0, 2], [1, 0], [2, 0], [4, 0]],
        warp_bases=WARP_BASES, block_bases=[], shape=[BN, BK // 2])
    # The same A layout over [BN, BK // 16, 16]; its slice along the last axis holds each thread's
    # block scales, and broadcasting them back along it lines them up with the elements.
    blocks_layout: gl.constexpr = gl.DistributedLinearLayout(
        reg_bases=[[0, 0, 1], [8, 0, 0], [0, 0, 8], [0, 1, 0], [0, 2, 0], [0, 4, 0]],
        lane_bases=[[0, 0, 2], [0, 0, 4], [1, 0, 0], [2, 0, 0], [4, 0, 0]],
        warp_bases=WARP_BASES_3D, block_bases=[], shape=[BN, BK // 16, 16])
    scale_layout: gl.constexpr = gl.SliceLayout(2, blocks_layout)

    n0 = gl.program_id(0) * BN
    rows = n0 + gl.arange(0, BN, layout=gl.SliceLayout(1, byte_layout))
    byte_cols = gl.arange(0, BK // 2, layout=gl.SliceLayout(0, byte_layout))
    scale_rows = n0 + gl.arange(0, BN, layout=gl.SliceLayout(1, scale_layout))
    scale_cols = gl.arange(0, BK // 16, layout=gl.SliceLayout(0, scale_layout))
    x_k = gl.arange(0, BK, layout=gl.SliceLayout(1, b_layout))
    x_m = gl.arange(0, BM, layout=gl.SliceLayout(0, b_layout))
    zeros_3d = gl.full([BN, BK // 16, 16], 0, gl.bfloat16, layout=blocks_layout)
    acc = gl.zeros([BN, BM], gl.float32, layout=mma)
    for k0 in range(0, K, BK):
        codes = gl.load(codes_ptr + rows[:, None] * (K // 2) + k0 // 2 + byte_cols[None, :])
        w = gl.convert_layout(gl.fp4_to_fp(codes, gl.bfloat16, axis=1), a_layout, assert_trivial=True)
        scale = gl.load(scale_ptr + scale_rows[:, None] * (K // 16) + k0 // 16 + scale_cols[None, :]).to(gl.bfloat16)
        scale, _ = gl.broadcast(gl.expand_dims(scale, 2), zeros_3d)
        scale = gl.convert_layout(gl.reshape(scale, [BN, BK]), a_layout, assert_trivial=True)
        x = gl.load(x_ptr + x_m[None, :] * K + k0 + x_k[:, None])
        acc = mma_v2(w * scale, x, acc)
    out_rows = n0 + gl.arange(0, BN, layout=gl.SliceLayout(1, mma))
    out_m = gl.arange(0, BM, layout=gl.SliceLayout(0, mma))
    gl.store(y_ptr + out_m[None, :] * N + out_rows[:, None], acc)


def report(label: str, kernel, signature: dict, constexprs: dict, warps: int, tile_elements: int) -> None:
    """Compile a Gluon ``kernel`` for sm_90 (every pointer and integer 16-divisible) and print its
    registers, shared memory, K-loop size per weight element of a ``tile_elements`` tile, and opcodes."""
    source = GluonASTSource(kernel, signature=signature, constexprs=constexprs,
                            attrs={(i,): [["tt.divisibility", 16]] for i, kind in enumerate(signature.values())
                                   if kind != "constexpr"})
    compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"num_warps": warps})
    lines, usage = kernel_asm.sass_of(compiled.asm["cubin"])
    loop = kernel_asm.innermost_loop(lines)
    registers = usage.split("REG:")[1].split()[0]
    per_thread = tile_elements / (32 * warps)
    print(f"{label}: {registers} registers, {compiled.metadata.shared} B shared memory, K loop {loop} "
          f"instructions a trip = {loop / per_thread:.2f} a weight element")
    print("  whole kernel:", collections.Counter(kernel_asm._opcode(line) for line in lines).most_common(12))


def warp_bases(warps: int) -> list[list[int]]:
    """Linear-layout bases of ``warps`` warps stacked along the weight's rows, 16 rows each."""
    return [[16 * 2**i, 0] for i in range(warps.bit_length() - 1)]


def main() -> None:
    print(f"Triton {triton.__version__}, sm_90, M = 16 (x's rows as the MMA's columns), K tile {BK.value}")
    for bn, warps in ((64, 4), (128, 8)):
        report(f"BN {bn}, {warps} warps", small_m_gemm,
               {"codes_ptr": "*u8", "scale_ptr": "*fp8e4nv", "x_ptr": "*bf16", "y_ptr": "*fp32", "N": "i32",
                "K": "i32", "BN": "constexpr", "BM": "constexpr", "WARPS": "constexpr",
                "WARP_BASES": "constexpr", "WARP_BASES_3D": "constexpr"},
               {"BN": bn, "BM": 16, "WARPS": warps, "WARP_BASES": warp_bases(warps),
                "WARP_BASES_3D": [b + [0] for b in warp_bases(warps)]},
               warps, bn * BK.value)

if __name__ == "__main__":
    main()
