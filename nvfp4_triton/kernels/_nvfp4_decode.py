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
def nibble_pair_bits(word, i: tl.constexpr, MAG_LSB: tl.constexpr):
    """Nibbles ``i`` and ``i + 4`` (``i`` in 0-3, low first) of each uint32 in ``word`` -> a uint32
    holding two 16-bit float patterns, nibble ``i`` in the low half.

    Each half gets the E2M1 sign at its bit 15 and the 3 magnitude bits at ``MAG_LSB`` up:
    :func:`e2m1_to_f16`'s pattern for both at once, since nibble ``i + 4`` sits 16 bits above
    nibble ``i``. ``MAG_LSB`` 9 makes fp16 patterns worth ``e2m1 * 2**-14``; 6 makes bf16
    patterns worth ``e2m1 * 2**-126``. Both are exact (code 1 lands on a subnormal).
    """
    MAGNITUDE: tl.constexpr = (0x7 << MAG_LSB) * 0x10001
    if MAG_LSB + 3 < 12:
        # The pair's nibbles alone, then one multiply writes two copies of them: one puts the signs
        # in place (bits 12-15, 28-31), the other the magnitudes (from MAG_LSB up). The copies do
        # not overlap, so the sum carries nothing, and a mask keeps the wanted bits.
        if i >= 2:
            word = word >> 8  # nibbles 2, 3 (and 6, 7) where 0, 1 (4, 5) were
        j: tl.constexpr = i % 2
        alone = word & (0x000F000F << (4 * j))
        return (alone * ((1 << (12 - 4 * j)) + (1 << (MAG_LSB - 4 * j)))) & (MAGNITUDE | 0x80008000)
    if 4 * i >= MAG_LSB:
        magnitude = (word >> (4 * i - MAG_LSB)) & MAGNITUDE
    else:
        magnitude = (word << (MAG_LSB - 4 * i)) & MAGNITUDE
    return ((word << (12 - 4 * i)) & 0x80008000) | magnitude


@triton.jit
def _halves(bits, DT: tl.constexpr):
    """The two 16-bit float patterns in each uint32 of ``bits``, as two ``DT`` tensors (low, high)."""
    low = (bits & 0xFFFF).to(tl.uint16).to(DT, bitcast=True)
    high = (bits >> 16).to(tl.uint16).to(DT, bitcast=True)
    return low, high


@triton.jit
def nibble_pair_e2m1_f32(word, i: tl.constexpr):
    """Nibbles ``i`` and ``i + 4`` of each uint32 in ``word`` -> their E2M1 values times 2**-14,
    exact, as two fp32 tensors: :func:`nibble_pair_bits`' fp16 halves, widened. No multiply:
    callers fold 2**14 into the block scale."""
    low, high = _halves(nibble_pair_bits(word, i, 9), tl.float16)
    return low.to(tl.float32), high.to(tl.float32)


PAIRED_TILE_EXPONENT = tl.constexpr(-7)
""":func:`paired_tile`'s values are the weight's ``e2m1 * e4m3`` times ``2**PAIRED_TILE_EXPONENT``."""


