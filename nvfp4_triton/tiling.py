"""Launch configurations of the GEMM strategies, and the deterministic defaults for a shape.

Strategies, chosen per shape by autotuning:
- ``TileConfig``: the fused kernel (dequantize in the K loop, then ``tl.dot``);
- ``GemvConfig`` (a few activation rows): the GEMV kernel, dequantize and multiply on CUDA cores;
- ``RingConfig`` (up to 22 activation rows): the ring kernel (Gluon, mma.sync, a cp.async ring in
  shared memory; ``ring``);
- ``WgmmaConfig`` (from 46 activation rows, Hopper): the wgmma kernel (Gluon, warp-specialized: TMA
  loads, two warpgroups decoding the weight into shared memory, two issuing the MMAs; ``wgmma``);
- ``TwoPassConfig``: dequantize the whole weight into a scratch buffer, then cuBLAS;
- ``Fp8Config`` (``activation="fp8"`` only): dequantize to E4M3 into the scratch buffer, quantize
  the activations per token, then cuBLAS's FP8 GEMM (``torch._scaled_mm``).
The default is a plain function of (M, N, K) so that tests and benchmarks can reproduce it
and override it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


MIN_BLOCK_K = 32
"""Smallest K tile. With BLOCK_K = 16 (one scale per row of the tile) Triton 3.6 produced wrong
results on an H200 for every warp and stage count tried, while the interpreter was right."""


def _check_tiles(owner: object, minimums: dict[str, int]) -> None:
    """Tile sizes: powers of two at least their minimum; num_warps (every config has it) >= 1."""
    for name, least in minimums.items():
        value = getattr(owner, name)
        if value < least or value & (value - 1):
            raise ValueError(f"{type(owner).__name__}: {name} must be a power of two >= {least}, got {value}")
    if owner.num_warps < 1:
        raise ValueError(f"{type(owner).__name__}: num_warps must be >= 1, got {owner.num_warps}")


_DEQUANT_TILE = {"block_n": 1, "block_k": MIN_BLOCK_K}  # TwoPassConfig and Fp8Config: the dequantize kernel's tile


@dataclass(frozen=True)
class TileConfig:
    """Launch parameters: tile sizes (elements), L2 band height (tiles), warps, pipeline stages,
    and the number of slices K is split into across programs (the last program of each output
    tile sums them).

    Tiles are powers of two; ``block_m``/``block_n`` >= 16 (the smallest ``tl.dot``) and
    ``block_k`` >= 32 (see ``MIN_BLOCK_K``). K need not be a multiple of ``block_k``.
    """

    block_m: int
    block_n: int
    block_k: int
    group_m: int = 8
    num_warps: int = 4
    num_stages: int = 3
    split_k: int = 1

    def __post_init__(self) -> None:
        if self.group_m < 1 or self.num_warps < 1 or self.num_stages < 1:
            raise ValueError(f"TileConfig: group_m, num_warps and num_stages must be >= 1, got {self}")
        _check_tiles(self, {"block_m": 16, "block_n": 16, "block_k": MIN_BLOCK_K, "split_k": 1})


def default_config(m: int, n: int, k: int) -> TileConfig:
    """A sound config for any shape: the M tile follows M (16 to 128), wider tiles for big problems;
    one pipeline stage at M <= 16, where Triton's pipelining of the K loop was slower on an H200."""
    block_m = 16
    while block_m < 128 and block_m < m:
        block_m *= 2
    block_n = 128 if n >= 128 and m >= 64 else 64
    block_k = 128 if k >= 128 else 64
    num_warps = 8 if block_m * block_n >= 128 * 128 else 4
    num_stages = 1 if block_m == 16 else 3
    return TileConfig(block_m, block_n, block_k, group_m=8, num_warps=num_warps, num_stages=num_stages)


@dataclass(frozen=True)
class GemvConfig:
    """The GEMV kernel: activation rows per pass (block_m), weight rows per program (block_n), K tile,
    warps, and the number of slices K is split into across programs (split_k; the last program of
    each column strip sums them)."""

    block_m: int = 1
    block_n: int = 32
    block_k: int = 512
    num_warps: int = 4
    split_k: int = 1

    def __post_init__(self) -> None:
        _check_tiles(self, {"block_m": 1, "block_n": 1, "block_k": MIN_BLOCK_K, "split_k": 1})


@dataclass(frozen=True)
class RingConfig:
    """The ring kernel (``kernels._w4a16_ring``): weight rows per program (block_n, 16 a warp and
    repetition), warps, trips in the shared-memory ring (num_stages, >= 2), and the number of slices K
    is split into across programs (the last program of each column strip sums them)."""

    block_n: int = 64
    num_warps: int = 4
    num_stages: int = 3
    split_k: int = 1

    def __post_init__(self) -> None:
        _check_tiles(self, {"block_n": 16 * self.num_warps, "num_warps": 1})
        if self.num_stages < 2:
            raise ValueError(f"RingConfig: num_stages must be >= 2, got {self.num_stages}")
        if self.split_k < 1:  # any count: the slices take whole trips, the last ones fewer
            raise ValueError(f"RingConfig: split_k must be >= 1, got {self.split_k}")


