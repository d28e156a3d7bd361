"""The NVFP4 number format in plain torch: the one reference implementation of its math.

NVFP4 stores a weight ``W[N, K]`` as 4-bit E2M1 codes, one FP8-E4M3 block scale per 16
consecutive elements along K, and one FP32 global scale per tensor:

    W[n, k] = e2m1(code[n, k]) * float(block_scale[n, k // 16]) * global_scale

The quantizer reproduces NVIDIA ModelOpt's weight recipe (``NVFP4QTensor``) bit for bit:

    global_scale   = amax(|W|) / (6 * 448)
    block_scale    = e4m3(max(amax(|W_block|) / (6 * global_scale), 2**-9)), 1 for all-zero blocks
    code           = round_half_to_even_e2m1(W / (block_scale * global_scale)), saturating at +-6

Everything here runs on any device and is what the kernels, the loader and the tests are
checked against. Layouts (nibble order, swizzled block scales) are described in
``docs``-level detail next to each function.
"""

from __future__ import annotations

import torch

BLOCK_SIZE = 16
"""Elements along K that share one FP8 block scale."""

E2M1_MAX = 6.0
E4M3_MAX = 448.0
E4M3_MIN_SUBNORMAL = 2.0**-9

E2M1_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)
"""Value of each 4-bit code: bit 3 is the sign, bits 2..0 index the magnitude."""

SWIZZLE_ROWS = 128
SWIZZLE_COLS = 4


def e2m1_decode(codes: torch.Tensor) -> torch.Tensor:
    """Map uint8 codes (low 4 bits used) to their float32 values."""
    table = torch.tensor(E2M1_VALUES, dtype=torch.float32, device=codes.device)
    return table[(codes & 0xF).long()]


def e2m1_encode(x: torch.Tensor) -> torch.Tensor:
    """Round float values onto the E2M1 grid, ties to the even code, saturating at +-6.

    Returns uint8 codes. The sign bit is set for every ``x < 0``, so a small negative value
    that rounds to zero becomes code 8 (-0), as in ModelOpt. NaN input is not allowed.
    """
    mag = x.abs().float().clamp(max=E2M1_MAX)
    # The grid has step 0.5 on [0, 2], 1 on [2, 4] and 2 on [4, 6]; torch.round is
    # half-to-even, and on each segment an even rounded integer is an even code.
    code = torch.where(
        mag < 2.0,
        torch.round(mag * 2.0),
        torch.where(mag < 4.0, torch.round(mag) + 2.0, torch.round(mag * 0.5) + 4.0),
    ).to(torch.uint8)
    return code | ((x < 0).to(torch.uint8) << 3)


def pack_nibbles(codes: torch.Tensor) -> torch.Tensor:
    """Pack codes ``[..., K]`` into bytes ``[..., K/2]``: element 2j in the low nibble (ModelOpt order)."""
    if codes.shape[-1] % 2:
        raise ValueError(f"pack_nibbles: last dim of codes must be even, got shape {tuple(codes.shape)}")
    codes = codes.to(torch.uint8)
    return (codes[..., 1::2] << 4) | (codes[..., 0::2] & 0xF)


