"""Gluon JIT helpers shared by the Gluon kernels: bf16x2 arithmetic on E2M1 pairs and E4M3 block scales.

Both kernels decode a pair of E2M1 codes into one uint32 holding two bf16 patterns worth
``e2m1 * 2**-126`` and scale it by one packed FMA with the block scale made worth ``e4m3 * 2**119``,
so that the product, exact in bf16, is ``e2m1 * e4m3 * 2**-7``.
"""

from triton.experimental import gluon
from triton.experimental.gluon import language as gl


@gluon.jit
def scaled_pairs(pairs, scale2):
    """``pairs * scale2`` in bf16x2, one ``fma.rn.bf16x2`` (with -0.0 added, which keeps signed zeros);
    exact here: e2m1 * e4m3 fits in bf16's mantissa."""
    return gl.inline_asm_elementwise("{ .reg .b32 z; mov.b32 z, 0x80008000; fma.rn.bf16x2 $0, $1, $2, z; }",
                                     "=r,r,r", [pairs, scale2], dtype=gl.uint32, is_pure=True, pack=1)


@gluon.jit
def e4m3_pair_to_bf16(two):
    """16-bit pairs of E4M3 scales (uint32, low half used) -> bf16x2 patterns worth ``e4m3 * 2**119``, so
    that a product with a bf16 E2M1 pattern worth ``e2m1 * 2**-126`` is worth ``e2m1 * e4m3 * 2**-7``.

    ``cvt.rn.f16x2.e4m3x2`` is exact (every E4M3 value is a normal fp16); each fp16 pattern's exponent
    and mantissa then move to bf16's fields, and the exponent is rebiased by 127 - 15 + 119 = 231
    where the half is not zero. Block scales are non-negative; NaN is not handled."""
    return gl.inline_asm_elementwise(
        "{ .reg .b16 lo; .reg .b32 h, m, z; cvt.u16.u32 lo, $1; cvt.rn.f16x2.e4m3x2 h, lo; mov.b32 z, 0; "
        "set.ne.u32.f16x2 m, h, z; shr.b32 h, h, 3; and.b32 h, h, 0x0FFF0FFF; and.b32 m, m, 0x73807380; "
        "add.u32 $0, h, m; }", "=r,r", [two], dtype=gl.uint32, is_pure=True, pack=1)
