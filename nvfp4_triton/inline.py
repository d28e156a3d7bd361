"""Layers traced into torch.compile's graph instead of called as opaque ops (the default on a GPU).

In a compiled FLUX step the opaque ``ops`` cost 60-130 us more host time per call than an
``nn.Linear``, and compiled W4A16's speed follows that host time (bench/NOTES.md, session 9).
Traced, a layer's config is chosen once, while dynamo traces (``gemm.plan_gemm``), our kernels
become launches in inductor's generated code (``launch.Kernel`` records them for a fake tensor),
and cuBLAS's GEMMs are graph ops, as in the BF16 model. ``ops.call_op`` and ``ops.call_fp8_op``
route here when ``INLINE_COMPILED`` is on.
"""

from __future__ import annotations

import operator
import os
import warnings

import torch
from torch.utils._python_dispatch import _disable_current_modes

from .gemm import fp8_gemm, from_rows, plan_gemm, planned_config, to_rows, w4a8_gemm, w4a16_gemm
from .kernel_analysis import share_analysis
from .launch import interpreter_active

INLINE_ENV = "NVFP4_TRITON_INLINE_COMPILE"
INLINE_COMPILED = os.environ.get(INLINE_ENV, "").strip() != "0" and not interpreter_active()
"""On by default: under torch.compile on a GPU, trace the W4A16, W4A8 and FP8-resident layers
into the graph instead of calling the opaque ops (``w4a16_linear_inline``,
``w4a8_linear_inline``, ``fp8_linear_inline`` for long rows, and ``torch._scaled_mm`` itself in
``ops.call_fp8_op``).
``NVFP4_TRITON_INLINE_COMPILE=0``, set before importing nvfp4_triton, keeps the opaque ops. They
are kept too where this torch has no analysis for ``kernel_analysis`` to share (compiling FLUX
would take many minutes). On a full FLUX step on an H200 it cut the host time of both modes;
compiled W4A16 measured 0.951-0.973x of BF16 (opaque: 0.926-0.960x on earlier machine starts) and
fp8 1.22-1.25x (opaque: 1.26x in the same process; bench/RESULTS.md, session 11)."""


@torch.library.triton_op("nvfp4_triton::w4a16_linear_inline", mutates_args=())
def w4a16_linear_inline(
    x: torch.Tensor,
    packed: torch.Tensor,
    block_scale_bits: torch.Tensor,
    global_scale: torch.Tensor,
    bias: torch.Tensor | None,
    gelu: bool,
    plan: str,
) -> torch.Tensor:
    """``nvfp4_triton::w4a16_linear`` traced into the graph: the config named by ``plan`` runs as
    launches in inductor's generated code, and two-pass's cuBLAS GEMM as a graph op."""
    config = planned_config(plan)
    return from_rows(w4a16_gemm(to_rows(x), packed, block_scale_bits, global_scale, bias, config, gelu=gelu), x)


@torch.library.triton_op("nvfp4_triton::w4a8_linear_inline", mutates_args=())
def w4a8_linear_inline(
    x: torch.Tensor,
    packed: torch.Tensor,
    block_scale_bits: torch.Tensor,
    global_scale: torch.Tensor,
    multipliers: torch.Tensor,
    column_scale: torch.Tensor,
    bias: torch.Tensor | None,
    xq_bits: torch.Tensor | None,
    row_scale: torch.Tensor | None,
    plan: str,
) -> torch.Tensor:
    """``nvfp4_triton::w4a8_linear`` traced into the graph: the E4M3 dequantization becomes a launch
    in inductor's code, and so does the row quantizer unless x's FP8 rows are given;
    ``torch._scaled_mm`` is a graph op."""
    config = planned_config(plan)
    quantized = None if xq_bits is None else (xq_bits.view(torch.float8_e4m3fn), row_scale)
    return from_rows(w4a8_gemm(to_rows(x), packed, block_scale_bits, global_scale, multipliers, column_scale, bias,
                               config, quantized=quantized), x)


@torch.library.triton_op("nvfp4_triton::fp8_linear_inline", mutates_args=())
def fp8_linear_inline(
    x: torch.Tensor,
    w8_bits: torch.Tensor,
    column_scale: torch.Tensor,
    bias: torch.Tensor | None,
) -> torch.Tensor:
    """``nvfp4_triton::fp8_linear`` traced into the graph for rows that our row quantizer quantizes
    (``ops.GRAPH_QUANT_MAX_K``): the quantizer becomes a launch in inductor's code,
    ``torch._scaled_mm`` a graph op."""
    return from_rows(fp8_gemm(to_rows(x), w8_bits.view(torch.float8_e4m3fn), column_scale, bias), x)


@torch.compiler.assume_constant_result
def _analysis_shared() -> bool:
    """``kernel_analysis.share_analysis()``, run while dynamo traces (it patches a torch module).
    Without it torch analyses our kernels at every call site: minutes for FLUX."""
    if share_analysis():
        return True
    warnings.warn("nvfp4_triton: this torch has no kernel analysis that nvfp4_triton.kernel_analysis can share; "
                  "compiled layers call the opaque ops instead of being traced into the graph", stacklevel=2)
    return False


@torch.compiler.assume_constant_result
def _plan(activation: str | None, m: int, n: int, k: int, dtype: torch.dtype, device: torch.device,
          bias_dtype: torch.dtype | None) -> str:
    """``gemm.plan_gemm``, run once while dynamo traces, its result a constant of the graph."""
    with _disable_current_modes():  # tuning needs real tensors, whatever tracing mode is active
        return plan_gemm(activation, m, n, k, dtype, device, bias_dtype)


def call_planned(inline_op, activation: str | None, x: torch.Tensor, args: tuple,
                 bias: torch.Tensor | None) -> torch.Tensor | None:
    """``inline_op(x, *args, plan)`` with the plan for x's shape (``args[0]``: the packed codes),
    or None where the opaque op must run: an empty x, or a torch whose analysis cannot be shared."""
    # operator.index specializes a dim compiled as dynamic (dynamo guards on its value): the
    # config depends on M. Another size then compiles another graph (up to dynamo's recompile
    # limit, after which the frame runs eagerly).
    m = _traceable_rows(x)
    if m is None:
        return None
    n, k = operator.index(args[0].shape[0]), operator.index(x.shape[-1])
    plan = _plan(activation, m, n, k, x.dtype, x.device, None if bias is None else bias.dtype)
    return inline_op(x, *args, plan)


def call_unplanned(inline_op, x: torch.Tensor, args: tuple) -> torch.Tensor | None:
    """``inline_op(x, *args)`` for a layer with no config to plan (``fp8_linear_inline``), or None
    where the opaque op must run, as in ``call_planned``. M is specialized there too: the GEMM's
    fast accumulation depends on it (``gemm.FAST_ACCUM_MIN_M``)."""
    return None if _traceable_rows(x) is None else inline_op(x, *args)


def _traceable_rows(x: torch.Tensor) -> int | None:
    """x's row count M, specialized to a constant, or None where the layer cannot be traced: an
    empty x, or a torch whose analysis cannot be shared."""
    m = operator.index(x.numel()) // operator.index(x.shape[-1])
    return m if m and _analysis_shared() else None
