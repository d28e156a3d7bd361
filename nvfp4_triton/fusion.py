"""Fuse GELU-tanh into the GEMM before it, by swapping modules (no patching of diffusers' code).

Two patterns of diffusers' transformers are recognised, both visible in the module tree:
- a ``diffusers.models.activations.GELU`` (``ff.net.0``, ``ff_context.net.0`` in FLUX) with
  ``approximate="tanh"``, whose ``proj`` is one of our layers: it becomes :class:`LinearGELU`,
  which keeps ``proj`` (so state-dict names do not change) and runs it with ``gelu=True``;
- a module whose ``act_mlp`` is ``nn.GELU(approximate="tanh")`` applied to ``proj_mlp``
  (FLUX's single blocks, ``act_mlp(proj_mlp(x))``): ``proj_mlp`` gets ``gelu=True`` and
  ``act_mlp`` becomes ``nn.Identity``.
"""

from __future__ import annotations

import torch
from torch import nn

from .module import FP8Linear, NVFP4Linear

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
