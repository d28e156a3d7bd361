"""`NVFP4Linear`: a drop-in ``nn.Linear`` replacement holding an NVFP4 weight.

Its state dict uses ModelOpt's export names, so a ModelOpt checkpoint's tensors load into it
as they are and what it saves reads back in ModelOpt-aware tools:

    weight          uint8 [out, in/2]        packed E2M1 codes
    weight_scale    float8_e4m3fn [out, in/16]  block scales, linear layout
    weight_scale_2  float32 []               global scale
    input_scale     float32 []               optional, calibrated activation scale (kept, not used by W4A16)
    bias            [out]                    optional, unquantized
"""

from __future__ import annotations

import torch
from torch import nn

from . import format as fmt
from .ops import nvfp4_linear
from .weight import NVFP4Weight, quantize


class NVFP4Linear(nn.Module):
    """``y = x @ W^T + b`` with W stored in NVFP4 (about 0.28x the bytes of bf16).

    Build one from a trained layer with :meth:`from_linear`, from an existing quantized weight
    with :meth:`from_weight`, or empty (codes 0, scales 1) and then ``load_state_dict``.
    Inference only: there is no backward.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.bfloat16,
    ) -> None:
        super().__init__()
        if in_features < 1 or in_features % fmt.BLOCK_SIZE:
            raise ValueError(
                f"NVFP4Linear: in_features must be a positive multiple of {fmt.BLOCK_SIZE}, got {in_features}"
            )
        if out_features < 1:
            raise ValueError(f"NVFP4Linear: out_features must be >= 1, got {out_features}")
        self.in_features = in_features
        self.out_features = out_features
        self._nvfp4_weight: NVFP4Weight | None = None
        self.register_buffer("weight", torch.zeros(out_features, in_features // 2, dtype=torch.uint8, device=device))
        self.register_buffer(
            "weight_scale",
            torch.ones(out_features, in_features // fmt.BLOCK_SIZE, device=device).to(torch.float8_e4m3fn),
        )
        self.register_buffer("weight_scale_2", torch.ones((), dtype=torch.float32, device=device))
        self.register_buffer("input_scale", None)
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype, device=device), requires_grad=False) \
            if bias else None

    @classmethod
    def from_weight(
        cls,
        weight: NVFP4Weight,
        bias: torch.Tensor | None = None,
        input_scale: torch.Tensor | None = None,
    ) -> NVFP4Linear:
        """Wrap a quantized weight (a swizzled one is converted to the linear layout once, here)."""
        weight = weight.with_scale_layout("linear")
        dtype = bias.dtype if bias is not None else torch.bfloat16
        layer = cls(weight.in_features, weight.out_features, bias=bias is not None, device="meta", dtype=dtype)
        layer.weight = weight.packed
        layer.weight_scale = weight.block_scale
        layer.weight_scale_2 = weight.global_scale
        layer.input_scale = None if input_scale is None else input_scale.to(weight.device, torch.float32).reshape(())
        if bias is not None:
            if tuple(bias.shape) != (weight.out_features,):
                raise ValueError(
                    f"NVFP4Linear: bias must have shape ({weight.out_features},), got {tuple(bias.shape)}"
                )
            layer.bias = nn.Parameter(bias.detach().to(weight.device), requires_grad=False)
        return layer

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> NVFP4Linear:
        """Quantize an ``nn.Linear`` with ModelOpt's weight recipe; the bias is kept as it is."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"NVFP4Linear.from_linear: expected an nn.Linear, got {type(linear).__name__}")
        with torch.no_grad():
            weight = quantize(linear.weight.detach())
        return cls.from_weight(weight, linear.bias.detach() if linear.bias is not None else None)

    @property
    def nvfp4_weight(self) -> NVFP4Weight:
        """The weight as a validated :class:`NVFP4Weight` over this module's buffers.

        Built (and checked) again only when a buffer was replaced (a device move, a load), not per call.
        """
        cached = self._nvfp4_weight
        if (cached is None or cached.packed is not self.weight or cached.block_scale is not self.weight_scale
                or cached.global_scale is not self.weight_scale_2):
            cached = NVFP4Weight(self.weight, self.weight_scale, self.weight_scale_2,
                                 (self.out_features, self.in_features))
            self._nvfp4_weight = cached
        return cached

    @property
    def weight_nbytes(self) -> int:
        """Bytes of the quantized weight (codes, block scales, global scale), bias excluded."""
        return self.nvfp4_weight.nbytes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nvfp4_linear(x, self.nvfp4_weight, self.bias)

    def extra_repr(self) -> str:
        bf16 = self.out_features * self.in_features * 2
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
            f"weight_bytes={self.weight_nbytes} ({self.weight_nbytes / bf16:.3f}x bf16)"
        )

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # A wrong dtype would otherwise be cast silently by copy_ (bf16 weights into uint8 codes).
        for name in _QUANT_BUFFERS:
            got, mine = state_dict.get(prefix + name), getattr(self, name)
            if got is not None and mine is not None and got.dtype != mine.dtype:
                error_msgs.append(f"{prefix}{name}: expected dtype {mine.dtype}, got {got.dtype}")
                return
        # input_scale is optional in ModelOpt exports: adopt it when present, drop it when absent.
        if prefix + "input_scale" in state_dict:
            self.input_scale = torch.empty((), dtype=torch.float32, device=self.weight_scale_2.device)
        else:
            self.input_scale = None
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def _apply(self, fn, recurse=True):
        # module.to(dtype) / .half() would cast the e4m3 scales and the fp32 global scale
        # (float8 counts as floating point). Quantized buffers follow device moves only.
        kept = {name: self._buffers[name] for name in _QUANT_BUFFERS if self._buffers.get(name) is not None}
        for name in kept:
            self._buffers[name] = None
        try:
            super()._apply(fn, recurse)
        finally:
            for name, t in kept.items():
                self._buffers[name] = t.to(fn(torch.empty(0, device=t.device)).device)
        return self


_QUANT_BUFFERS = ("weight", "weight_scale", "weight_scale_2", "input_scale")
