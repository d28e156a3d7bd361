"""When the wgmma kernel (``kernels._w4a16_wgmma``, ``WgmmaConfig``) can run.

The kernel is written in Gluon, Triton's experimental lower-level language, as Triton 3.6 has it;
where this Triton lacks that API the strategy is not offered. It multiplies on Hopper's
warpgroup MMA (wgmma), which only sm_90 has, and takes bf16 activations. The tuner times it beside
the other strategies from M bucket 64 up (``offered``); ``gemm`` launches it.
"""

from __future__ import annotations

import torch

from . import ring

try:
    from .kernels._w4a16_wgmma import STEP, w4a16_wgmma_kernel
    STEP = STEP.value
except ImportError:  # no Gluon, or another version of its API
    STEP, w4a16_wgmma_kernel = 64, None

MIN_BUCKET = 64
"""Smallest M bucket the tuner times the wgmma kernel for (M >= 46). Below it a program's x rows would
mostly be padding: the kernel's x tile is 128 or 256 rows."""


def device_problem(device: torch.device) -> str:
    """Why the kernel cannot run on ``device`` with this Triton; "" if it can. It needs Gluon as
    Triton 3.6 has it, and a Hopper GPU (compute capability 9.0: wgmma)."""
    if w4a16_wgmma_kernel is None or ring.triton_version() < ring.MIN_TRITON:
        return "it needs Gluon as Triton 3.6 has it"
    if device.type != "cuda" or not torch.cuda.is_available() or torch.cuda.get_device_capability(device) != (9, 0):
        return f"it needs a Hopper GPU, compute capability 9.0 (x is on {device})"
    return ""


def problem(m: int, n: int, k: int, dtype: torch.dtype, device: torch.device) -> str:
    """Why the kernel cannot run an ``(m, n, k)`` GEMM with x of ``dtype`` on ``device``; "" if it can.
    Beyond ``device_problem``: N a multiple of 64 (a program's weight rows), K of a step, bf16 x."""
    if dtype != torch.bfloat16:
        return f"it needs bf16 x (got {dtype})"
    if n % 64 or k % STEP:
        return f"it needs N a multiple of 64 and K of {STEP} (got N = {n}, K = {k})"
    return device_problem(device)


def offered(bucket: int, n: int, k: int, dtype: torch.dtype, device: torch.device) -> bool:
    """Whether the tuner times the wgmma kernel for a key (M bucket ``bucket``)."""
    return bucket >= MIN_BUCKET and not problem(bucket, n, k, dtype, device)
