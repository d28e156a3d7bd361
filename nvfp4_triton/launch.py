"""What every kernel launcher shares: interpreter detection and compile-once bookkeeping.

The first launch of each (config, layout) runs inside ``compile_scope``, so that whatever
Triton compiles for it lands in the nvfp4_triton cache; later launches skip the context.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import torch
import triton

from .autotune import compile_scope
from .kernels._w4a16_gemm import w4a16_gemm_kernel

_launched: set[tuple] = set()


_INTERPRETED = not isinstance(w4a16_gemm_kernel, triton.runtime.JITFunction)


def interpreter_active() -> bool:
    """True when the kernels were built for Triton's CPU interpreter (``TRITON_INTERPRET=1`` at import).

    A constant decided at import: torch.compile can trace a constant, not an isinstance test on a kernel.
    """
    return _INTERPRETED


def cdiv(a: int, b: int) -> int:
    """``ceil(a / b)`` for grids. (``triton.cdiv`` is a JIT function: calling it from Python costs ~7 us.)"""
    return -(-a // b)


def launch_once_compiled(launch: Callable[[], None], x: torch.Tensor, *layout: Hashable) -> None:
    """Call ``launch``; the first time for this (layout, x's device, dtype, strides, alignment), in the cache scope."""
    key = (*layout, x.device.index, x.dtype, x.stride(-1) == 1, x.data_ptr() % 16 == 0)
    if key in _launched or x.device.type != "cuda":
        launch()
    else:
        with compile_scope():
            launch()
        _launched.add(key)
