"""Launch the W4A16 GEMM kernel on validated, 2-D tensors (no argument checking here: see ``ops``)."""

from __future__ import annotations

import torch
import triton

from .kernels._w4a16_gemm import w4a16_gemm_kernel
from .tiling import TileConfig, default_config


def interpreter_active() -> bool:
    """True when the kernels were built for Triton's CPU interpreter (``TRITON_INTERPRET=1`` at import)."""
    return not isinstance(w4a16_gemm_kernel, triton.runtime.JITFunction)


def w4a16_gemm(
    x: torch.Tensor,
    packed: torch.Tensor,
    block_scale: torch.Tensor,
    global_scale: torch.Tensor,
    bias: torch.Tensor | None,
    config: TileConfig | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(x @ dequant(W)^T) * global_scale + bias`` for ``x[M, K]`` and linear-layout NVFP4 tensors.

    Writes ``out`` (``[M, N]`` in x's dtype, any strides) or a new contiguous tensor and returns
    it. Issues one launch and no host synchronization, so it can be captured in a CUDA graph.
    """
    m, k = x.shape
    n = packed.shape[0]
    if out is None:
        y = torch.empty((m, n), dtype=x.dtype, device=x.device)
    elif tuple(out.shape) != (m, n) or out.dtype != x.dtype or out.device != x.device:
        raise ValueError(f"w4a16_gemm: out must be {x.dtype} [{m}, {n}] on {x.device}, got "
                         f"{out.dtype} {tuple(out.shape)} on {out.device}")
    else:
        y = out
    if m == 0:
        return y
    cfg = config or default_config(m, n, k)
    grid = (triton.cdiv(m, cfg.block_m) * triton.cdiv(n, cfg.block_n),)
    w4a16_gemm_kernel[grid](
        x, packed, block_scale.view(torch.uint8), global_scale, bias if bias is not None else y, y,
        m, n, k,
        x.stride(0), x.stride(1), y.stride(0), y.stride(1),
        HAS_BIAS=bias is not None,
        DOT_F32=interpreter_active() and x.dtype == torch.bfloat16,
        BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k, GROUP_M=cfg.group_m,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )
    return y
