"""Session 18: a small-M NVFP4 GEMM whose weight never leaves registers (Gluon, mma.sync), for the GPU.

``y[M, N] = x[M, K] @ dequant(W)^T * global_scale (+ bias)`` for M <= 16: the weight's rows are
the MMA's rows (m16n8k16), x's rows its columns. The codes and scales are re-laid once
(``prepack``) so that each thread loads exactly its A-operand fragment:

- codes: per row and 128-wide K tile, 16 int32 words; word ``4q + j`` belongs to the threads with
  ``lane % 4 == q`` and holds blocks ``2j`` and ``2j + 1``. Its nibbles i and i + 4 are one
  A-register pair: 0/4 elements 2q, 2q + 1 of block 2j; 1/5 elements 2q + 8, 2q + 9 of it; 2/6
  and 3/7 the same of block 2j + 1. One 16-byte load a row and tile.
- scales: bf16 patterns of ``e4m3 * 2**119``, in the checkpoint's order (+1 byte a block against
  E4M3: 0.625 bytes a weight element instead of 0.5625); a word's two blocks are one uint32.

Each pair is decoded as the library's ``nibble_pair_bits`` does (bf16 patterns worth
``e2m1 * 2**-126``, exact) and scaled by one ``fma.rn.bf16x2`` with its duplicated scale: exact
products worth ``e2m1 * e4m3 * 2**-7``; the epilogue multiplies by ``2**7 * global_scale``. The
pairs reach mma.sync's A layout by join, reshape and permute with nothing moved
(``convert_layout(..., assert_trivial=True)``). No shared memory, no barrier.

Session 17's probes (``gluon_s17``) compiled the decode alone (2.94 SASS instructions a weight
element) and a naive scale path (5.77). ``python registers_gemm.py`` prints this kernel's
compiled size on the CPU machine; ``check_and_time.py`` (GPU) checks it against float64 and
times it against cuBLAS and the library. NOT RUN on a GPU in session 18.
"""

import sys
from pathlib import Path

import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import mma_v2

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gluon_s17"))

from prepacked_probe import a_fragment, pair_bits, scaled  # noqa: E402  (the library's pair decode; a fma.rn.bf16x2)

BK = 128  # K per trip: 8 scale blocks


