"""Rounding fp32 to E4M3 with integer bit math, for kernels that must match torch bit for bit everywhere.

Triton's ``.to(tl.float8e4nv)`` rounds correctly on the GPU, but its CPU interpreter mis-rounds
values whose rounding carries into the exponent (0.49 became 0.25). Doing it on the bits gives
one result on both, so the interpreter tests check the same rounding as the GPU.
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
