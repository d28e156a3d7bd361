"""Properties of the NVFP4 codec: E2M1 table, packing, swizzling, and ModelOpt's quantizer."""

import math

import pytest
import torch
from hypothesis import given, strategies as st

from nvfp4_triton import format as fmt
from nvfp4_triton.weight import NVFP4Weight, dequantize, quantize

from . import modelopt_reference
from .strategies import canonical_nvfp4, weights

E4M3_NORMAL_MIN = 2.0**-6


def test_every_code_decodes_to_its_e2m1_value():
    codes = torch.arange(16, dtype=torch.uint8)
    got = fmt.e2m1_decode(codes)
    want = torch.tensor([modelopt_reference.e2m1_value(c) for c in range(16)])
    assert torch.equal(got, want)
    assert torch.equal(torch.signbit(got), codes >= 8)  # code 8 is -0


def test_encode_rounds_ties_to_even_and_saturates():
    # Midpoints between grid neighbours go to the neighbour with the even code.
    x = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.5, 1e9, -0.25, -5.0, -0.1, 0.0, -0.0])
    want = [0, 2, 2, 4, 4, 6, 6, 7, 7, 8, 14, 8, 0, 0]
    assert fmt.e2m1_encode(x).tolist() == want


def test_encode_inverts_decode():
    codes = torch.arange(16, dtype=torch.uint8)
    canonical = torch.where(codes == 8, 0, codes)  # -0 encodes as +0 (sign taken from x < 0)
    assert torch.equal(fmt.e2m1_encode(fmt.e2m1_decode(codes)), canonical.to(torch.uint8))


def test_pack_puts_even_element_in_low_nibble():
    codes = torch.tensor([[0x1, 0x2, 0xF, 0x8]], dtype=torch.uint8)
    assert fmt.pack_nibbles(codes).tolist() == [[0x21, 0x8F]]


@given(st.integers(1, 40), st.integers(1, 40), st.randoms(use_true_random=False))
def test_pack_unpack_round_trip(rows, half, rnd):
    g = torch.Generator().manual_seed(rnd.getrandbits(32))
    codes = torch.randint(0, 16, (rows, 2 * half), dtype=torch.uint8, generator=g)
    assert torch.equal(fmt.unpack_nibbles(fmt.pack_nibbles(codes)), codes)


@given(st.binary(min_size=1, max_size=512))
def test_swap_nibbles_is_an_involution_that_swaps_element_order(data):
    packed = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    swapped = fmt.swap_nibbles(packed)
    assert torch.equal(fmt.swap_nibbles(swapped), packed)
    codes = fmt.unpack_nibbles(packed)
    assert torch.equal(fmt.unpack_nibbles(swapped), codes.reshape(-1, 2).flip(-1).reshape(-1))


