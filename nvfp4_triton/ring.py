"""When the ring kernel (``kernels._w4a16_ring``, ``RingConfig``) can run, and its launch constants.

The kernel is written in Gluon, Triton's experimental lower-level language, as Triton 3.6 has it;
where this Triton lacks that API the strategy is not offered. It converts the E4M3 block scales with
``cvt.rn.f16x2.e4m3x2`` (sm_89 and newer) and multiplies bf16 on mma.sync, so it needs an Ada or
Hopper GPU and bf16 activations. The tuner times it beside the other strategies for small M
(``offered``); ``gemm`` launches it.
"""

from __future__ import annotations

import torch
import triton

try:
    from .kernels._w4a16_ring import TRIP, w4a16_ring_kernel
except ImportError:  # no Gluon, or another version of its API
    TRIP, w4a16_ring_kernel = 256, None

MAX_BUCKET = 16
"""Largest M bucket the tuner times the ring kernel for: M <= 22, within the kernel's 32 columns."""

MIN_TRITON = (3, 6)
"""The Gluon API the kernel is written against."""


def _triton_version() -> tuple[int, ...]:
    return tuple(int(part) for part in triton.__version__.split(".")[:2] if part.isdigit())


def gluon_problem(kernel) -> str:
    """Why a Gluon ``kernel`` (None where its import failed) cannot run with this Triton; "" if it can."""
    if kernel is None or _triton_version() < MIN_TRITON:
        return f"it needs Gluon as Triton {'.'.join(map(str, MIN_TRITON))} has it (this is Triton {triton.__version__})"
    return ""


def device_problem(device: torch.device) -> str:
    """Why the kernel cannot run on ``device`` with this Triton; "" if it can. It needs Gluon as
    Triton 3.6 has it, and a CUDA GPU of compute capability 8.9 or newer."""
    if problem := gluon_problem(w4a16_ring_kernel):
        return problem
    if device.type != "cuda" or not torch.cuda.is_available() or torch.cuda.get_device_capability(device) < (8, 9):
        return f"it needs a CUDA GPU of compute capability 8.9 or newer (x is on {device})"
    return ""


def problem(m: int, n: int, k: int, dtype: torch.dtype, device: torch.device) -> str:
    """Why the kernel cannot run an ``(m, n, k)`` GEMM with x of ``dtype`` on ``device``; "" if it can.
    Beyond ``device_problem``: M <= 32, N a multiple of 64 (its smallest tile), K of a trip, bf16 x."""
    if dtype != torch.bfloat16:
        return f"it needs bf16 x (got {dtype})"
    if m > 32 or n % 64 or k % TRIP:
        return f"it needs M <= 32, N a multiple of 64 and K of {TRIP} (got M = {m}, N = {n}, K = {k})"
    return device_problem(device)


def offered(bucket: int, n: int, k: int, dtype: torch.dtype, device: torch.device) -> bool:
    """Whether the tuner times the ring kernel for a key (M bucket ``bucket``: M <= 1.5 x bucket)."""
    return bucket <= MAX_BUCKET and not problem(bucket, n, k, dtype, device)


def columns(m: int) -> int:
    """The kernel's columns (its ``BM``) for x with ``m`` rows: 8, 16 or 32."""
    return 8 if m <= 8 else 16 if m <= 16 else 32


def layouts(block_n: int, num_warps: int, block_m: int) -> dict:
    """The kernel's layout bases (as hashable tuples) for ``block_n`` weight rows, ``num_warps`` warps
    and ``block_m`` (8, 16 or 32) columns of x.

    Words ``[BN, t, w]``: a thread's words as registers, then its rows g + 8 and the repetitions
    ``16 * num_warps`` rows apart (mma.sync's layout repeats so); warps 16 rows apart. x's half trip
    ``[BM, 128]``: a thread's 32 neighbouring K, and its rows g + 8 (g + 16, g + 24) where BM has them;
    x's trip as the ring keeps it, ``[4 BM, 64]`` (row 4m + t): a thread's 64 K, and its rows
    4(g + 8) + t and so on.
    """
    rows = [(8, 0, 0)]
    rep = 16 * num_warps
    while rep < block_n:
        rows.append((rep, 0, 0))
        rep *= 2
    x_rows = tuple(8 << i for i in range(block_m.bit_length() - 4))  # rows g + 8, g + 16: by registers
    x_half = ((0, 1), (0, 2), (0, 4), (0, 8), (0, 16)) + tuple((r, 0) for r in x_rows)
    return {"WORD_REGS": ((0, 0, 1), (0, 0, 2), *rows), "TRIP_WORD_REGS": ((0, 0, 1), (0, 0, 2), (0, 0, 4), *rows),
            "WARP_BASES": tuple((16 << i, 0, 0) for i in range(num_warps.bit_length() - 1)),
            "X_REGS": x_half, "X_TRIP_REGS": x_half[:5] + ((0, 32),) + tuple((4 * r, 0) for r in x_rows)}
