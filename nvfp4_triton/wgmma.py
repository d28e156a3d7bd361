"""When the wgmma kernel (``kernels._w4a16_wgmma``, ``WgmmaConfig``) can run, and its TMA descriptors.

The kernel is written in Gluon, Triton's experimental lower-level language, as Triton 3.6 has it;
where this Triton lacks that API the strategy is not offered. It multiplies on Hopper's
warpgroup MMA (wgmma) and reads x and the codes by TMA, which only sm_90 has among the GPUs it
serves, and takes bf16 activations. The tuner times it beside the other strategies at M buckets
64-1024 (``offered``); ``gemm`` launches it.
"""

from __future__ import annotations

import torch

from . import ring

try:
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

    from .kernels._w4a16_wgmma import BLOCK_N, STEP, w4a16_wgmma_kernel
    BLOCK_N, STEP = BLOCK_N.value, STEP.value
    _X_TILE = gl.NVMMASharedLayout(swizzle_byte_width=128, element_bitwidth=16, rank=2)
    _CODE_TILE = gl.NVMMASharedLayout(swizzle_byte_width=32, element_bitwidth=32, rank=2)
except ImportError:  # no Gluon, or another version of its API
    BLOCK_N, STEP, w4a16_wgmma_kernel = 64, 64, None

MIN_BUCKET = 64
"""Smallest M bucket the tuner times the wgmma kernel for (M >= 46). Below it a program's x rows would
mostly be padding: the kernel's x tile is 128 or 256 rows."""
MAX_BUCKET = 1024
"""Largest M bucket the tuner times it for (M <= 1448). On an H200 it ran 0.68-0.71x of cuBLAS's speed
at M = 4096 (0.71 with two producers), where two-pass runs 0.93 (bench/NOTES.md, v43, v48), so the
compiles and timings beyond are left out of tuning and prewarm."""


REGISTERS = 96
"""Registers a thread the kernel is launched with (``maxnreg``), which its partitions then share out:
the launch has 20 warps (the two consumers' warpgroups, the two producers' and the loader's warp,
which takes a warpgroup's place), so 96 is the most that fits an SM's 64K registers. The consumers
get 136 each, of which the sum takes BM / 4."""


def device_problem(device: torch.device) -> str:
    """Why the kernel cannot run on ``device`` with this Triton; "" if it can. It needs Gluon as
    Triton 3.6 has it, and a Hopper GPU (compute capability 9.0: wgmma)."""
    if problem := ring.gluon_problem(w4a16_wgmma_kernel):
        return problem
    if device.type != "cuda" or not torch.cuda.is_available() or torch.cuda.get_device_capability(device) != (9, 0):
        return f"it needs a Hopper GPU, compute capability 9.0 (x is on {device})"
    return ""


def problem(m: int, n: int, k: int, dtype: torch.dtype, device: torch.device) -> str:
    """Why the kernel cannot run an ``(m, n, k)`` GEMM with x of ``dtype`` on ``device``; "" if it can.
    Beyond ``device_problem``: N a multiple of 64 (a program's weight rows), K of a step, bf16 x."""
    if dtype != torch.bfloat16:
        return f"it needs bf16 x (got {dtype})"
    if n % BLOCK_N or k % STEP:
        return f"it needs N a multiple of 64 and K of {STEP} (got N = {n}, K = {k})"
    return device_problem(device)


def offered(bucket: int, n: int, k: int, dtype: torch.dtype, device: torch.device) -> bool:
    """Whether the tuner times the wgmma kernel for a key (M bucket ``bucket``)."""
    return MIN_BUCKET <= bucket <= MAX_BUCKET and not problem(bucket, n, k, dtype, device)


def x_descriptor(x: torch.Tensor, block_m: int) -> TensorDescriptor:
    """x's TMA descriptor, [block_m, 64] tiles. Needs unit K stride and 16-byte aligned rows."""
    return TensorDescriptor.from_tensor(x, [block_m, STEP], _X_TILE)


def code_descriptor(words: torch.Tensor) -> TensorDescriptor:
    """The codes' TMA descriptor: ``words`` the packed codes as int32 ``[N, K / 8]``, [64, 8] tiles."""
    return TensorDescriptor.from_tensor(words, [BLOCK_N, STEP // 8], _CODE_TILE)
