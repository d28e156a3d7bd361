"""`NVFP4Linear`: a drop-in ``nn.Linear`` replacement holding an NVFP4 weight.

Its state dict uses ModelOpt's export names, so a ModelOpt checkpoint's tensors load into it
as they are and what it saves reads back in ModelOpt-aware tools:

    weight          uint8 [out, in/2]        packed E2M1 codes
    weight_scale    float8_e4m3fn [out, in/16]  block scales, linear layout
    weight_scale_2  float32 []               global scale
    input_scale     float32 []               optional, calibrated activation scale (used by activation="nvfp4")
    bias            [out]                    optional, unquantized

With ``activation="fp8"`` it also holds the weight's FP8 scales (``fp8_multipliers``,
``fp8_column_scale``: float32 buffers, not saved).

Two settings choose how it computes, not what it saves: ``activation`` (None: W4A16, "fp8":
W4A8 on FP8 tensor cores, "nvfp4": Blackwell W4A4 emulation; see ``nvfp4_linear``) and ``gelu``
(GELU-tanh fused into the GEMM's epilogue). :class:`FP8Linear` instead keeps the weight
converted to FP8 once (``resident="fp8"``).
"""

from __future__ import annotations

import torch
from torch import nn

from . import fp8
from . import format as fmt
from .eager import EagerPlans
from .gemm import fp8_runner, to_rows
from .ops import ACTIVATIONS, _fp8_linear, call_fp8_op, check_no_grad, eager_runner, nvfp4_linear, shaped_runner
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
        activation: str | None = None,
        gelu: bool = False,
    ) -> None:
        super().__init__()
        self._eager = EagerPlans()
        if in_features < 1 or in_features % fmt.BLOCK_SIZE:
            raise ValueError(
                f"NVFP4Linear: in_features must be a positive multiple of {fmt.BLOCK_SIZE}, got {in_features}"
            )
        if out_features < 1:
            raise ValueError(f"NVFP4Linear: out_features must be >= 1, got {out_features}")
        self.in_features = in_features
        self.out_features = out_features
        self.gelu = gelu
        self._nvfp4_weight: NVFP4Weight | None = None
        self._fp8_source: NVFP4Weight | None = None
        for name in _FP8_SCALE_BUFFERS:
            self.register_buffer(name, None, persistent=False)
        self.activation = activation
        self.register_buffer("weight", torch.zeros(out_features, in_features // 2, dtype=torch.uint8, device=device))
        self.register_buffer(
            "weight_scale",
            torch.ones(out_features, in_features // fmt.BLOCK_SIZE, device=device).to(torch.float8_e4m3fn),
        )
        self.register_buffer("weight_scale_2", torch.ones((), dtype=torch.float32, device=device))
        self.register_buffer("input_scale", None)
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype, device=device), requires_grad=False) \
            if bias else None
        self._prepare_caches()

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
        layer._prepare_caches()
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
        cached, buffers = self._nvfp4_weight, self._buffers  # _buffers: nn.Module's attribute lookup is slow
        if (cached is None or cached.packed is not buffers["weight"] or cached.block_scale is not buffers["weight_scale"]
                or cached.global_scale is not buffers["weight_scale_2"]):
            cached = NVFP4Weight(buffers["weight"], buffers["weight_scale"], buffers["weight_scale_2"],
                                 (self.out_features, self.in_features))
            self._nvfp4_weight = cached
        return cached

    @property
    def weight_nbytes(self) -> int:
        """Bytes of the quantized weight (codes, block scales, global scale), bias excluded."""
        return self.nvfp4_weight.nbytes

    @property
    def activation(self) -> str | None:
        """How activations enter the GEMM: None (W4A16), ``"fp8"`` (W4A8) or ``"nvfp4"`` (W4A4 emulation)."""
        return self._activation

    @activation.setter
    def activation(self, value: str | None) -> None:
        if value not in ACTIVATIONS:
            raise ValueError(f"NVFP4Linear: activation must be one of {ACTIVATIONS}, got {value!r}")
        self._activation = value
        self._prepare_caches()

    def _fp8_scales_of(self, weight: NVFP4Weight) -> tuple[torch.Tensor, torch.Tensor]:
        """The weight's FP8 row multipliers and column scales (``activation="fp8"``), computed once per weight.

        They are kept as non-persistent buffers, so that torch.compile treats them like the weight
        (static inputs of a CUDA graph, cheap guards) and device moves carry them.
        """
        if self._fp8_source is not weight:
            self.fp8_multipliers, self.fp8_column_scale = fp8.weight_scales(weight)
            self._fp8_source = weight
        return self._buffers["fp8_multipliers"], self._buffers["fp8_column_scale"]

    def __setattr__(self, name: str, value) -> None:
        super().__setattr__(name, value)
        # Any assignment may change what an eager call computes (a setting, the bias, a buffer; also
        # _prepare_caches' own, which every device move and load runs): the kept plans go.
        EagerPlans.forget(self)
        # A weight buffer replaced by assignment: the FP8 scales derived from it must follow now,
        # because a compiled forward reads them as buffers and never rebuilds them.
        if name in _WEIGHT_BUFFERS and self.__dict__.get("_activation") == "fp8":
            buffers = [self._buffers.get(n) for n in _WEIGHT_BUFFERS]
            if all(b is not None and not b.is_meta and b.device == buffers[0].device for b in buffers):
                self._fp8_scales_of(self.nvfp4_weight)

    def _prepare_caches(self) -> None:
        """Build the weight's :class:`NVFP4Weight` (and in FP8 mode its FP8 scales) when the weight
        or the mode changes, not in the first forward.

        Built inside torch.compile's first trace, they would be stored as side effects, and the
        next call would compile the whole model again.
        """
        self._fp8_source = None  # also after a load, which copies new values into the same weight object
        for name in _FP8_SCALE_BUFFERS:
            self._buffers[name] = None
        weight = self._buffers.get("weight")
        if weight is None or weight.device.type == "meta":
            return
        nvfp4 = self.nvfp4_weight
        if self._activation == "fp8":
            fp8.check_fp8_device(weight.device, "NVFP4Linear")
            self._fp8_scales_of(nvfp4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():
            # The buffers themselves, not the caches: a cache reaches the same tensors by a second
            # path, and dynamo then checks each layer with Python identity guards on every call.
            weight = NVFP4Weight(self.weight, self.weight_scale, self.weight_scale_2,
                                 (self.out_features, self.in_features))
            fp8_scales = (self.fp8_multipliers, self.fp8_column_scale)
        else:
            if type(x) is torch.Tensor:
                run = self._eager.get(x)
                if run is not None:
                    check_no_grad(x, self.bias, "nvfp4_linear")
                    return run(x)
            weight = self.nvfp4_weight
            fp8_scales = self._fp8_scales_of(weight) if self.activation == "fp8" else None
        args = dict(activation=self.activation, input_scale=self._buffers["input_scale"], gelu=self.gelu,
                    fp8_scales=fp8_scales)
        if EagerPlans.eligible(x):
            return self._eager.keep(x, eager_runner(x, weight, self.bias, **args))(x)
        return nvfp4_linear(x, weight, self.bias, **args)

    def extra_repr(self) -> str:
        return _describe(self, self.weight_nbytes)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # A wrong dtype would otherwise be cast silently by copy_ (bf16 weights into uint8 codes).
        for name in _QUANT_BUFFERS:
            got, mine = state_dict.get(prefix + name), getattr(self, name)
            if got is not None and mine is not None and got.dtype != mine.dtype:
                error_msgs.append(f"{prefix}{name}: expected dtype {mine.dtype}, got {got.dtype}")
                return
        # input_scale is optional in ModelOpt exports: adopt it when present, drop it when this
        # module's state is loaded without one (a partial load, strict=False, keeps it).
        if prefix + "input_scale" in state_dict:
            self.input_scale = torch.empty((), dtype=torch.float32, device=self.weight_scale_2.device)
        elif prefix + "weight" in state_dict:
            self.input_scale = None
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        self._prepare_caches()

    def _apply(self, fn, recurse=True):
        # module.to(dtype) / .half() would cast the e4m3 scales and the fp32 global scale
        # (float8 counts as floating point). Quantized buffers follow device moves only.
        _apply_keeping_dtypes(self, super()._apply, fn, recurse, _QUANT_BUFFERS + _FP8_SCALE_BUFFERS)
        self._prepare_caches()
        return self


_WEIGHT_BUFFERS = ("weight", "weight_scale", "weight_scale_2")
_QUANT_BUFFERS = (*_WEIGHT_BUFFERS, "input_scale")
_FP8_SCALE_BUFFERS = ("fp8_multipliers", "fp8_column_scale")
"""Non-persistent: ``activation="fp8"``'s ``fp8.weight_scales`` of the weight, None in other modes."""


def _apply_keeping_dtypes(module: nn.Module, apply, fn, recurse: bool, names: tuple[str, ...]) -> nn.Module:
    """``nn.Module._apply`` with the named buffers moved between devices by ``fn`` but never cast.

    If anything fails, the module keeps the buffers it had.
    """
    kept = {name: module._buffers[name] for name in names if module._buffers.get(name) is not None}
    for name in kept:
        module._buffers[name] = None
    try:
        apply(fn, recurse)
        moved = {name: _moved(fn, t) for name, t in kept.items()}
    except BaseException:
        module._buffers.update(kept)
        raise
    module._buffers.update(moved)
    return module


def _moved(fn, t: torch.Tensor) -> torch.Tensor:
    """``t`` on the device ``fn`` sends tensors to, in its own dtype."""
    if not t.is_meta:
        return t.to(fn(torch.empty(0, device=t.device)).device)
    moved = fn(t)  # to_empty gives fresh storage; .to(device) raises for a meta tensor, as torch does
    return moved if moved.dtype == t.dtype else torch.empty_like(t, device=moved.device)


def _describe(layer: nn.Module, weight_bytes: int) -> str:
    bf16 = layer.out_features * layer.in_features * 2
    text = (f"in_features={layer.in_features}, out_features={layer.out_features}, bias={layer.bias is not None}, "
            f"weight_bytes={weight_bytes} ({weight_bytes / bf16:.3f}x bf16)")
    if getattr(layer, "activation", None):
        text += f", activation={layer.activation!r}"
    return text + (", gelu=True" if layer.gelu else "")


class FP8Linear(nn.Module):
    """``y = x @ W^T + b`` with W held in FP8-E4M3 (``resident="fp8"``): about 0.5x the bytes of bf16.

    Built from an :class:`NVFP4Linear` by :meth:`from_nvfp4`, which converts its weight once: each
    row is multiplied by a power of two and rounded to E4M3 (``fp8.dequantize_to_fp8``). Each call
    quantizes x per token to FP8 and runs cuBLAS's FP8 GEMM: no per-call weight work at all.

        weight        float8_e4m3fn [out, in]
        weight_scale  float32 [out]            per-output-row scale (the global scale over 2**e_row)
        bias          [out]                    optional
    """

    def __init__(self, weight: torch.Tensor, weight_scale: torch.Tensor, bias: torch.Tensor | None = None,
                 gelu: bool = False) -> None:
        super().__init__()
        if weight.dtype != torch.float8_e4m3fn or weight.dim() != 2:
            raise TypeError(f"FP8Linear: weight must be a 2-D float8_e4m3fn tensor, got {weight.dtype} "
                            f"{tuple(weight.shape)}")
        if weight_scale.dtype != torch.float32 or tuple(weight_scale.shape) != (weight.shape[0],):
            raise TypeError(f"FP8Linear: weight_scale must be float32 [{weight.shape[0]}], got {weight_scale.dtype} "
                            f"{tuple(weight_scale.shape)}")
        fp8.check_fp8_device(weight.device, "FP8Linear")
        self._eager = EagerPlans()
        self.out_features, self.in_features = weight.shape
        self.gelu = gelu
        self._views: tuple[torch.Tensor, ...] | None = None
        self.register_buffer("weight", weight)
        self.register_buffer("weight_scale", weight_scale.contiguous())
        self.bias = nn.Parameter(bias.detach(), requires_grad=False) if bias is not None else None
        self._op_views()  # now, not inside torch.compile's first trace (see NVFP4Linear._prepare_caches)

    @classmethod
    def from_nvfp4(cls, layer: NVFP4Linear) -> FP8Linear:
        """Convert an NVFP4 layer's weight to FP8 once (on the layer's device); bias and ``gelu`` carry over."""
        fp8.check_fp8_device(layer.weight.device, "FP8Linear.from_nvfp4")
        weight = layer.nvfp4_weight
        multipliers, column_scale = fp8.weight_scales(weight)
        w8 = fp8.dequantize_to_fp8(weight.packed, weight.block_scale, multipliers)
        return cls(w8, column_scale.reshape(-1), layer.bias, gelu=layer.gelu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if EagerPlans.eligible(x):
            run = self._eager.get(x)
            if run is not None:
                check_no_grad(x, self.bias, "FP8Linear")
                return run(x)
            _check_fp8_input(x, self)
            runner = fp8_runner(to_rows(x), self._buffers["weight"], self._op_views()[1], self.bias, self.gelu)
            return self._eager.keep(x, shaped_runner(runner))(x)
        _check_fp8_input(x, self)
        # Compiled: views of the buffers themselves, not the cached ones (see NVFP4Linear.forward).
        views = (self.weight.view(torch.uint8), self.weight_scale.view(1, -1)) if torch.compiler.is_compiling() \
            else self._op_views()
        return call_fp8_op(_fp8_linear, x, *views, self.bias, gelu=self.gelu)

    def _op_views(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The weight as uint8 bits and its scale as ``[1, N]``, as the op takes them.

        Made again only when a buffer was replaced (a device move, a load), not per call.
        """
        weight, scale = self._buffers["weight"], self._buffers["weight_scale"]
        cached = self._views
        if cached is None or cached[0] is not weight or cached[1] is not scale:
            cached = self._views = (weight, scale, weight.view(torch.uint8), scale.view(1, -1))
        return cached[2], cached[3]

    def extra_repr(self) -> str:
        return _describe(self, self.weight.numel() + self.weight_scale.numel() * 4)

    def _apply(self, fn, recurse=True):
        # Like NVFP4Linear: .to(dtype) casts the bias only; the FP8 weight and its scales keep their dtypes.
        _apply_keeping_dtypes(self, super()._apply, fn, recurse, ("weight", "weight_scale"))
        self._op_views()
        return self

    def __setattr__(self, name: str, value) -> None:
        super().__setattr__(name, value)
        # As in NVFP4Linear; a device move replaces the weight, and _op_views then assigns new views.
        EagerPlans.forget(self)


def _check_fp8_input(x: torch.Tensor, layer: FP8Linear) -> None:
    if not isinstance(x, torch.Tensor) or x.dtype not in (torch.bfloat16, torch.float16):
        raise TypeError(f"FP8Linear: x must be a bfloat16 or float16 tensor, got "
                        f"{x.dtype if isinstance(x, torch.Tensor) else type(x).__name__}")
    if x.shape[-1] != layer.in_features:
        raise ValueError(f"FP8Linear: x must have shape [..., {layer.in_features}], got {tuple(x.shape)}")
    if x.device != layer.weight.device:
        raise ValueError(f"FP8Linear: x is on {x.device}, the weight on {layer.weight.device}")
    if not torch.compiler.is_compiling():  # a module built on the CPU may have moved to a GPU since
        fp8.check_fp8_device(x.device, "FP8Linear")
    check_no_grad(x, layer.bias, "FP8Linear")
