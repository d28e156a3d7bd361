"""`NVFP4Weight`: a validated container for one quantized weight, and the quantize / dequantize helpers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from . import format as fmt

ScaleLayout = Literal["linear", "swizzled"]
SCALE_LAYOUTS = ("linear", "swizzled")


@dataclass(frozen=True)
class NVFP4Weight:
    """One NVFP4 weight matrix of logical shape ``(out_features, in_features)``.

    Attributes:
        packed: uint8 ``[N, K/2]``, two E2M1 codes a byte, element 2j in the low nibble.
        block_scale: float8_e4m3fn. ``[N, K/16]`` in the ``"linear"`` layout (what the kernels
            read); ``[ceil128(N), ceil4(K/16)]`` in the ``"swizzled"`` 128x4 layout.
        global_scale: float32 scalar tensor (ModelOpt's ``weight_scale_2``).
        shape: ``(N, K)``.
        scale_layout: ``"linear"`` or ``"swizzled"``.

    The constructor checks dtypes, shapes and devices and raises ``ValueError`` / ``TypeError``
    naming the field at fault.
    """

    packed: torch.Tensor
    block_scale: torch.Tensor
    global_scale: torch.Tensor
    shape: tuple[int, int]
    scale_layout: ScaleLayout = "linear"
    scale_bits: torch.Tensor = field(init=False, repr=False, compare=False)
    """``block_scale`` viewed as its uint8 bit patterns, as the kernels take it (made once, not per call)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        n, k = self.shape if len(self.shape) == 2 else (None, None)
        if n is None or n < 1 or k < 1:
            raise ValueError(f"NVFP4Weight: shape must be (out_features >= 1, in_features >= 1), got {self.shape}")
        if k % fmt.BLOCK_SIZE:
            raise ValueError(
                f"NVFP4Weight: in_features = {k} must be a multiple of the NVFP4 block size {fmt.BLOCK_SIZE}"
            )
        if self.scale_layout not in SCALE_LAYOUTS:
            raise ValueError(f"NVFP4Weight: scale_layout must be one of {SCALE_LAYOUTS}, got {self.scale_layout!r}")
        _expect(self.packed, "packed", torch.uint8, (n, k // 2))
        if self.scale_layout == "linear":
            scale_shape = (n, k // fmt.BLOCK_SIZE)
        else:
            scale_shape = fmt.swizzled_scale_shape(n, k // fmt.BLOCK_SIZE)
        _expect(self.block_scale, "block_scale", torch.float8_e4m3fn, scale_shape)
        _expect(self.global_scale, "global_scale", torch.float32, ())
        for name in ("block_scale", "global_scale"):
            device = getattr(self, name).device
            if device != self.packed.device:
                raise ValueError(f"NVFP4Weight: {name} is on {device} but packed is on {self.packed.device}")
        object.__setattr__(self, "scale_bits", self.block_scale.view(torch.uint8))

    @property
    def out_features(self) -> int:
        return self.shape[0]

    @property
    def in_features(self) -> int:
        return self.shape[1]

    @property
    def device(self) -> torch.device:
        return self.packed.device

    @property
    def nbytes(self) -> int:
        """Bytes held: packed codes + block scales + the 4-byte global scale."""
        return sum(t.numel() * t.element_size() for t in (self.packed, self.block_scale, self.global_scale))

    def to(self, device: torch.device | str) -> NVFP4Weight:
        """A copy on ``device`` (this object if it is already there)."""
        device = torch.device(device)
        if device == self.device:
            return self
        return NVFP4Weight(
            self.packed.to(device), self.block_scale.to(device), self.global_scale.to(device),
            self.shape, self.scale_layout,
        )

    def linear_block_scale(self) -> torch.Tensor:
        """Block scales in the linear ``[N, K/16]`` layout, converting from swizzled if needed."""
        if self.scale_layout == "linear":
            return self.block_scale
        return fmt.unswizzle_block_scales(self.block_scale, self.out_features, self.in_features // fmt.BLOCK_SIZE)

    def with_scale_layout(self, layout: ScaleLayout) -> NVFP4Weight:
        """The same weight with its block scales stored in ``layout``."""
        if layout not in SCALE_LAYOUTS:
            raise ValueError(f"with_scale_layout: layout must be one of {SCALE_LAYOUTS}, got {layout!r}")
        if layout == self.scale_layout:
            return self
        linear = self.linear_block_scale()
        scale = linear if layout == "linear" else fmt.swizzle_block_scales(linear)
        return NVFP4Weight(self.packed, scale, self.global_scale, self.shape, layout)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The dense weight ``[N, K]`` in ``dtype``."""
        return fmt.dequantize_tensors(self.packed, self.linear_block_scale(), self.global_scale, dtype)


def _expect(t: object, name: str, dtype: torch.dtype, shape: tuple[int, ...]) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"NVFP4Weight: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype != dtype:
        raise TypeError(f"NVFP4Weight: {name} must be {dtype}, got {t.dtype}")
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"NVFP4Weight: {name} must have shape {tuple(shape)}, got {tuple(t.shape)}")
    if not t.is_contiguous():
        raise ValueError(f"NVFP4Weight: {name} must be contiguous (call .contiguous() first)")


def quantize(weight: torch.Tensor, scale_layout: ScaleLayout = "linear") -> NVFP4Weight:
    """Quantize a dense ``weight[out_features, in_features]`` with ModelOpt's NVFP4 weight recipe.

    Runs on the weight's device. ``in_features`` must be a multiple of 16 and all elements finite.
    """
    packed, block_scale, global_scale = fmt.quantize_tensors(weight)
    q = NVFP4Weight(packed, block_scale, global_scale, tuple(weight.shape))
    return q.with_scale_layout(scale_layout)


def random_weight(n: int, k: int, device: torch.device | str) -> NVFP4Weight:
    """Random NVFP4 tensors of shape ``(n, k)``: tuning needs realistic bits and shapes, not a real quantization."""
    packed = torch.randint(0, 256, (n, k // 2), dtype=torch.uint8, device=device)
    scale = (torch.rand(n, k // fmt.BLOCK_SIZE, device=device) * 2 + 0.5).to(torch.float8_e4m3fn)
    return NVFP4Weight(packed, scale, torch.ones((), device=device), (n, k))


def dequantize(weight: NVFP4Weight, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The dense ``[out_features, in_features]`` tensor that ``weight`` encodes, in ``dtype``."""
    return weight.dequantize(dtype)
