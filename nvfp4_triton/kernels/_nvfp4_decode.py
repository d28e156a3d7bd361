"""Bit-level decoding of NVFP4 codes and E4M3 scales, shared by the kernels."""

import triton
import triton.language as tl


@triton.jit
def e2m1_to_f16(code):
    """E2M1 code (uint8, low 4 bits) -> exact fp16 value.

    The sign goes to bit 15 and the 3 magnitude bits to bits 11..9 (2 exponent bits, then
    the mantissa's top bit). Read as fp16 that is the E2M1 value times 2**-14 (its exponent
    bias is 15 instead of 1); subnormal code 1 lands on an fp16 subnormal and stays exact.
    """
    c = code.to(tl.uint16)
    bits = ((c & 0x8) << 12) | ((c & 0x7) << 9)
    return bits.to(tl.float16, bitcast=True) * 16384.0


@triton.jit
def e4m3_to_f16(raw):
    """E4M3 bits (uint8) -> exact fp16 value.

    Sign to bit 15, exponent and mantissa shifted up by 7: as fp16 that is the E4M3 value
    times 2**-8 (bias 15 instead of 7), subnormals included. E4M3's NaN (0x7F) has no fp16
    counterpart here; the format code rejects it before it reaches a kernel.
    """
    r = raw.to(tl.uint16)
    bits = ((r & 0x80) << 8) | ((r & 0x7F) << 7)
    return bits.to(tl.float16, bitcast=True) * 256.0


@triton.jit
def unpack_block(packed, raw_scale, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """Packed bytes [BLOCK_N, BLOCK_K/2] + scale bytes [BLOCK_N, BLOCK_K/16] -> exact fp16 ``e2m1 * e4m3`` [BLOCK_N, BLOCK_K].

    Element 2j of a row is the low nibble of byte j (ModelOpt's order).
    """
    codes = tl.interleave(packed & 0xF, packed >> 4)
    w = tl.reshape(e2m1_to_f16(codes), (BLOCK_N, BLOCK_K // 16, 16))
    w = w * e4m3_to_f16(raw_scale)[:, :, None]
    return tl.reshape(w, (BLOCK_N, BLOCK_K))


@triton.jit
def nibble_pair_e2m1_f32(word, i: tl.constexpr):
    """Nibbles ``i`` and ``i + 4`` (``i`` in 0-3, low first) of each uint32 in ``word`` -> their E2M1
    values times 2**-14, exact, as two fp32 tensors.

    :func:`e2m1_to_f16`'s bit pattern for both at once: nibble ``i + 4`` sits 16 bits above nibble
    ``i``, so one pair of shifts and masks builds two fp16 patterns in one 32-bit word, one per
    half; each half then widens to fp32. No multiply: callers fold 2**14 into the block scale.
    """
    if 4 * i >= 9:
        magnitude = (word >> (4 * i - 9)) & 0x0E000E00
    else:
        magnitude = (word << (9 - 4 * i)) & 0x0E000E00
    bits = ((word << (12 - 4 * i)) & 0x80008000) | magnitude
    low = (bits & 0xFFFF).to(tl.uint16).to(tl.float16, bitcast=True).to(tl.float32)
    high = (bits >> 16).to(tl.uint16).to(tl.float16, bitcast=True).to(tl.float32)
    return low, high