def _swizzle_offset(m, k, cols_padded):
    return (((m // 128) * (cols_padded // 4) + k // 4) * 32 + m % 32) * 16 + ((m // 32) % 4) * 4 + k % 4


@given(st.integers(1, 300), st.integers(1, 20), st.randoms(use_true_random=False))
def test_swizzle_matches_the_cublas_offset_formula_and_inverts(rows, cols, rnd):
    g = torch.Generator().manual_seed(rnd.getrandbits(32))
    raw = torch.randint(1, 127, (rows, cols), dtype=torch.uint8, generator=g)  # no NaN bit patterns
    scales = raw.view(torch.float8_e4m3fn)
    sw = fmt.swizzle_block_scales(scales)
    rp, cp = -(-rows // 128) * 128, -(-cols // 4) * 4
    assert sw.dtype == torch.float8_e4m3fn and tuple(sw.shape) == (rp, cp)
    flat = sw.view(torch.uint8).reshape(-1)
    expected = torch.zeros(rp * cp, dtype=torch.uint8)  # padding must read as zero
    m, k = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    expected[_swizzle_offset(m, k, cp).reshape(-1)] = raw.reshape(-1)
    assert torch.equal(flat, expected)
    back = fmt.unswizzle_block_scales(sw, rows, cols)
    assert torch.equal(back.view(torch.uint8), raw)
    assert torch.equal(fmt.unswizzle_block_scales(sw.reshape(-1), rows, cols).view(torch.uint8), raw)


def test_unswizzle_rejects_wrong_size():
    with pytest.raises(ValueError, match="128x4-padded"):
        fmt.unswizzle_block_scales(torch.zeros(100, dtype=torch.uint8), 5, 3)


@given(weights())
def test_quantize_matches_modelopt_transcription_bitwise(w):
    q = quantize(w)
    packed, scale, g = modelopt_reference.quantize(w)
    assert torch.equal(q.packed, packed)
    assert torch.equal(q.block_scale.view(torch.uint8), scale.view(torch.uint8))
    assert torch.equal(q.global_scale, g.float())


@given(weights())
def test_quantization_error_is_within_half_a_grid_step(w):
    q = quantize(w)
    n, k = w.shape
    eff = (q.block_scale.float() * q.global_scale).repeat_interleave(16, dim=1).double()
    x = w.double() / eff  # position on the E2M1 grid
    err = (x - dequantize(q, torch.float64) / eff).abs()
    mag = x.abs().clamp(max=6.0)
    half_step = torch.where(mag < 2, 0.25, torch.where(mag < 4, 0.5, 1.0))
    beyond = (x.abs() - 6.0).clamp(min=0)  # saturation adds the overshoot past 6
    assert bool((err <= half_step + beyond + 1e-6).all())
    # Overshoot only comes from rounding a block scale down; for a normal E4M3 scale that is at
    # most half a step, 1/16 relative (subnormal and clamped scales can round by more).
    normal = (q.block_scale.float() >= E4M3_NORMAL_MIN).repeat_interleave(16, dim=1)
    assert bool((x.abs()[normal] <= 6.0 * (1 + 1 / 16) + 1e-6).all())


@given(canonical_nvfp4())
def test_requantizing_a_dequantized_weight_reproduces_it(q):
    again = quantize(dequantize(q, torch.float32))
    codes = fmt.unpack_nibbles(q.packed)
    codes = torch.where(codes == 8, 0, codes)  # -0 dequantizes to -0.0, which requantizes as +0
    assert torch.equal(fmt.unpack_nibbles(again.packed), codes)
    assert torch.equal(again.block_scale.view(torch.uint8), q.block_scale.view(torch.uint8))
    # amax * g / 2688 is one float32 round trip away from g.
    assert math.isclose(again.global_scale.item(), q.global_scale.item(), rel_tol=2**-22)


@given(weights(max_rows=140))
def test_swizzled_weight_dequantizes_like_linear(w):
    lin = quantize(w)
    sw = quantize(w, scale_layout="swizzled")
    assert sw.scale_layout == "swizzled"
    assert torch.equal(sw.dequantize(), lin.dequantize())
    assert torch.equal(sw.with_scale_layout("linear").block_scale.view(torch.uint8),
                       lin.block_scale.view(torch.uint8))


def test_all_zero_weight_quantizes_to_zero_codes_unit_scales():
    q = quantize(torch.zeros(4, 32))
    assert q.global_scale.item() == 1.0
    assert bool((q.packed == 0).all()) and bool((q.block_scale.float() == 1).all())
    assert bool((q.dequantize() == 0).all())


@pytest.mark.parametrize(
    "weight, error, match",
    [
        (torch.zeros(4, 20), ValueError, "multiple of 16"),
        (torch.zeros(4, 4, 16), ValueError, "2-D"),
        (torch.zeros(4, 16, dtype=torch.int32), TypeError, "floating-point"),
        (torch.full((2, 16), float("nan")), ValueError, "NaN or Inf"),
    ],
)
def test_quantize_rejects_bad_weights(weight, error, match):
    with pytest.raises(error, match=match):
        quantize(weight)


def test_quantize_bf16_equals_quantize_of_its_float32_copy():
    w = torch.randn(8, 64).to(torch.bfloat16)
    a, b = quantize(w), quantize(w.float())
    assert torch.equal(a.packed, b.packed) and torch.equal(a.global_scale, b.global_scale)


def test_nvfp4_weight_reports_bytes_and_moves():
    q = quantize(torch.randn(32, 64))
    assert q.nbytes == 32 * 32 + 32 * 4 + 4
    assert q.to("cpu") is q
    meta = q.to("meta")
    assert meta.device.type == "meta" and meta.shape == (32, 64)


def _valid_parts():
    q = quantize(torch.randn(8, 32))
    return dict(packed=q.packed, block_scale=q.block_scale, global_scale=q.global_scale, shape=(8, 32))


@pytest.mark.parametrize(
    "change, error, match",
    [
        (dict(shape=(8, 24)), ValueError, "multiple of the NVFP4 block size"),
        (dict(shape=(0, 32)), ValueError, "shape must be"),
        (dict(packed=torch.zeros(8, 16, dtype=torch.int8)), TypeError, "packed must be torch.uint8"),
        (dict(packed=torch.zeros(8, 17, dtype=torch.uint8)), ValueError, r"packed must have shape \(8, 16\)"),
        (dict(packed=torch.zeros(16, 8, dtype=torch.uint8).t()), ValueError, "packed must be contiguous"),
        (dict(block_scale=torch.ones(8, 2)), TypeError, "block_scale must be torch.float8_e4m3fn"),
        (dict(block_scale=torch.ones(8, 3).to(torch.float8_e4m3fn)), ValueError, "block_scale must have shape"),
        (dict(global_scale=torch.ones(1)), ValueError, r"global_scale must have shape \(\)"),
        (dict(global_scale=torch.ones((), dtype=torch.float64)), TypeError, "global_scale must be torch.float32"),
        (dict(global_scale=torch.ones((), device="meta")), ValueError, "global_scale is on meta"),
        (dict(scale_layout="blocked"), ValueError, "scale_layout must be one of"),
        (dict(packed=[[0]]), TypeError, "packed must be a torch.Tensor"),
    ],
)
def test_nvfp4_weight_rejects_bad_fields(change, error, match):
    parts = _valid_parts() | change
    with pytest.raises(error, match=match):
        NVFP4Weight(**parts)
