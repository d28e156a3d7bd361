"""`nvfp4_linear`: the public W4A16 op, its argument checks, and its torch custom-op registration.

The kernel launch is wrapped as ``torch.ops.nvfp4_triton.w4a16_linear`` with a fake (meta)
implementation, so ``torch.compile(fullgraph=True)`` traces through it and CUDA graphs can
capture it. The op is inference-only: it has no autograd formula.
"""

from __future__ import annotations

import torch

from .gemm import interpreter_active, w4a16_gemm
from .weight import NVFP4Weight

ACTIVATION_DTYPES = (torch.bfloat16, torch.float16)
BIAS_DTYPES = (torch.bfloat16, torch.float16, torch.float32)


@torch.library.custom_op("nvfp4_triton::w4a16_linear", mutates_args=())
def _w4a16_linear(
    x: torch.Tensor,
    packed: torch.Tensor,
    block_scale_bits: torch.Tensor,
    global_scale: torch.Tensor,
    bias: torch.Tensor | None,
) -> torch.Tensor:
    # The E4M3 block scales travel as their uint8 bit patterns: the kernel decodes them itself,
    # and torch's op checks cannot handle float8 arguments on every device.
    k = x.shape[-1]
    y = w4a16_gemm(x.reshape(-1, k), packed, block_scale_bits, global_scale, bias)
    return y.reshape(*x.shape[:-1], packed.shape[0])


@_w4a16_linear.register_fake
def _(x, packed, block_scale_bits, global_scale, bias):
    return x.new_empty((*x.shape[:-1], packed.shape[0]))


def nvfp4_linear(x: torch.Tensor, weight: NVFP4Weight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``y = x @ dequantize(weight)^T + bias``, computed by the Triton W4A16 kernel.

    Args:
        x: ``[..., in_features]``, bfloat16 or float16, on the weight's device. Any strides.
        weight: an :class:`NVFP4Weight` with ``scale_layout="linear"`` (convert a swizzled one
            once with ``weight.with_scale_layout("linear")``, not per call).
        bias: optional ``[out_features]``, bf16 / fp16 / fp32, on the same device.

    Returns ``[..., out_features]`` in x's dtype; accumulation is fp32. CPU tensors run through
    Triton's interpreter, which must be switched on (``TRITON_INTERPRET=1``) before
    ``nvfp4_triton`` is imported.
    """
    if not isinstance(weight, NVFP4Weight):
        raise TypeError(f"nvfp4_linear: weight must be an NVFP4Weight, got {type(weight).__name__}")
    if weight.scale_layout != "linear":
        raise ValueError(
            f"nvfp4_linear: weight has scale_layout={weight.scale_layout!r}; the kernels read the 'linear' layout. "
            "Convert once at load time with weight.with_scale_layout('linear')."
        )
    check_linear_args(x, weight, bias)
    return _w4a16_linear(x, weight.packed, weight.block_scale.view(torch.uint8), weight.global_scale, bias)


def check_linear_args(x: torch.Tensor, weight: NVFP4Weight, bias: torch.Tensor | None) -> None:
    """Raise a ``TypeError`` / ``ValueError`` naming the argument that the kernel cannot take.

    The weight's own tensors were checked when the ``NVFP4Weight`` was built.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"nvfp4_linear: x must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in ACTIVATION_DTYPES:
        raise TypeError(f"nvfp4_linear: x must be bfloat16 or float16, got {x.dtype}")
    k, n = weight.in_features, weight.out_features
    if x.dim() < 1 or x.shape[-1] != k:
        raise ValueError(f"nvfp4_linear: x must have shape [..., {k}] (in_features of the weight), got {tuple(x.shape)}")
    device = x.device
    if bias is not None:
        if not isinstance(bias, torch.Tensor):
            raise TypeError(f"nvfp4_linear: bias must be a torch.Tensor or None, got {type(bias).__name__}")
        if bias.dtype not in BIAS_DTYPES:
            raise TypeError(f"nvfp4_linear: bias must be bfloat16, float16 or float32, got {bias.dtype}")
        if tuple(bias.shape) != (n,):
            raise ValueError(f"nvfp4_linear: bias must have shape ({n},) (out_features), got {tuple(bias.shape)}")
        if bias.stride(0) != 1:
            raise ValueError("nvfp4_linear: bias must be contiguous")
    if weight.packed.device != device or (bias is not None and bias.device != device):
        where = f"x on {device}, weight on {weight.device}" + (f", bias on {bias.device}" if bias is not None else "")
        raise ValueError(f"nvfp4_linear: all tensors must be on one device, got {where}")
    if x.device.type == "cpu" and not interpreter_active():
        raise RuntimeError(
            "nvfp4_linear: x is on the CPU, where the Triton kernel runs only through Triton's interpreter. "
            "Move the tensors to a CUDA device, or set TRITON_INTERPRET=1 before importing nvfp4_triton."
        )
    if x.device.type not in ("cpu", "cuda"):
        raise ValueError(f"nvfp4_linear: x is on {x.device}; only CUDA devices (and the CPU interpreter) are supported")
