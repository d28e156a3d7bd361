"""Rounding fp32 to E4M3 bit patterns, bit for bit as torch does, on the GPU and in the interpreter.

Triton's ``.to(tl.float8e4nv)`` rounds correctly on the GPU (one ``cvt`` per two values), but its
CPU interpreter mis-rounds values whose rounding carries into the exponent (0.49 became 0.25).
Integer bit math gives torch's result on both, at about ten times the instructions: on an H200
it made the FP8 dequantization ALU-bound. So kernels take a ``BIT_MATH`` switch that launchers
set only under the interpreter, where the tests check the bit math; GPU tests check the hardware
conversion against torch.
"""

import triton
import triton.language as tl


@triton.jit
def f32_to_e4m3_bits(v):
    """fp32 with ``|v| <= 448`` (not NaN) -> E4M3 bit pattern (uint8), rounded to nearest, ties to even.

    Normal range: keep 3 mantissa bits, adding half an E4M3 ulp (minus one, plus the kept lowest bit,
    for ties to even) before the shift, so a carry moves into the exponent as it should; then rebias
    the exponent from 127 to 7. Below 2**-6: a multiple of 2**-9, rounded by the fp32 add of 2**23.
    """
    a = tl.abs(v)
    abits = a.to(tl.uint32, bitcast=True)
    lsb = (abits >> 20) & 1
    normal = ((abits + 0x7FFFF + lsb) >> 20) - (120 << 3)
    subnormal = ((a * 512.0 + 8388608.0) - 8388608.0).to(tl.uint32)
    magnitude = tl.where(a < 0.015625, subnormal, normal)
    sign = (v.to(tl.uint32, bitcast=True) >> 24) & 0x80
    return (magnitude | sign).to(tl.uint8)


@triton.jit
def to_e4m3_bits(v, BIT_MATH: tl.constexpr):
    """fp32 with ``|v| <= 448`` (not NaN) -> E4M3 bit pattern (uint8), rounded to nearest even:
    by the hardware conversion, or with ``BIT_MATH`` by :func:`f32_to_e4m3_bits`."""
    if BIT_MATH:
        return f32_to_e4m3_bits(v)
    return v.to(tl.float8e4nv).to(tl.uint8, bitcast=True)
