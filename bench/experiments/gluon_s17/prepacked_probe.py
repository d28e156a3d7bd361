"""Session 17, CPU only: ``compile_probe.py`` with the codes in a prepacked order and the library's
pair decode, to count what a registers-only tensor-core kernel would cost.

Assumed (no prepack function is written): per row and 128-wide K tile, 16 int32 words, word
``4q + j`` for the thread with ``lane % 4 == q``, holding blocks ``2j`` and ``2j + 1``. In each
word, nibbles i and i + 4 are one A-register pair of mma.m16n8k16: nibbles 0/4 elements 2q and
2q + 1 of block 2j, 1/5 elements 2q + 8 and 2q + 9 of it, 2/6 and 3/7 the same of block 2j + 1.
Each pair is decoded as ``_nvfp4_decode.nibble_pair_bits`` does (bf16 patterns worth e2m1 *
2**-126) and scaled by one ``fma.rn.bf16x2`` with its block scale times 2**119 (e4m3 decoded via
fp16 and fp32 here, a scale per block and row); the pairs are then arranged, by join, reshape and
permute, into exactly mma.sync's A layout (``assert_trivial``). Prints the compiled loop's size with
and without the scales.

NOT RUN on a GPU: correctness unchecked.

    python bench/experiments/gluon_s17/prepacked_probe.py
"""

import sys
from pathlib import Path

import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import mma_v2

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compile_probe import report, warp_bases  # noqa: E402

BK = gl.constexpr(128)


@gluon.jit
def pair_bits(word, i: gl.constexpr):
    """Nibbles i and i + 4 of each word -> a bf16x2 pattern worth e2m1 * 2**-126 each (as the library's)."""
    MAGNITUDE: gl.constexpr = (0x7 << 6) * 0x10001
    if 4 * i >= 6:
        magnitude = (word >> (4 * i - 6)) & MAGNITUDE
    else:
        magnitude = (word << (6 - 4 * i)) & MAGNITUDE
    return ((word << (12 - 4 * i)) & 0x80008000) | magnitude


@gluon.jit
def scale_pair(raw):
    """E4M3 scale bytes -> bf16x2 of ``e4m3 * 2**119`` (the pair decode's 2**-126 then leaves 2**-7)."""
    r = raw.to(gl.uint16)
    f16 = (((r & 0x80) << 8) | ((r & 0x7F) << 7)).to(gl.float16, bitcast=True)  # e4m3 * 2**-8
    b = (f16.to(gl.float32) * 2.0 ** 127).to(gl.bfloat16).to(gl.uint16, bitcast=True).to(gl.uint32)
    return b | (b << 16)


@gluon.jit
def scaled(pairs, scale2, SCALED: gl.constexpr):
    if SCALED:
        pairs = gl.inline_asm_elementwise("{ .reg .b32 z; mov.b32 z, 0x80008000; fma.rn.bf16x2 $0, $1, $2, z; }",
                                          "=r,r,r", [pairs, scale2], dtype=gl.uint32, is_pure=True, pack=1)
    return pairs


@gluon.jit
def a_fragment(pairs, BN: gl.constexpr, a_layout: gl.constexpr):
    """``pairs [BN, 16 words (4q + j), 2 (t), 2 (h)]`` of bf16x2, elements ``32j + 16t + 8h + 2q``
    and the next of each row's 128-wide tile, as the ``[BN, 128]`` bf16 A operand: nothing moves
    (``assert_trivial``)."""
    low = (pairs & 0xFFFF).to(gl.uint16).to(gl.bfloat16, bitcast=True)
    high = (pairs >> 16).to(gl.uint16).to(gl.bfloat16, bitcast=True)
    w = gl.reshape(gl.join(low, high), [BN, 4, 4, 2, 2, 2])  # [n, q, j, t, h, s]
    w = gl.permute(w, [0, 2, 3, 4, 1, 5])  # [n, j, t, h, q, s]: column 32j + 16t + 8h + 2q + s
    return gl.convert_layout(gl.reshape(w, [BN, 128]), a_layout, assert_trivial=True)


@gluon.jit
def small_m_gemm(words_ptr, scale_ptr, x_ptr, y_ptr, N, K, BN: gl.constexpr, BM: gl.constexpr,
                 WARPS: gl.constexpr, WARP_BASES: gl.constexpr, SCALED: gl.constexpr):
    mma: gl.constexpr = gl.NVMMADistributedLayout(version=[2, 0], warps_per_cta=[WARPS, 1], instr_shape=[16, 8])
    a_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=mma, k_width=2)
    b_layout: gl.constexpr = gl.DotOperandLayout(operand_index=1, parent=mma, k_width=2)
    # words [BN, 16] a trip: the thread (g, q) holds words 4q .. 4q + 3 of rows g and g + 8.
    word_layout: gl.constexpr = gl.DistributedLinearLayout(
        reg_bases=[[0, 1], [0, 2], [8, 0]], lane_bases=[[0, 4], [0, 8], [1, 0], [2, 0], [4, 0]],
        warp_bases=WARP_BASES, block_bases=[], shape=[BN, BK // 8])
    n0 = gl.program_id(0) * BN
    rows = n0 + gl.arange(0, BN, layout=gl.SliceLayout(1, word_layout))
    cols = gl.arange(0, BK // 8, layout=gl.SliceLayout(0, word_layout))
    x_k = gl.arange(0, BK, layout=gl.SliceLayout(1, b_layout))
    x_m = gl.arange(0, BM, layout=gl.SliceLayout(0, b_layout))
    acc = gl.zeros([BN, BM], gl.float32, layout=mma)
    for k0 in range(0, K, BK):
        words = gl.load(words_ptr + rows[:, None] * (K // 8) + k0 // 8 + cols[None, :])
        scales = scale_ptr + rows[:, None] * (K // 16) + k0 // 16 + 2 * (cols[None, :] % 4)
        even, odd = scale_pair(gl.load(scales)), scale_pair(gl.load(scales + 1))  # blocks 2j and 2j + 1
        pairs = gl.join(gl.join(scaled(pair_bits(words, 0), even, SCALED), scaled(pair_bits(words, 2), odd, SCALED)),
                        gl.join(scaled(pair_bits(words, 1), even, SCALED), scaled(pair_bits(words, 3), odd, SCALED)))
        x = gl.load(x_ptr + x_m[None, :] * K + k0 + x_k[:, None])
        acc = mma_v2(a_fragment(pairs, BN, a_layout), x, acc)
    out_rows = n0 + gl.arange(0, BN, layout=gl.SliceLayout(1, mma))
    out_m = gl.arange(0, BM, layout=gl.SliceLayout(0, mma))
    gl.store(y_ptr + out_m[None, :] * N + out_rows[:, None], acc)


def main() -> None:
    print(f"Triton {triton.__version__}, sm_90, M = 16 (x's rows as the MMA's columns), K tile {BK.value}")
    bn, warps = 64, 4
    for scaled_pairs in (False, True):
        report(f"BN {bn}, {warps} warps, scales {'applied' if scaled_pairs else 'left out'}", small_m_gemm,
               {"words_ptr": "*u32", "scale_ptr": "*u8", "x_ptr": "*bf16", "y_ptr": "*fp32", "N": "i32", "K": "i32",
                "BN": "constexpr", "BM": "constexpr", "WARPS": "constexpr", "WARP_BASES": "constexpr",
                "SCALED": "constexpr"},
               {"BN": bn, "BM": 16, "WARPS": warps, "WARP_BASES": warp_bases(warps), "SCALED": scaled_pairs},
               warps, bn * BK.value)

if __name__ == "__main__":
    main()
