"""Build a ready diffusers transformer (FLUX first) from a ModelOpt NVFP4 export.

The model is constructed on the meta device from the checkpoint's ``config.json``, so no BF16
copy of a quantized weight is ever materialized. Every module the checkpoint holds in NVFP4 is
swapped for an :class:`NVFP4Linear`; every other tensor is loaded as stored (cast to ``dtype``).
The swap is driven by the checkpoint's module names, not by FLUX's, so other diffusers
transformers exported the same way load too (``model_class``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from . import fusion
from .modelopt import Checkpoint, CheckpointError, load_checkpoint
from .module import FP8Linear, NVFP4Linear
from .ops import check_mode
from .shapes import is_excluded


def _diffusers_class(name: str):
    try:
        import diffusers
    except ImportError as err:
        raise ImportError("nvfp4_triton.flux needs diffusers: pip install 'nvfp4_triton[flux]'") from err
    cls = getattr(diffusers, name, None)
    if cls is None:
        raise CheckpointError(f"diffusers {diffusers.__version__} has no model class {name!r}")
    return cls


def load_transformer(
    path: str | Path,
    device: torch.device | str = "cuda",
    dtype: torch.dtype = torch.bfloat16,
    scale_layout: str | None = None,
    swap_nibbles: bool | None = None,
    model_class: str | None = None,
    activation: str | None = None,
    resident: str | None = None,
    fuse_gelu: bool = True,
    fuse_qkv: bool = False,
) -> nn.Module:
    """Load a ModelOpt NVFP4 export of a diffusers transformer (``FluxTransformer2DModel`` by default).

    Args:
        path: the component folder (``transformer/``) with config.json and safetensors.
        device: where the model goes.
        dtype: dtype of the unquantized tensors (biases, norms, BF16-kept linears).
        scale_layout, swap_nibbles: override the checkpoint's settings (see ``nvfp4_triton.modelopt``).
        model_class: diffusers class name; default: the config's ``_class_name``.
        activation: how the NVFP4 layers treat activations: None (W4A16), ``"fp8"`` (W4A8) or
            ``"nvfp4"`` (Blackwell W4A4 emulation; every NVFP4 module needs an ``input_scale``).
        resident: ``"fp8"`` converts each NVFP4 weight once to FP8 (:class:`FP8Linear`): about 0.5x
            the bytes of BF16 instead of 0.28x, and no per-call dequantization.
        fuse_gelu: fuse GELU-tanh into the GEMM before it (``nvfp4_triton.fusion``).
        fuse_qkv: join each attention block's q/k/v projections into one layer where the
            checkpoint gives them one global scale (``nvfp4_triton.fusion.fuse_qkv``). Module
            names change (``attn.to_qkv``), so the model no longer saves as a ModelOpt export.
    """
    check_mode(activation, resident, "load_transformer")
    ckpt = load_checkpoint(path, scale_layout=scale_layout, swap_nibbles=swap_nibbles, device="cpu")
    cls = _diffusers_class(model_class or ckpt.config.get("_class_name", "FluxTransformer2DModel"))
    config = {k: v for k, v in ckpt.config.items() if not k.startswith("_")}
    with torch.device("meta"):
        model = cls.from_config(config)
    model = attach(model, ckpt, torch.device(device), dtype, activation, resident)
    if fuse_gelu:
        fusion.fuse_gelu(model)
    if fuse_qkv:
        fusion.fuse_qkv(model)
        apart = [name for name, _ in fusion.unfused_attention(model)]
        if apart:
            warnings.warn(f"load_transformer(fuse_qkv=True): {len(apart)} attention block(s) keep separate q/k/v "
                          f"layers (not one global scale, activation mode or input scale per group), e.g. {apart[0]}",
                          stacklevel=2)
    return model


def attach(model: nn.Module, ckpt: Checkpoint, device: torch.device, dtype: torch.dtype,
           activation: str | None = None, resident: str | None = None) -> nn.Module:
    """Put a loaded checkpoint into a (meta-device) model: NVFP4 modules swapped in, the rest assigned."""
    if activation == "nvfp4":
        lacking = sorted(name for name, q in ckpt.quantized.items() if q.input_scale is None)
        if lacking:
            raise CheckpointError(f"{ckpt.path}: activation='nvfp4' needs input_scale, which {len(lacking)} NVFP4 "
                                  f"module(s) lack: {lacking[:8]}{'...' if len(lacking) > 8 else ''}")
    linears = {name for name, mod in model.named_modules() if isinstance(mod, nn.Linear)}
    problems = []
    for name, q in ckpt.quantized.items():
        try:
            target = model.get_submodule(name)
        except AttributeError:
            problems.append(f"module {name}: in the checkpoint but not in {type(model).__name__}")
            continue
        if not isinstance(target, nn.Linear):
            problems.append(f"module {name}: NVFP4 in the checkpoint but a {type(target).__name__} in the model")
            continue
        if (target.out_features, target.in_features) != q.weight.shape:
            problems.append(f"module {name}: NVFP4 weight is {q.weight.shape} (out, in), the model's Linear is "
                            f"{(target.out_features, target.in_features)}")
            continue
        if (target.bias is not None) != (q.bias is not None):
            problems.append(f"module {name}: bias {'missing from' if q.bias is None else 'unexpected in'} the checkpoint")
            continue
        bias = q.bias.to(device, dtype) if q.bias is not None else None
        layer = NVFP4Linear.from_weight(q.weight.to(device), bias, q.input_scale)
        layer.activation = activation
        if resident == "fp8":
            layer = FP8Linear.from_nvfp4(layer)
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, layer)
    for name in sorted(linears - set(ckpt.quantized)):
        if not is_excluded(name, ckpt.settings.exclude) and f"{name}.weight" not in ckpt.dense:
            problems.append(f"module {name}: an nn.Linear the checkpoint neither quantizes nor stores")
    if problems:
        raise CheckpointError(f"{ckpt.path}: cannot build {type(model).__name__}:\n  - " + "\n  - ".join(problems))

    state = {k: (v.to(device, dtype) if v.is_floating_point() else v.to(device)) for k, v in ckpt.dense.items()}
    result = model.load_state_dict(state, strict=False, assign=True)
    quant_keys = {f"{m}.{s}" for m in ckpt.quantized for s in ("weight", "weight_scale", "weight_scale_2", "bias",
                                                                "input_scale")}
    if resident == "fp8":  # FP8Linear's own tensors are not in the checkpoint either
        quant_keys |= {f"{m}.{s}" for m in ckpt.quantized for s in ("weight", "weight_scale", "bias")}
    missing = [k for k in result.missing_keys if k not in quant_keys]
    if missing or result.unexpected_keys:
        raise CheckpointError(f"{ckpt.path}: state does not match {type(model).__name__}: "
                              f"missing {missing[:8]}{'...' if len(missing) > 8 else ''}, "
                              f"unexpected {result.unexpected_keys[:8]}")
    leftovers = [n for n, t in (*model.named_parameters(), *model.named_buffers()) if t.device.type == "meta"]
    if leftovers:
        raise CheckpointError(f"{ckpt.path}: tensors the checkpoint does not provide: {leftovers[:8]}")
    return model.eval().requires_grad_(False)
