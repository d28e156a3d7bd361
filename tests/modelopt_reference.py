"""An independent transcription of ModelOpt's NVFP4 weight quantizer, for bitwise comparison.

Written from ModelOpt's published formulas (NVFP4QTensor: amax-based global scale, per-16
E4M3 block scales, bucketing against the E2M1 midpoints with ties sent to the even code), in
a different style from nvfp4_triton.format on purpose: a lookup by midpoint buckets instead
of rounding arithmetic. Only the tests use it.
"""

import torch

MIDPOINTS = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0])
# Midpoints whose lower neighbour has an odd code: a tie there belongs to the upper (even) code.
ODD_LOWER_MIDPOINTS = torch.tensor([0.75, 1.75, 3.5])


def quantize(w: torch.Tensor):
    n, k = w.shape
    amax = w.abs().max().float()
    g = amax / 2688.0 if amax > 0 else torch.tensor(1.0)
    blocks = w.float().reshape(n, k // 16, 16)
    s = blocks.abs().max(dim=-1).values / (6.0 * g)
    s[s == 0] = 1.0
    s = torch.clamp(s, min=2.0**-9).to(torch.float8_e4m3fn)
    scaled = (blocks / (s.float() * g)[..., None]).reshape(n, k)
    mag = scaled.abs()
    idx = torch.searchsorted(MIDPOINTS, mag.contiguous(), right=False).to(torch.uint8)
    idx = idx + (mag[..., None] == ODD_LOWER_MIDPOINTS).any(-1).to(torch.uint8)
    codes = idx | ((scaled < 0).to(torch.uint8) << 3)
    packed = (codes[:, 1::2] << 4) | codes[:, 0::2]
    return packed, s, g.reshape(())


def e2m1_value(code: int) -> float:
    """Value of a 4-bit code from the E2M1 definition: 1 sign, 2 exponent (bias 1), 1 mantissa bit."""
    sign = -1.0 if code & 8 else 1.0
    exp, man = (code >> 1) & 3, code & 1
    mag = 0.5 * man if exp == 0 else 2.0 ** (exp - 1) * (1 + 0.5 * man)
    return sign * mag