def unpack_nibbles(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`pack_nibbles`: bytes ``[..., K/2]`` to codes ``[..., K]``."""
    if packed.dtype != torch.uint8:
        raise TypeError(f"unpack_nibbles: packed must be uint8, got {packed.dtype}")
    return torch.stack((packed & 0xF, packed >> 4), dim=-1).flatten(-2)


def swap_nibbles(packed: torch.Tensor) -> torch.Tensor:
    """Exchange the two nibbles of every byte.

    Converts between ModelOpt's order and exporters that keep the even element in the high
    nibble (BFL / Comfy style). Applying it twice is the identity.
    """
    if packed.dtype != torch.uint8:
        raise TypeError(f"swap_nibbles: packed must be uint8, got {packed.dtype}")
    return (packed >> 4) | (packed << 4)


def global_scale_of(weight: torch.Tensor) -> torch.Tensor:
    """ModelOpt's per-tensor scale ``amax(|W|) / (6 * 448)`` as a float32 scalar tensor.

    An all-zero weight gets 1.0, so that no block scale or code is computed from 0/0.
    """
    amax = weight.abs().amax().float()
    scale = amax / (E2M1_MAX * E4M3_MAX)
    return torch.where(amax > 0, scale, torch.ones_like(scale))


def block_scales_of(weight: torch.Tensor, global_scale: torch.Tensor) -> torch.Tensor:
    """Per-16 E4M3 block scales ``[..., K/16]`` of ``weight[..., K]`` for a given global scale.

    A scale above 448 saturates to 448. That never happens for a weight whose global scale
    came from its own amax; it does for activations under a static ``input_scale``, where
    Blackwell's conversion saturates the same way. A NaN in a block gives that block a NaN scale.
    """
    k = weight.shape[-1]
    block_amax = weight.reshape(*weight.shape[:-1], k // BLOCK_SIZE, BLOCK_SIZE).abs().amax(dim=-1).float()
    scale = block_amax / (E2M1_MAX * global_scale.float())
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    return scale.clamp(min=E4M3_MIN_SUBNORMAL, max=E4M3_MAX).to(torch.float8_e4m3fn)


def quantize_activation(x: torch.Tensor, input_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """NVFP4-quantize activations ``x[..., K]`` as Blackwell's W4A4 GEMMs and ModelOpt's fake-quant do.

    ``input_scale`` (the checkpoint's calibrated, static per-tensor scale) is the global scale;
    the per-16 E4M3 block scales are computed from ``x`` by :func:`block_scales_of`; values are
    rounded half-to-even onto E2M1. Returns ``(codes uint8 [..., K], block_scale e4m3 [..., K/16])``.

    Non-finite input: +-Inf saturates (its block's scale to 448, its code to +-6). A NaN makes
    its block's scale NaN, so the whole block dequantizes to NaN; that block's codes are 0.
    """
    k = x.shape[-1]
    if k % BLOCK_SIZE:
        raise ValueError(f"quantize_activation: x.shape[-1] = {k} must be a multiple of {BLOCK_SIZE}")
    block_scale = block_scales_of(x, input_scale)
    denom = (block_scale.float() * input_scale.float()).unsqueeze(-1)
    scaled = x.float().reshape(*x.shape[:-1], k // BLOCK_SIZE, BLOCK_SIZE) / denom
    scaled = torch.nan_to_num(scaled, nan=0.0, posinf=E2M1_MAX, neginf=-E2M1_MAX)
    return e2m1_encode(scaled.reshape(x.shape)), block_scale


def fake_quantize_activation(x: torch.Tensor, input_scale: torch.Tensor) -> torch.Tensor:
    """``e2m1(code) * block_scale`` of :func:`quantize_activation`, in x's dtype (exact there).

    The global scale is left out: W4A4 GEMMs apply ``input_scale * weight_scale_2`` once, to the
    accumulator.
    """
    codes, block_scale = quantize_activation(x, input_scale)
    k = x.shape[-1]
    values = e2m1_decode(codes).reshape(*x.shape[:-1], k // BLOCK_SIZE, BLOCK_SIZE)
    return (values * block_scale.float().unsqueeze(-1)).reshape(x.shape).to(x.dtype)


def quantize_tensors(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Quantize ``weight[N, K]`` to ``(packed uint8 [N, K/2], block_scale e4m3 [N, K/16], global fp32 [])``.

    K must be a multiple of 16 and every element finite.
    """
    if weight.dim() != 2:
        raise ValueError(f"quantize: weight must be 2-D [out_features, in_features], got shape {tuple(weight.shape)}")
    if not weight.is_floating_point():
        raise TypeError(f"quantize: weight must be a floating-point tensor, got {weight.dtype}")
    n, k = weight.shape
    if k % BLOCK_SIZE:
        raise ValueError(
            f"quantize: in_features (weight.shape[1] = {k}) must be a multiple of {BLOCK_SIZE}, the NVFP4 block size"
        )
    if not bool(torch.isfinite(weight).all()):
        raise ValueError("quantize: weight has NaN or Inf elements; NVFP4 cannot represent them")
    global_scale = global_scale_of(weight)
    block_scale = block_scales_of(weight, global_scale)
    denom = (block_scale.float() * global_scale).unsqueeze(-1)
    scaled = weight.reshape(n, k // BLOCK_SIZE, BLOCK_SIZE) / denom
    codes = e2m1_encode(scaled.reshape(n, k))
    return pack_nibbles(codes), block_scale, global_scale


def dequantize_tensors(
    packed: torch.Tensor,
    block_scale: torch.Tensor,
    global_scale: torch.Tensor,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Dequantize linear-layout tensors to ``W[N, K]`` in ``dtype``.

    The product is formed in float32 (float64 if asked for), where ``e2m1 * e4m3`` is exact.
    """
    work = torch.float64 if dtype == torch.float64 else torch.float32
    n = packed.shape[0]
    values = e2m1_decode(unpack_nibbles(packed)).to(work).reshape(n, -1, BLOCK_SIZE)
    w = values * block_scale.to(work).unsqueeze(-1) * global_scale.to(work)
    return w.reshape(n, -1).to(dtype)


def swizzled_scale_shape(rows: int, cols: int) -> tuple[int, int]:
    """Shape ``(R128, C4)`` of the swizzled layout of ``rows x cols`` block scales."""
    return -(-rows // SWIZZLE_ROWS) * SWIZZLE_ROWS, -(-cols // SWIZZLE_COLS) * SWIZZLE_COLS


def swizzle_block_scales(scales: torch.Tensor) -> torch.Tensor:
    """Linear ``[R, C]`` block scales to the 128x4 swizzled layout of cuBLAS / CUTLASS.

    The result is ``[R128, C4]`` (rows padded to a multiple of 128, columns to a multiple of 4,
    padding zero) whose flat storage holds scale ``(m, k)`` at offset
    ``(((m // 128) * (C4 // 4) + k // 4) * 32 + m % 32) * 16 + ((m // 32) % 4) * 4 + k % 4``.
    """
    if scales.dim() != 2:
        raise ValueError(f"swizzle_block_scales: scales must be 2-D, got shape {tuple(scales.shape)}")
    rows, cols = scales.shape
    rp, cp = swizzled_scale_shape(rows, cols)
    raw = scales.view(torch.uint8) if scales.element_size() == 1 else scales
    padded = raw.new_zeros(rp, cp)
    padded[:rows, :cols] = raw
    # Row m = 128*mb + 32*m4 + m32, column k = 4*kb + k4; storage order is (mb, kb, m32, m4, k4).
    tiles = padded.reshape(rp // 128, 4, 32, cp // 4, 4).permute(0, 3, 2, 1, 4)
    out = tiles.contiguous().reshape(rp, cp)
    return out.view(scales.dtype) if scales.element_size() == 1 else out


def unswizzle_block_scales(swizzled: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Inverse of :func:`swizzle_block_scales`: back to linear ``[rows, cols]``, padding dropped.

    ``swizzled`` may be 2-D ``[R128, C4]`` or flat with ``R128 * C4`` elements.
    """
    rp, cp = swizzled_scale_shape(rows, cols)
    if swizzled.numel() != rp * cp:
        raise ValueError(
            f"unswizzle_block_scales: expected {rp * cp} elements ({rp} x {cp}, the 128x4-padded "
            f"layout of {rows} x {cols} scales), got shape {tuple(swizzled.shape)}"
        )
    raw = swizzled.view(torch.uint8) if swizzled.element_size() == 1 else swizzled
    tiles = raw.reshape(rp // 128, cp // 4, 32, 4, 4).permute(0, 3, 2, 1, 4)
    out = tiles.contiguous().reshape(rp, cp)[:rows, :cols].contiguous()
    return out.view(swizzled.dtype) if swizzled.element_size() == 1 else out