def prepack(packed: torch.Tensor, block_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ModelOpt's codes (uint8 ``[N, K/2]``, element ``2i`` in the low nibble) and E4M3 block scales
    (``[N, K/16]``) -> (int32 words ``[N, K/8]`` in the order above, bf16 ``e4m3 * 2**119`` ``[N, K/16]``)."""
    n, half_k = packed.shape
    k = 2 * half_k
    if k % BK:
        raise ValueError(f"prepack: K must be a multiple of {BK}, got {k}")
    codes = torch.stack((packed & 0xF, packed >> 4), dim=-1).reshape(n, k // BK, 8, 16)  # [n, tile, block, e]
    q, j = torch.arange(4).view(4, 1, 1), torch.arange(4).view(1, 4, 1)
    nibble = torch.arange(8).view(1, 1, 8)
    block = 2 * j + (nibble % 4) // 2  # nibbles 0, 1, 4, 5: block 2j; 2, 3, 6, 7: block 2j + 1
    element = 2 * q + 8 * (nibble % 2) + nibble // 4  # 1, 3, 5, 7 the second half; 4-7 the odd elements
    picked = codes[:, :, block.expand(4, 4, 8).to(codes.device), element.expand(4, 4, 8).to(codes.device)]
    shifts = (4 * torch.arange(8, device=packed.device)).view(1, 1, 1, 1, 8)
    words = (picked.to(torch.int64) << shifts).sum(-1)  # [n, tile, q, j]
    words = torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)
    scales = (block_scale.float() * 2.0**119).to(torch.bfloat16)
    return words.reshape(n, k // 8), scales


@gluon.jit
def store_output(acc, n0, global_scale_ptr, bias_ptr, y_ptr, M, N, HAS_BIAS: gl.constexpr, BN: gl.constexpr,
                 BM: gl.constexpr, mma: gl.constexpr, ATOMIC: gl.constexpr = False, FIRST_SLICE=True):
    """``y[m, n0 + r] = acc[r, m] * 2**7 * global_scale (+ bias)`` for m < M: the pairs' products
    are worth ``e2m1 * e4m3 * 2**-7``. ATOMIC (split K): added into fp32 ``y`` instead, the bias
    by the first slice only."""
    out_rows = n0 + gl.arange(0, BN, layout=gl.SliceLayout(1, mma))
    out_m = gl.arange(0, BM, layout=gl.SliceLayout(0, mma))
    acc = acc * (gl.load(global_scale_ptr) * 128.0)
    if HAS_BIAS:
        bias = gl.load(bias_ptr + out_rows).to(gl.float32)
        if ATOMIC:
            bias = bias * FIRST_SLICE.to(gl.float32)
        acc = acc + bias[:, None]
    offsets = out_m[None, :] * N + out_rows[:, None]
    if ATOMIC:
        gl.atomic_add(y_ptr + offsets, acc, mask=(out_m < M)[None, :])
    else:
        gl.store(y_ptr + offsets, acc.to(y_ptr.dtype.element_ty), mask=(out_m < M)[None, :])


@gluon.jit
def registers_gemm_kernel(words_ptr, scale_ptr, x_ptr, global_scale_ptr, bias_ptr, y_ptr, M, N, K, stride_xm,
                          HAS_BIAS: gl.constexpr, BN: gl.constexpr, BM: gl.constexpr, WARPS: gl.constexpr,
                          WORD_REGS: gl.constexpr, WARP_BASES: gl.constexpr):
    """One program: BN weight rows (16 a warp and repetition) against all of x's rows (BM >= M)."""
    BK: gl.constexpr = 128
    mma: gl.constexpr = gl.NVMMADistributedLayout(version=[2, 0], warps_per_cta=[WARPS, 1], instr_shape=[16, 8])
    a_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=mma, k_width=2)
    b_layout: gl.constexpr = gl.DotOperandLayout(operand_index=1, parent=mma, k_width=2)
    word_layout: gl.constexpr = gl.DistributedLinearLayout(
        reg_bases=WORD_REGS, lane_bases=[[0, 4], [0, 8], [1, 0], [2, 0], [4, 0]],
        warp_bases=WARP_BASES, block_bases=[], shape=[BN, BK // 8])
    n0 = gl.program_id(0) * BN
    rows = n0 + gl.arange(0, BN, layout=gl.SliceLayout(1, word_layout))
    cols = gl.arange(0, BK // 8, layout=gl.SliceLayout(0, word_layout))
    x_k = gl.arange(0, BK, layout=gl.SliceLayout(1, b_layout))
    x_m = gl.arange(0, BM, layout=gl.SliceLayout(0, b_layout))
    x_mask = (x_m < M)[None, :]
    word_ptrs = words_ptr + rows[:, None] * (K // 8) + cols[None, :]
    scale_ptrs = scale_ptr.to(gl.pointer_type(gl.uint32)) + rows[:, None] * (K // 32) + (cols % 4)[None, :]
    acc = gl.zeros([BN, BM], gl.float32, layout=mma)
    for k0 in range(0, K, BK):
        words = gl.load(word_ptrs + k0 // 8)
        two = gl.load(scale_ptrs + k0 // 32)  # blocks 2j (low half) and 2j + 1 (high half)
        even = (two & 0xFFFF) | (two << 16)
        odd = (two >> 16) | (two & 0xFFFF0000)
        pairs = gl.join(gl.join(scaled(pair_bits(words, 0), even, True), scaled(pair_bits(words, 2), odd, True)),
                        gl.join(scaled(pair_bits(words, 1), even, True), scaled(pair_bits(words, 3), odd, True)))
        x = gl.load(x_ptr + x_m[None, :] * stride_xm + k0 + x_k[:, None], mask=x_mask, other=0.0)
        acc = mma_v2(a_fragment(pairs, BN, a_layout), x, acc)
    store_output(acc, n0, global_scale_ptr, bias_ptr, y_ptr, M, N, HAS_BIAS, BN, BM, mma)


def layout_bases(bn: int, warps: int) -> tuple[tuple, tuple]:
    """(register bases, warp bases) of the words' layout: 4 words and rows g, g + 8 a thread; warps
    16 rows apart; further rows (BN > 16 * warps) as repetitions 16 * warps apart, as mma.sync's
    layout repeats. Tuples: a launch's constexprs must be hashable."""
    warp_bases = tuple((16 * 2**i, 0) for i in range(warps.bit_length() - 1))
    regs = [(0, 1), (0, 2), (8, 0)]
    rep = 16 * warps
    while rep < bn:
        regs.append((rep, 0))
        rep *= 2
    return tuple(regs), warp_bases


def check_shapes(caller: str, x: torch.Tensor, n: int, bn: int) -> None:
    """What both kernels' launchers need: M <= 16, N a multiple of ``bn``, K of 128, unit K stride."""
    m, k = x.shape
    if m > 16 or n % bn or k % BK or x.stride(1) != 1:
        raise ValueError(f"{caller}: needs M <= 16, N % {bn} == 0, K % {BK} == 0 and unit K stride")


def registers_gemm(x: torch.Tensor, words: torch.Tensor, scales: torch.Tensor, global_scale: torch.Tensor,
                   bias: torch.Tensor | None, bn: int = 64, warps: int = 4) -> torch.Tensor:
    """Launch on prepacked operands (``prepack``); x ``[M, K]`` bf16 with M <= 16, N a multiple of ``bn``."""
    m, k = x.shape
    n = words.shape[0]
    check_shapes("registers_gemm", x, n, bn)
    y = torch.empty(m, n, dtype=x.dtype, device=x.device)
    regs, warp_bases = layout_bases(bn, warps)
    registers_gemm_kernel[(n // bn,)](words.view(torch.uint32), scales, x, global_scale,
                                      bias if bias is not None else y, y, m, n, k, x.stride(0),
                                      HAS_BIAS=bias is not None, BN=bn, BM=16, WARPS=warps, WORD_REGS=regs,
                                      WARP_BASES=warp_bases, num_warps=warps)
    return y


CONFIGS = ((64, 4), (128, 4), (128, 8), (256, 8))
"""(BN, warps) compiled and timed: 16 and 32 weight rows a warp."""


def report_configs(label: str, kernel, pointers: dict, layouts, extra: dict | None = None) -> None:
    """Compile ``kernel`` for sm_90 in every config and print its size (``gluon_s17.compile_probe.report``).
    ``pointers``: the types of the weight's two pointers; ``layouts(bn, warps)``: its own constexprs;
    ``extra``: its runtime integers beyond M, N, K (before ``stride_xm``)."""
    from compile_probe import report

    print(f"Triton {triton.__version__}, sm_90, M <= 16 (x's rows as the MMA's columns), K tile {BK}, {label}")
    for bn, warps in CONFIGS:
        constexprs = {"HAS_BIAS": True, "BN": bn, "BM": 16, "WARPS": warps, **layouts(bn, warps)}
        signature = {**pointers, "x_ptr": "*bf16", "global_scale_ptr": "*fp32", "bias_ptr": "*bf16", "y_ptr": "*bf16",
                     "M": "i32", "N": "i32", "K": "i32", **(extra or {}), "stride_xm": "i32",
                     **dict.fromkeys(constexprs, "constexpr")}
        report(f"BN {bn}, {warps} warps", kernel, signature, constexprs, warps, bn * BK)


def main() -> None:
    def layouts(bn: int, warps: int) -> dict:
        regs, warp_bases = layout_bases(bn, warps)
        return {"WORD_REGS": regs, "WARP_BASES": warp_bases}

    report_configs("codes and bf16 scales prepacked", registers_gemm_kernel,
                   {"words_ptr": "*u32", "scale_ptr": "*bf16"}, layouts)


if __name__ == "__main__":
    main()
