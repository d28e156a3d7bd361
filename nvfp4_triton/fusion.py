"""Fuse GELU-tanh into the GEMM before it, by swapping modules (no patching of diffusers' code).

Two patterns of diffusers' transformers are recognised, both visible in the module tree:
- a ``diffusers.models.activations.GELU`` (``ff.net.0``, ``ff_context.net.0`` in FLUX) with
  ``approximate="tanh"``, whose ``proj`` is one of our layers: it becomes :class:`LinearGELU`,
  which keeps ``proj`` (so state-dict names do not change) and runs it with ``gelu=True``;
- a module whose ``act_mlp`` is ``nn.GELU(approximate="tanh")`` applied to ``proj_mlp``
  (FLUX's single blocks, ``act_mlp(proj_mlp(x))``): ``proj_mlp`` gets ``gelu=True`` and
  ``act_mlp`` becomes ``nn.Identity``.

On the FP8 paths (``activation="fp8"``, ``FP8Linear``) cuBLAS has no GELU epilogue: GELU runs
right after the GEMM in eager mode, and under torch.compile as a graph op that inductor may fuse
into the next kernel (``ops.call_fp8_op``).

:func:`fuse_qkv` concatenates an attention block's q, k and v projections (and its text stream's,
FLUX's ``add_q/k/v_proj``) into one layer each, and switches the block to diffusers' own fused
path (``to_qkv`` / ``to_added_qkv``, ``fused_projections = True``). One GEMM of 3N columns then
replaces three of N: a third of the calls (host time), and with ``activation="fp8"`` one
activation quantization instead of three.
"""

from __future__ import annotations

import torch
from torch import nn

from .module import FP8Linear, NVFP4Linear
from .shapes import QKV_GROUPS
from .weight import NVFP4Weight

_OURS = (NVFP4Linear, FP8Linear)


class LinearGELU(nn.Module):
    """``gelu_tanh(proj(x))`` with the GELU inside ``proj``'s GEMM epilogue (replaces diffusers' ``GELU``)."""

    def __init__(self, proj: NVFP4Linear | FP8Linear) -> None:
        super().__init__()
        proj.gelu = True
        self.proj = proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def fuse_gelu(model: nn.Module) -> list[str]:
    """Fuse every recognised GELU-tanh into its NVFP4 / FP8 GEMM; returns the names of the fused linears."""
    try:
        from diffusers.models.activations import GELU as DiffusersGELU
    except ImportError:
        DiffusersGELU = None
    fused = []
    for name, module in list(model.named_modules()):
        prefix = f"{name}." if name else ""
        for child_name, child in list(module.named_children()):
            if (DiffusersGELU is not None and isinstance(child, DiffusersGELU)
                    and getattr(child, "approximate", None) == "tanh" and isinstance(child.proj, _OURS)):
                setattr(module, child_name, LinearGELU(child.proj))
                fused.append(f"{prefix}{child_name}.proj")
        act, proj = getattr(module, "act_mlp", None), getattr(module, "proj_mlp", None)
        if isinstance(act, nn.GELU) and act.approximate == "tanh" and isinstance(proj, _OURS):
            proj.gelu = True
            module.act_mlp = nn.Identity()
            fused.append(f"{prefix}proj_mlp")
    return fused


def fuse_qkv(model: nn.Module) -> list[str]:
    """Fuse q/k/v projections of diffusers attention blocks into one NVFP4 / FP8 layer; returns the fused names.

    A group fuses when its three layers are all :class:`NVFP4Linear` sharing one global scale
    (``weight_scale_2``, as exports meant for fused projections have; ``python -m
    nvfp4_triton.inspect`` lists such groups), one activation mode and input scale, or all
    :class:`FP8Linear`; and when they agree on in_features, device and having a bias. A block
    fuses only if every group it has does (diffusers' fused path has no half-fused form). The
    separate layers are removed, so memory does not grow. Not reversible (diffusers'
    ``unfuse_projections`` would leave no projections): reload to undo. Module names change, so
    save a state dict before fusing.
    """
    fused = []
    for name, module in list(unfused_attention(model)):
        groups = [(parts, target) for parts, target in QKV_GROUPS if getattr(module, parts[0], None) is not None]
        layers = {target: _concatenated([getattr(module, part, None) for part in parts]) for parts, target in groups}
        if not groups or any(layer is None for layer in layers.values()):
            continue
        for parts, target in groups:
            for part in parts:
                delattr(module, part)
            setattr(module, target, layers[target])
            fused.append(f"{name}.{target}" if name else target)
        module.fused_projections = True
    return fused


def unfused_attention(model: nn.Module):
    """``(name, module)`` of every diffusers attention block that could take the fused q/k/v path but does not."""
    for name, module in model.named_modules():
        if getattr(module, "fused_projections", None) is False and getattr(module, "_supports_qkv_fusion", True):
            yield name, module


def _concatenated(layers: list) -> NVFP4Linear | FP8Linear | None:
    """One layer computing ``cat([layer(x) for layer in layers], -1)``, or None when they cannot be joined exactly."""
    first = layers[0]
    if not all(type(layer) is type(first) and type(first) in _OURS for layer in layers):
        return None
    if any(layer.in_features != first.in_features or layer.gelu or layer.weight.device != first.weight.device
           or (layer.bias is None) != (first.bias is None) for layer in layers):
        return None
    bias = torch.cat([layer.bias for layer in layers]) if first.bias is not None else None
    if isinstance(first, FP8Linear):  # per-row scales: any FP8 layers concatenate
        return FP8Linear(torch.cat([layer.weight for layer in layers]), torch.cat([layer.weight_scale for layer in layers]),
                         bias)
    scales = [layer.input_scale for layer in layers]
    same_input_scale = all(s is None for s in scales) or (
        all(s is not None for s in scales) and all(torch.equal(s, scales[0]) for s in scales))
    if not same_input_scale or any(layer.activation != first.activation
                                   or not torch.equal(layer.weight_scale_2, first.weight_scale_2) for layer in layers):
        return None
    weights = [layer.nvfp4_weight for layer in layers]
    weight = NVFP4Weight(torch.cat([w.packed for w in weights]), torch.cat([w.block_scale for w in weights]),
                         first.weight_scale_2, (sum(w.out_features for w in weights), first.in_features))
    fused = NVFP4Linear.from_weight(weight, bias, input_scale=scales[0])
    fused.activation = first.activation
    return fused
