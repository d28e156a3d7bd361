"""Session 18, CPU: both kernels' prepacks against the kernels' own paths from words to a weight tile.

``registers_gemm`` decodes nibbles i and i + 4 of each word as one pair (low half nibble i),
joins the four pairs of a word as ``join(join(p0, p2), join(p1, p3))``, then reshapes and
permutes the result into the ``[BN, 128]`` tile that ``convert_layout(..., assert_trivial=True)``
hands to mma.sync. This replays that path with torch's equivalents of join (stack on a new last
axis), reshape and permute, on codes instead of decoded values, and checks that it gives back
every code of the original weight in its place, and that the prepacked scales are
``e4m3 * 2**119`` exactly. ``kperm_gemm`` hands mma.sync its K indices in another order: the
replay of its weight path and of its x path must give the same order, and the weight's codes in
it. The layouts themselves are checked by the compiler (``assert_trivial``).

    python bench/experiments/gluon_s18/check_prepack.py
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kperm_gemm import prepack_nibbles  # noqa: E402
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


def kperm_order(words: torch.Tensor, n: int, k: int) -> torch.Tensor:
    """``kperm_gemm``'s weight path: the codes ``[n, k]`` in the MMA's K-slot order."""
    w = (words.to(torch.int64) & 0xFFFFFFFF).view(n, k // BK, 4, 4)  # [n, tile, t, w]

    def join(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.stack((a, b), dim=-1)

    low = [(w >> (4 * i)) & 0xF for i in range(4)]
    high = [(w >> (4 * i + 16)) & 0xF for i in range(4)]
    pairs = join(join(join(low[0], low[1]), join(low[2], low[3])),
                 join(join(high[0], high[1]), join(high[2], high[3])))  # [n, tile, t, w, b, a, s]
    return pairs.permute(0, 1, 3, 5, 4, 2, 6).reshape(n, k)  # [n, tile, w, a, b, t, s]


def kperm_x_order(k: int) -> torch.Tensor:
    """``kperm_gemm``'s x path on x = its own K indices: the K index at each MMA K slot."""
    x = torch.arange(k).view(1, k // BK, 4, 4, 2, 2, 2)  # [m, tile, t, w, a, b, s]
    return x.permute(1, 3, 4, 5, 2, 6, 0).reshape(k)  # [tile, w, a, b, t, s, m]


def main() -> None:
    torch.manual_seed(0)
    n, k = 48, 3 * BK
    packed = torch.randint(0, 256, (n, k // 2), dtype=torch.uint8)
    scale = (torch.rand(n, k // 16) * 100 + 2.0**-9).to(torch.float8_e4m3fn)
    words, scales = prepack(packed, scale)
    codes = torch.stack((packed & 0xF, packed >> 4), dim=-1).reshape(n, k).to(torch.int64)
    codes_ok = torch.equal(kernel_tile_order(words, n, k), codes)
    scales_ok = torch.equal(scales.double(), scale.double() * 2.0**119)
    kperm_ok = torch.equal(kperm_order(prepack_nibbles(packed), n, k), codes[:, kperm_x_order(k)])
    print(f"registers_gemm: codes in place: {codes_ok}; scales exact: {scales_ok}. kperm_gemm: the weight's "
          f"codes in the K order x is read in: {kperm_ok}")
    if not (codes_ok and scales_ok and kperm_ok):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
