"""The FP8 (E4M3) math of the W4A8 and FP8-resident modes, in plain torch: the reference the kernels match.

Activations: per token (row), ``scale = amax / 448`` (1 for an all-zero row) and
``q = e4m3(clamp(x * (1 / scale), +-448))``, rounded to nearest even. (A multiply by the row's
reciprocal, not a division per element: on the GPU an IEEE division costs about ten instructions.)

Weights: an NVFP4 value ``e2m1 * e4m3_block`` has at most 6 significant bits (2 times 4) and lies
in ``[2**-10, 2688]``. It is stored as ``e4m3(e2m1 * e4m3_block * 2**e_row)``, where ``2**e_row`` is the
largest power of two that keeps the row's largest possible value (6 times its largest block
scale) within 448. E4M3's precision is relative, so a finer or non-power-of-two scale would gain
nothing but rounding of its own; the power of two only keeps small rows out of the subnormals.
cuBLAS then applies ``global_scale * 2**-e_row`` per output column. The only rounding is that
of that product to E4M3's 4 (1 + 3) significant bits: exact except where ``e2m1`` is 1.5, 3 or 6
and the block scale's last mantissa bit is set. That is common: on a Gaussian 3072x3072 weight the
conversion's relative L2 error is 2.1e-2, about as much as rounding the activations (2.6e-2).
"""

from __future__ import annotations

import functools

import torch

from . import format as fmt

E4M3_MAX = fmt.E4M3_MAX
_MAX_EXPONENT = 30
"""Cap of ``e_row``: all-zero block scales (never written by ModelOpt) would otherwise ask for 2**inf."""


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token FP8 quantization of ``x[M, K]``: ``(q float8_e4m3fn [M, K], scale float32 [M, 1])``."""
    xf = x.float()
    # Divided by a tensor: by a Python number, CUDA torch multiplies by its reciprocal instead, which
    # can differ in the last bit from the division that the CPU and the kernel do.
    scale = xf.abs().amax(dim=-1, keepdim=True) / xf.new_full((), E4M3_MAX)
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    q = (xf * (1.0 / scale)).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)
    return q, scale


def row_multipliers(block_scale: torch.Tensor) -> torch.Tensor:
    """``2**e_row`` (float32 ``[N]``) for linear-layout block scales ``[N, K/16]`` (see the module docstring)."""
    row_max = fmt.E2M1_MAX * block_scale.float().amax(dim=1)
    exponent = torch.floor(torch.log2(E4M3_MAX / row_max)).clamp(-_MAX_EXPONENT, _MAX_EXPONENT)
    # log2 may land one off at exact powers of two: step down or up until 2**e is the largest that fits.
    exponent = torch.where(row_max * torch.exp2(exponent) > E4M3_MAX, exponent - 1, exponent)
    exponent = torch.where((row_max * torch.exp2(exponent + 1) <= E4M3_MAX) & (exponent < _MAX_EXPONENT),
                           exponent + 1, exponent)
    return torch.exp2(exponent)


def column_scales(global_scale: torch.Tensor, multipliers: torch.Tensor) -> torch.Tensor:
    """cuBLAS's per-output-column scale ``global * 2**-e_row`` as the ``[1, N]`` float32 tensor ``_scaled_mm`` takes."""
    return (global_scale.float() / multipliers).reshape(1, -1).contiguous()


def dequantize_to_fp8(packed: torch.Tensor, block_scale: torch.Tensor, multipliers: torch.Tensor) -> torch.Tensor:
    """``e4m3(e2m1 * e4m3_block * 2**e_row)`` as float8_e4m3fn ``[N, K]`` (linear-layout inputs)."""
    one = torch.ones((), dtype=torch.float32, device=packed.device)
    exact = fmt.dequantize_tensors(packed, block_scale, one, torch.float32)
    return (exact * multipliers[:, None]).to(torch.float8_e4m3fn)


FP8_MIN_CAPABILITY = (8, 9)
"""FP8 tensor cores, which ``torch._scaled_mm`` and Triton's E4M3 type need: Ada (sm_89) and Hopper (sm_90) on."""


def check_fp8_device(device: torch.device, caller: str) -> None:
    """Raise a ``RuntimeError`` naming ``caller`` where ``device`` is a CUDA GPU without FP8 tensor cores.

    Without it an FP8 mode on such a GPU (an A100, say) fails deep in Triton's compiler or in
    cuBLAS, with a message that names neither the mode nor what to use instead.
    """
    if device.type != "cuda":
        return
    index = device.index if device.index is not None else torch.cuda.current_device()
    major, minor = _capability(index)
    if (major, minor) < FP8_MIN_CAPABILITY:
        raise RuntimeError(
            f"{caller}: the FP8 modes (activation='fp8', resident='fp8', FP8Linear) need FP8 tensor cores, "
            f"compute capability 8.9 or newer (Ada, Hopper); {torch.cuda.get_device_name(index)} ({device}) has "
            f"{major}.{minor}. W4A16 (activation=None) runs on any CUDA GPU.")


@functools.cache
def _capability(index: int) -> tuple[int, int]:
    return torch.cuda.get_device_capability(index)


def weight_scales(weight) -> tuple[torch.Tensor, torch.Tensor]:
    """``(row_multipliers, column_scales)`` of an :class:`~nvfp4_triton.weight.NVFP4Weight` (linear layout)."""
    multipliers = row_multipliers(weight.block_scale)
    return multipliers, column_scales(weight.global_scale, multipliers)
