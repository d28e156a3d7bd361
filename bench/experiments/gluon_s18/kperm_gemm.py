"""Session 18: ``registers_gemm`` with K permuted inside each 128-wide tile, so that every operand
is read in its natural order (Gluon, mma.sync; for the GPU).

A GEMM's sum over K does not care in which order the MMA meets the K indices, as long as both
operands use the same one. Here the thread with ``lane % 4 == t`` gets K indices ``32t .. 32t + 31``
of every tile for its MMA k-slots (``2t, 2t + 1, 2t + 8, 2t + 9`` of each of 8 k16 steps: step
``2w + a``, half ``b``, element ``s`` is K ``32t + 8w + 4a + 2b + s``). So:

- the codes stay ModelOpt's words, one 16-byte load a row; the only re-layout is a nibble order
  inside each 32-bit word (``prepack_nibbles``: elements 0, 2, 4, 6, 1, 3, 5, 7), which makes
  nibbles i and i + 4 a pair of neighbouring elements for the library's pair decode;
- the block scales stay E4M3, untouched: a thread meets two blocks a row and tile (``2t``, ``2t +
  1``), one 16-bit load, one ``cvt.rn.f16x2.e4m3x2``, then a bf16 pattern worth ``e4m3 * 2**119``
  (the pair decode's ``2**-126`` then leaves ``2**-7``, as in ``registers_gemm``);
- x is read as it is, 32 neighbouring elements a row and tile, in 16-byte loads (``registers_gemm``
  loads 4 bytes at a time).

The codes' and x's tiles reach mma.sync's A and B layouts by reshape and permute with nothing
moved (``assert_trivial``). ``python kperm_gemm.py`` compiles it for sm_90 on the CPU machine;
``check_prepack.py`` replays its permutations; ``check_and_time.py`` runs it on the GPU. NOT RUN
on a GPU in session 18.
"""

import sys
from pathlib import Path

import torch
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import mma_v2

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gluon_s17"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from prepacked_probe import pair_bits, scaled  # noqa: E402
from registers_gemm import BK, check_shapes, layout_bases, report_configs, store_output  # noqa: E402

NIBBLE_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
"""Element of a word's 8 held at each nibble position: nibbles i and i + 4 hold elements 2i, 2i + 1."""


def prepack_nibbles(packed: torch.Tensor) -> torch.Tensor:
    """ModelOpt's codes (uint8 ``[N, K/2]``, element ``2i`` in the low nibble) -> int32 words ``[N, K/8]``
    with each word's nibbles in ``NIBBLE_ORDER``; words stay where they were."""
    n, half_k = packed.shape
    if (2 * half_k) % BK:
        raise ValueError(f"prepack_nibbles: K must be a multiple of {BK}, got {2 * half_k}")
    codes = torch.stack((packed & 0xF, packed >> 4), dim=-1).reshape(n, half_k // 4, 8).to(torch.int64)
    order = torch.tensor(NIBBLE_ORDER, device=packed.device)
    shifts = 4 * torch.arange(8, device=packed.device)
    words = (codes[:, :, order] << shifts).sum(-1)
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)


@gluon.jit
def _e4m3_pair_to_bf16(two):
    """16-bit pairs of E4M3 scales (uint32, low half used) -> bf16x2 patterns worth ``e4m3 * 2**119``.

    ``cvt.rn.f16x2.e4m3x2`` is exact (every E4M3 value is a normal fp16); the fp16 patterns'
    exponents are then moved to bf16's field and rebiased by 127 - 15 + 119 = 231 (the largest,
    448's, lands at 254). The scales are non-negative, so no sign is carried."""
    f16 = gl.inline_asm_elementwise("{ .reg .b16 lo; cvt.u16.u32 lo, $1; cvt.rn.f16x2.e4m3x2 $0, lo; }",
                                    "=r,r", [two], dtype=gl.uint32, is_pure=True, pack=1)
    return ((f16 >> 3) & 0x0FFF0FFF) + 0x73807380