@dataclass(frozen=True)
class WgmmaConfig:
    """The wgmma kernel (``kernels._w4a16_wgmma``): x rows a program (block_m, 128 or 256: half each for
    the two consumers' MMAs)
    and the slots of its shared-memory ring (num_stages, >= 2), each a step of 64 K: x's tile, the
    codes and the decoded weight tile, ``(block_m + 80) * 128`` bytes, 227 KB in all at most."""

    block_m: int = 256
    num_stages: int = 4

    def __post_init__(self) -> None:
        if self.block_m not in (128, 256):
            raise ValueError(f"WgmmaConfig: block_m must be 128 or 256, got {self.block_m}")
        if self.num_stages < 2 or self.num_stages * (self.block_m + 80) * 128 > 227 * 1024:
            raise ValueError(f"WgmmaConfig: num_stages must be >= 2 and its ring fit 227 KB of shared memory "
                             f"(at most {227 * 1024 // ((self.block_m + 80) * 128)} at block_m = {self.block_m}), "
                             f"got {self.num_stages}")


@dataclass(frozen=True)
class TwoPassConfig:
    """Two-pass strategy: the dequantize kernel's tile (elements) and warps; the GEMM is cuBLAS's.

    The default 16 x 512 tile dequantized the FLUX weights 5-10% faster than 64 x 128 on an H200
    (bench/NOTES.md, v8).
    """

    block_n: int = 16
    block_k: int = 512
    num_warps: int = 4

    def __post_init__(self) -> None:
        _check_tiles(self, _DEQUANT_TILE)


@dataclass(frozen=True)
class Fp8Config:
    """FP8 two-pass: the E4M3 dequantize kernel's tile and warps, and cuBLAS's fast-accumulation switch.

    ``fast_accum`` lets Hopper's FP8 tensor cores accumulate at reduced precision between
    promotions. On an H200 it made the FLUX GEMMs (K up to 15360) 2-11% faster at M >= 4096 with
    the same error (3.39e-2 against 3.38e-2), so it is on by default.
    """

    block_n: int = 16
    block_k: int = 512
    num_warps: int = 4
    fast_accum: bool = True

    def __post_init__(self) -> None:
        _check_tiles(self, _DEQUANT_TILE)


GemmConfig = TileConfig | GemvConfig | RingConfig | WgmmaConfig | TwoPassConfig | Fp8Config
_KINDS = {"fused": TileConfig, "gemv": GemvConfig, "ring": RingConfig, "wgmma": WgmmaConfig, "two_pass": TwoPassConfig,
          "fp8": Fp8Config}


def config_to_dict(cfg: GemmConfig) -> dict:
    kind = next(name for name, cls in _KINDS.items() if type(cfg) is cls)
    return {"kind": kind, **asdict(cfg)}


def config_from_dict(d: dict) -> GemmConfig:
    """Inverse of :func:`config_to_dict`; raises TypeError / ValueError on anything else."""
    fields = {k: v for k, v in d.items() if k != "kind"}
    kind = d.get("kind", "fused")
    if kind not in _KINDS:
        raise ValueError(f"unknown config kind {kind!r}")
    return _KINDS[kind](**fields)


def default_fp8_config(m: int, n: int, k: int) -> GemmConfig:
    """The untuned choice for ``activation="fp8"``: FP8 two-pass once M can amortize dequantizing the weight."""
    return Fp8Config() if m >= 128 else default_config(m, n, k)


def describe(cfg: GemmConfig) -> str:
    """Short human label of a config, for tables and logs."""
    if isinstance(cfg, Fp8Config):
        accum = ", fast accum" if cfg.fast_accum else ""
        return f"fp8 two-pass (dequant {cfg.block_n}x{cfg.block_k} w{cfg.num_warps} + cuBLAS FP8{accum})"
    if isinstance(cfg, TwoPassConfig):
        return f"two-pass (dequant {cfg.block_n}x{cfg.block_k} w{cfg.num_warps} + cuBLAS)"
    if isinstance(cfg, WgmmaConfig):
        return f"wgmma {cfg.block_m} s{cfg.num_stages}"
    split = f" split{cfg.split_k}" if cfg.split_k > 1 else ""
    if isinstance(cfg, RingConfig):
        return f"ring {cfg.block_n} w{cfg.num_warps} s{cfg.num_stages}{split}"
    if isinstance(cfg, GemvConfig):
        return f"gemv {cfg.block_m}x{cfg.block_n}x{cfg.block_k} w{cfg.num_warps}{split}"
    return f"fused {cfg.block_m}x{cfg.block_n}x{cfg.block_k} w{cfg.num_warps} s{cfg.num_stages}{split}"