@triton.jit
def paired_tile(words, raw_scale, DT: tl.constexpr, PACKED_MUL: tl.constexpr, PAIR_ORDER: tl.constexpr,
                BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """Codes as one int64 per scale block ``[BLOCK_N, BLOCK_K/16]`` and their E4M3 scale bytes ->
    ``e2m1 * e4m3 * 2**-7`` in ``DT`` (bf16 or fp16), exact, ``[BLOCK_N, BLOCK_K]`` in *pair order*
    with ``PAIR_ORDER``, else in K order.

    Pair order: element ``16b + 8h + 4s + i`` of the tile's K (block ``b``, its half ``h``, nibble
    ``i`` of that half, and ``s`` = 1 for nibble ``i + 4``) sits at ``h * BLOCK_K/2 + 8b + 2i + s``.
    Each uint32 of :func:`nibble_pair_bits` is then two neighbouring elements, so the decoded
    pairs are stored as they are, with no re-pairing; and a thread's block becomes two runs of 8
    elements half a tile apart, so that neighbouring threads write neighbouring 16-byte chunks
    of shared memory (3-8% faster on an H200 than one run of 16: bench/NOTES.md, v24). The
    other dot operand must be permuted the same way (:func:`pair_order`). K order costs the
    compiler a re-pairing of the halves but spares that permutation, which is the better deal
    where the other operand's tile is the larger one (bench/NOTES.md, v26).

    With ``PACKED_MUL`` the block scale is applied to both elements of a pair by one packed
    multiply (inline PTX: ``mul.rn.f16x2``, or ``fma.rn.bf16x2`` with -0, as Ampere has no
    ``mul.bf16x2``); the 2**-7 keeps every scale and product inside ``DT``'s range. Without it
    (Triton's interpreter, which has no inline assembly and multiplies bf16 wrongly), the pairs
    are decoded as fp16 and scaled in fp32.
    """
    BF16: tl.constexpr = DT == tl.bfloat16
    # Decoded: e2m1 * 2**-126 (bf16) or 2**-14 (fp16); the scale's factor makes the product 2**-7.
    DECODED_EXPONENT: tl.constexpr = -126 if BF16 and PACKED_MUL else -14
    scale = e4m3_to_f16(raw_scale).to(tl.float32)[:, :, None]
    scale = scale * 2.0 ** (PAIRED_TILE_EXPONENT - DECODED_EXPONENT)
    low = (words & 0xFFFFFFFF).to(tl.uint32)  # elements 0-7 of each block
    high = (words >> 32).to(tl.uint32)  # elements 8-15
    MAG_LSB: tl.constexpr = 6 if BF16 and PACKED_MUL else 9
    # Pair words j = 4h + i (nibbles i and i + 4 of half h), along a new last axis in that order.
    by_i0 = tl.join(nibble_pair_bits(low, 0, MAG_LSB), nibble_pair_bits(high, 0, MAG_LSB))
    by_i1 = tl.join(nibble_pair_bits(low, 1, MAG_LSB), nibble_pair_bits(high, 1, MAG_LSB))
    by_i2 = tl.join(nibble_pair_bits(low, 2, MAG_LSB), nibble_pair_bits(high, 2, MAG_LSB))
    by_i3 = tl.join(nibble_pair_bits(low, 3, MAG_LSB), nibble_pair_bits(high, 3, MAG_LSB))
    pairs = tl.reshape(tl.join(tl.join(by_i0, by_i2), tl.join(by_i1, by_i3)), (BLOCK_N, BLOCK_K // 16, 8))
    if PACKED_MUL:
        scale_bits = scale.to(DT).to(tl.uint16, bitcast=True).to(tl.uint32)
        # bf16x2 has mul only from sm_90 on, fma from sm_80: a * b + (-0) is the exact product.
        op: tl.constexpr = ("{ .reg .b32 z; mov.b32 z, 0x80008000; fma.rn.bf16x2 $0, $1, $2, z; }" if BF16
                            else "mul.rn.f16x2 $0, $1, $2;")
        pairs = tl.inline_asm_elementwise(op, "=r,r,r", [pairs, scale_bits | (scale_bits << 16)], dtype=tl.uint32,
                                          is_pure=True, pack=1)
        first, second = _halves(pairs, DT)
    else:
        first, second = _halves(pairs, tl.float16)
        first, second = (first.to(tl.float32) * scale).to(DT), (second.to(tl.float32) * scale).to(DT)
    by_half = tl.reshape(tl.join(first, second), (BLOCK_N, BLOCK_K // 16, 2, 4, 2))  # [n, block, h, i, s]
    if PAIR_ORDER:
        return tl.reshape(tl.permute(by_half, (0, 2, 1, 3, 4)), (BLOCK_N, BLOCK_K))
    return tl.reshape(tl.permute(by_half, (0, 1, 2, 4, 3)), (BLOCK_N, BLOCK_K))


@triton.jit
def pair_order(x, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr):
    """x's tile ``[BLOCK_M, BLOCK_K]`` in :func:`paired_tile`'s pair order along K."""
    by_block = tl.reshape(x, (BLOCK_M, BLOCK_K // 16, 2, 2, 4))  # element 16b + 8h + 4s + i at [m, b, h, s, i]
    return tl.reshape(tl.permute(by_block, (0, 2, 1, 4, 3)), (BLOCK_M, BLOCK_K))