@gluon.jit
def a_tile(words, two, first_block, BN: gl.constexpr, a_layout: gl.constexpr):
    """One 128-wide tile's words ``[BN, 4 (t), 4 (w)]`` and their scale pairs ``two`` (bf16x2 ``[BN, 4]``:
    blocks 2t, 2t + 1) -> the MMA's bf16 A operand ``[BN, 128]``: pair i = 2a + b of word w lands at
    k-slot ``32w + 16a + 8b + 2t + s`` with nothing moved (``assert_trivial``). With
    ``prepack_nibbles``'s order that pair is K ``32t + 8w + 4a + 2b + s``; with ModelOpt's own
    (``gluon_s19``'s natural form) K ``32t + 8w + 2a + b + 4s``. x must follow the same order."""
    scale2 = gl.where(first_block, ((two & 0xFFFF) | (two << 16))[:, :, None],
                      ((two >> 16) | (two & 0xFFFF0000))[:, :, None])
    pairs = gl.join(gl.join(scaled(pair_bits(words, 0), scale2, True), scaled(pair_bits(words, 1), scale2, True)),
                    gl.join(scaled(pair_bits(words, 2), scale2, True), scaled(pair_bits(words, 3), scale2, True)))
    low = (pairs & 0xFFFF).to(gl.uint16).to(gl.bfloat16, bitcast=True)
    high = (pairs >> 16).to(gl.uint16).to(gl.bfloat16, bitcast=True)
    w = gl.permute(gl.join(low, high), [0, 2, 4, 3, 1, 5])  # [n, w, a, b, t, s]
    return gl.convert_layout(gl.reshape(w, [BN, 128]), a_layout, assert_trivial=True)


