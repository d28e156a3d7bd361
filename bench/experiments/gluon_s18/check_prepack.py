"""Session 18, CPU: ``registers_gemm.prepack`` against the kernel's own path from words to a weight tile.

The kernel decodes nibbles i and i + 4 of each word as one pair (low half nibble i), joins the
four pairs of a word as ``join(join(p0, p2), join(p1, p3))``, then reshapes and permutes the
result into the ``[BN, 128]`` tile that ``convert_layout(..., assert_trivial=True)`` hands to
mma.sync. This replays that path with torch's equivalents of join (stack on a new last axis),
reshape and permute, on codes instead of decoded values, and checks that it gives back every code
of the original weight in its place, and that the prepacked scales are ``e4m3 * 2**119`` exactly.
The layouts themselves are checked by the compiler (``assert_trivial``).

    python bench/experiments/gluon_s18/check_prepack.py
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from registers_gemm import BK, prepack  # noqa: E402


def kernel_tile_order(words: torch.Tensor, n: int, k: int) -> torch.Tensor:
    """The codes ``[n, k]`` as the kernel's join, reshape and permute arrange them from the words."""
    w = (words.to(torch.int64) & 0xFFFFFFFF).view(n, k // BK, 16)

    def pair(i: int) -> tuple[torch.Tensor, torch.Tensor]:  # (nibble i, nibble i + 4): the low and high halves
        return (w >> (4 * i)) & 0xF, (w >> (4 * i + 16)) & 0xF

    def join(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.stack((a, b), dim=-1)

    p = [pair(i) for i in range(4)]
    low = join(join(p[0][0], p[2][0]), join(p[1][0], p[3][0]))
    high = join(join(p[0][1], p[2][1]), join(p[1][1], p[3][1]))
    tile = join(low, high).reshape(n, k // BK, 4, 4, 2, 2, 2)  # [n, tile, q, j, t, h, s]
    return tile.permute(0, 1, 3, 4, 5, 2, 6).reshape(n, k)  # [n, tile, j, t, h, q, s]


def main() -> None:
    torch.manual_seed(0)
    n, k = 48, 3 * BK
    packed = torch.randint(0, 256, (n, k // 2), dtype=torch.uint8)
    scale = (torch.rand(n, k // 16) * 100 + 2.0**-9).to(torch.float8_e4m3fn)
    words, scales = prepack(packed, scale)
    codes = torch.stack((packed & 0xF, packed >> 4), dim=-1).reshape(n, k).to(torch.int64)
    codes_ok = torch.equal(kernel_tile_order(words, n, k), codes)
    scales_ok = torch.equal(scales.double(), scale.double() * 2.0**119)
    print(f"codes in place: {codes_ok}; scales exact: {scales_ok}")
    if not (codes_ok and scales_ok):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
