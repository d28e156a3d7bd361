"""Tile configurations for the W4A16 GEMM and the deterministic default for a shape.

The default is a plain function of (M, N, K) so that tests and benchmarks can reproduce it
and override it; autotuning, when it picks something else, chooses among ``TileConfig``s too.
"""

from __future__ import annotations

from dataclasses import dataclass


MIN_BLOCK_K = 32
"""Smallest K tile. With BLOCK_K = 16 (one scale per row of the tile) Triton 3.6 produced wrong
results on an H200 for every warp and stage count tried, while the interpreter was right."""


@dataclass(frozen=True)
class TileConfig:
    """Launch parameters: tile sizes (elements), L2 band height (tiles), warps, pipeline stages.

    Tiles are powers of two; ``block_m``/``block_n`` >= 16 (the smallest ``tl.dot``) and
    ``block_k`` >= 32 (see ``MIN_BLOCK_K``). K need not be a multiple of ``block_k``.
    """

    block_m: int
    block_n: int
    block_k: int
    group_m: int = 8
    num_warps: int = 4
    num_stages: int = 3

    def __post_init__(self) -> None:
        for name, least in (("block_m", 16), ("block_n", 16), ("block_k", MIN_BLOCK_K)):
            value = getattr(self, name)
            if value < least or value & (value - 1):
                raise ValueError(f"TileConfig: {name} must be a power of two >= {least}, got {value}")
        if self.group_m < 1 or self.num_warps < 1 or self.num_stages < 1:
            raise ValueError(f"TileConfig: group_m, num_warps and num_stages must be >= 1, got {self}")


def default_config(m: int, n: int, k: int) -> TileConfig:
    """A sound config for any shape: the M tile follows M (16 to 128), wider tiles for big problems."""
    block_m = 16
    while block_m < 128 and block_m < m:
        block_m *= 2
    block_n = 128 if n >= 128 and m >= 64 else 64
    block_k = 128 if k >= 128 else 64
    num_warps = 8 if block_m * block_n >= 128 * 128 else 4
    return TileConfig(block_m, block_n, block_k, group_m=8, num_warps=num_warps, num_stages=3)