@gluon.jit
def kperm_gemm_kernel(words_ptr, scale_ptr, x_ptr, global_scale_ptr, bias_ptr, y_ptr, M, N, K, k_per_split,
                      stride_xm, HAS_BIAS: gl.constexpr, SPLIT: gl.constexpr, BN: gl.constexpr, BM: gl.constexpr,
                      WARPS: gl.constexpr,
                      WORD_REGS: gl.constexpr, WARP_BASES: gl.constexpr, X_REGS: gl.constexpr,
                      X_WARP_BASES: gl.constexpr):
    """One program: BN weight rows (16 a warp and repetition) against all of x's rows (BM = 8 or 16 >= M),
    over K slice ``program_id(1)`` (``k_per_split`` wide) of SPLIT; split, it adds into fp32 ``y``."""
    BK: gl.constexpr = 128
    mma: gl.constexpr = gl.NVMMADistributedLayout(version=[2, 0], warps_per_cta=[WARPS, 1], instr_shape=[16, 8])
    a_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=mma, k_width=2)
    b_layout: gl.constexpr = gl.DotOperandLayout(operand_index=1, parent=mma, k_width=2)
    # words [BN, 4 (t), 4 (w)]: the thread (g, t) holds words 4t .. 4t + 3 of rows g and g + 8.
    word_layout: gl.constexpr = gl.DistributedLinearLayout(
        reg_bases=WORD_REGS, lane_bases=[[0, 1, 0], [0, 2, 0], [1, 0, 0], [2, 0, 0], [4, 0, 0]],
        warp_bases=WARP_BASES, block_bases=[], shape=[BN, 4, 4])
    scale_layout: gl.constexpr = gl.SliceLayout(2, word_layout)  # [BN, 4 (t)]
    # x [BM, 128] as it is: the thread (g, t) holds K 32t .. 32t + 31 of x's row g (and g + 8).
    x_layout: gl.constexpr = gl.DistributedLinearLayout(
        reg_bases=X_REGS,
        lane_bases=[[0, 32], [0, 64], [1, 0], [2, 0], [4, 0]],
        warp_bases=X_WARP_BASES, block_bases=[], shape=[BM, BK])
    n0 = gl.program_id(0) * BN
    rows = n0 + gl.arange(0, BN, layout=gl.SliceLayout(1, scale_layout))
    ts = gl.arange(0, 4, layout=gl.SliceLayout(0, scale_layout))
    ws = gl.arange(0, 4, layout=gl.SliceLayout(0, gl.SliceLayout(1, word_layout)))
    word_ptrs = words_ptr + (rows[:, None] * (K // 8) + 4 * ts[None, :])[:, :, None] + ws[None, None, :]
    scale_ptrs = scale_ptr.to(gl.pointer_type(gl.uint16)) + rows[:, None] * (K // 32) + ts[None, :]
    x_m = gl.arange(0, BM, layout=gl.SliceLayout(1, x_layout))
    x_k = gl.arange(0, BK, layout=gl.SliceLayout(0, x_layout))
    x_ptrs = x_ptr + x_m[:, None] * stride_xm + x_k[None, :]
    x_mask = (x_m < M)[:, None]
    first_block = (ws < 2)[None, None, :]
    acc = gl.zeros([BN, BM], gl.float32, layout=mma)
    k_start = gl.program_id(1) * k_per_split
    for k0 in range(k_start, gl.minimum(K, k_start + k_per_split), BK):
        words = gl.load(word_ptrs + k0 // 8)
        two = _e4m3_pair_to_bf16(gl.load(scale_ptrs + k0 // 32).to(gl.uint32))  # blocks 2t (low), 2t + 1
        w = a_tile(words, two, first_block, BN, a_layout)
        x = gl.load(x_ptrs + k0, mask=x_mask, other=0.0)
        x = gl.permute(gl.reshape(x, [BM, 4, 4, 2, 2, 2]), [2, 3, 4, 1, 5, 0])  # [w, a, b, t, s, m]
        x = gl.convert_layout(gl.reshape(x, [BK, BM]), b_layout, assert_trivial=True)
        acc = mma_v2(w, x, acc)
    store_output(acc, n0, global_scale_ptr, bias_ptr, y_ptr, M, N, HAS_BIAS, BN, BM, mma, SPLIT > 1,
                 gl.program_id(1) == 0)


def layout_constexprs(bn: int, warps: int, bm: int = 16) -> dict:
    """The kernel's layout bases for ``bn`` rows, ``warps`` warps and ``bm`` (8 or 16) columns of x:
    ``registers_gemm.layout_bases`` in 3-D (words ``[BN, t, w]``; a thread's 4 words as
    registers); x's 32 neighbouring K a thread, and its row g + 8 when there are 16; x's warps,
    which all hold the same x. With 8 rows of x the MMA has one n8 tile: half the MMAs and x."""
    regs, warp_bases = layout_bases(bn, warps)
    rows = tuple((r, 0, 0) for r, c in regs if c == 0)  # rows g + 8 and the repetitions
    x_regs = ((0, 1), (0, 2), (0, 4), (0, 8), (0, 16)) + (((8, 0),) if bm == 16 else ())
    return {"BM": bm, "WORD_REGS": ((0, 0, 1), (0, 0, 2), *rows),
            "WARP_BASES": tuple((r, 0, 0) for r, _ in warp_bases), "X_REGS": x_regs,
            "X_WARP_BASES": tuple((0, 0) for _ in warp_bases)}


def kperm_gemm(x: torch.Tensor, words: torch.Tensor, block_scale: torch.Tensor, global_scale: torch.Tensor,
               bias: torch.Tensor | None, bn: int = 64, warps: int = 4, split: int = 1) -> torch.Tensor:
    """Launch on ``prepack_nibbles`` words and the checkpoint's E4M3 scales; x ``[M, K]`` bf16, M <= 16.

    ``split`` > 1 splits K over that many programs a column strip, which add into a zeroed fp32
    output; it is then cast to x's dtype (two more small kernels, timed with it)."""
    m, k = x.shape
    n = words.shape[0]
    check_shapes("kperm_gemm", x, n, bn)
    tiles = k // BK
    k_per_split = -(-tiles // split) * BK
    y = torch.zeros(m, n, dtype=torch.float32, device=x.device) if split > 1 else \
        torch.empty(m, n, dtype=x.dtype, device=x.device)
    kperm_gemm_kernel[(n // bn, -(-k // k_per_split))](
        words.view(torch.uint32), block_scale.view(torch.uint8), x, global_scale, bias if bias is not None else x,
        y, m, n, k, k_per_split, x.stride(0), HAS_BIAS=bias is not None, SPLIT=split, BN=bn, WARPS=warps,
        **layout_constexprs(bn, warps, 8 if m <= 8 else 16), num_warps=warps)
    return y.to(x.dtype) if split > 1 else y


def main() -> None:
    for bm in (16, 8):
        report_configs(f"K permuted, {bm} columns of x", kperm_gemm_kernel, {"words_ptr": "*u32", "scale_ptr": "*u8"},
                       lambda bn, warps: {"SPLIT": 1, **layout_constexprs(bn, warps, bm)}, extra={"k_per_split": "i32"})


if __name__ == "__main__":
    main()
