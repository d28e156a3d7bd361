"""Launch the W4A16 GEMM kernel on validated, 2-D tensors (no argument checking here: see ``ops``).

Tile configs come from the tuner (``autotune``): one dictionary lookup per call once a key is
known. The first launch of each (key, config, layout) runs inside ``compile_scope`` so that
whatever it compiles lands in the nvfp4_triton cache.
"""

from __future__ import annotations

import torch
import triton

from .autotune import Tuner, benchmark_ms, compile_scope, m_bucket
from .kernels._w4a16_gemm import w4a16_gemm_kernel
from .tiling import TileConfig

tuner = Tuner("w4a16_gemm")
_launched: set[tuple] = set()


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
    it. ``config`` overrides the tuned tile config. Once the shape's key is tuned, this issues
    one launch and no host synchronization, so it can be captured in a CUDA graph.
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
    scale_bits = block_scale.view(torch.uint8)
    if config is None:
        key = (x.device.index, x.dtype, m_bucket(m), n, k, bias is not None)
        config = tuner.lookup(key)
        if config is None:
            scratch = torch.empty_like(y)

            def bench(cfg: TileConfig) -> float:
                with compile_scope():
                    return benchmark_ms(lambda: _launch(cfg, x, packed, scale_bits, global_scale, bias, scratch))

            heuristic_only = x.device.type != "cuda" or interpreter_active()
            config = tuner.resolve(key, bench, heuristic_only)
    layout = (config, x.device.index, x.dtype, bias is not None, x.stride(1) == 1, x.data_ptr() % 16 == 0, n, k)
    if layout in _launched or x.device.type != "cuda":
        _launch(config, x, packed, scale_bits, global_scale, bias, y)
    else:
        with compile_scope():
            _launch(config, x, packed, scale_bits, global_scale, bias, y)
        _launched.add(layout)
    return y


def _launch(cfg: TileConfig, x, packed, scale_bits, global_scale, bias, y) -> None:
    m, k = x.shape
    n = packed.shape[0]
    grid = (triton.cdiv(m, cfg.block_m) * triton.cdiv(n, cfg.block_n),)
    w4a16_gemm_kernel[grid](
        x, packed, scale_bits, global_scale, bias if bias is not None else y, y,
        m, n, k,
        x.stride(0), x.stride(1), y.stride(0), y.stride(1),
        HAS_BIAS=bias is not None,
        DOT_F32=interpreter_active() and x.dtype == torch.bfloat16,
        BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k, GROUP_M=cfg.group_m,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )
