"""Hypothesis strategies for NVFP4 tests: dense weights that stress the quantizer, and canonical NVFP4 weights."""

import torch
from hypothesis import strategies as st

from nvfp4_triton import format as fmt
from nvfp4_triton.weight import NVFP4Weight

# Every positive normal E4M3 value (exponent field 1..15, mantissa 0..7; 0x7F is NaN).
E4M3_NORMALS = torch.arange(0x08, 0x7F, dtype=torch.uint8).view(torch.float8_e4m3fn).float()
# The E2M1 grid and the midpoints between neighbours (the rounding ties).
GRID_AND_TIES = torch.tensor([0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2, 2.5, 3, 3.5, 4, 5, 6])


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@st.composite
def weights(draw, max_rows: int = 64, max_blocks: int = 8):
    """A dense ``[N, 16 * blocks]`` weight, fp32 or bf16, in one of several stressing styles.

    - ``normal``: Gaussian.
    - ``ranges``: each block scaled by a log-uniform factor over 16 decades (tiny, clamped and
      subnormal block scales), some blocks all zero.
    - ``ties``: exact grid values and rounding midpoints times E4M3 scales times a power-of-two
      global scale, so every element lands exactly on a grid point or a tie.
    """
    rows = draw(st.integers(1, max_rows))
    blocks = draw(st.integers(1, max_blocks))
    style = draw(st.sampled_from(["normal", "ranges", "ties"]))
    dtype = draw(st.sampled_from([torch.float32, torch.bfloat16]))
    g = _generator(draw(st.integers(0, 2**32 - 1)))
    if style == "normal":
        w = torch.randn(rows, blocks * 16, generator=g)
    elif style == "ranges":
        w = torch.randn(rows, blocks, 16, generator=g)
        factor = 10.0 ** (torch.rand(rows, blocks, 1, generator=g) * 16 - 12)
        w = w * factor * (torch.rand(rows, blocks, 1, generator=g) > 0.15)
        w = w.reshape(rows, blocks * 16)
    else:
        t = GRID_AND_TIES[torch.randint(0, len(GRID_AND_TIES), (rows, blocks, 16), generator=g)]
        t = t * torch.where(torch.rand(rows, blocks, 16, generator=g) < 0.5, -1.0, 1.0)
        t[:, :, 0] = 6.0  # every block's amax is 6 * its scale, so the scale is recovered exactly
        s = E4M3_NORMALS[torch.randint(0, len(E4M3_NORMALS), (rows, blocks, 1), generator=g)]
        s.view(-1)[0] = 448.0  # and the tensor's amax is 6 * 448 * global
        global_scale = 2.0 ** draw(st.integers(-20, 0))
        w = (t * s * global_scale).reshape(rows, blocks * 16)
    return w.to(dtype)


@st.composite
def canonical_nvfp4(draw, max_rows: int = 48, max_blocks: int = 6):
    """An NVFP4 weight that ModelOpt's quantizer could have produced, with normal block scales.

    Every non-zero block holds a +-6 code (its amax sets its scale), one block has scale 448
    (the tensor amax sets the global scale), all-zero blocks have scale 1, and the global scale
    has an arbitrary float32 mantissa.
    """
    rows = draw(st.integers(1, max_rows))
    blocks = draw(st.integers(1, max_blocks))
    g = _generator(draw(st.integers(0, 2**32 - 1)))
    codes = torch.randint(0, 16, (rows, blocks, 16), dtype=torch.uint8, generator=g)
    zero = torch.rand(rows, blocks, generator=g) < 0.1
    zero.view(-1)[0] = False
    where6 = torch.randint(0, 16, (rows, blocks, 1), generator=g)
    six = torch.where(torch.rand(rows, blocks, 1, generator=g) < 0.5, 7, 15).to(torch.uint8)
    codes.scatter_(-1, where6, six)
    codes[zero] = codes[zero] & 0x8  # +0 / -0 only
    scale = E4M3_NORMALS[torch.randint(0, len(E4M3_NORMALS), (rows, blocks), generator=g)]
    scale[zero] = 1.0
    scale.view(-1)[0] = 448.0
    global_scale = torch.tensor(draw(st.floats(2.0**-30, 2.0**10, width=32)), dtype=torch.float32)
    k = blocks * 16
    return NVFP4Weight(
        fmt.pack_nibbles(codes.reshape(rows, k)), scale.to(torch.float8_e4m3fn), global_scale, (rows, k)
    )
