"""Run the W4A16 GEMM on validated, 2-D tensors (no argument checking here: see ``ops``).

Per shape, the tuner (``autotune``) picks a strategy and its config: the fused kernel
(``TileConfig``) or two-pass, dequantize into the scratch buffer then cuBLAS (``TwoPassConfig``).
Once a key is known that is one dictionary lookup per call. The first launch of each
(key, config, layout) runs inside ``compile_scope`` so that whatever it compiles lands in the
nvfp4_triton cache.
"""

from __future__ import annotations

import torch
import triton

from . import scratch
from .autotune import TWO_PASS_CANDIDATES, Tuner, benchmark_ms, compile_scope, m_bucket
from .kernels._dequant import nvfp4_dequant_kernel
from .kernels._w4a16_gemm import w4a16_gemm_kernel
from .tiling import GemmConfig, TwoPassConfig, default_config

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
    config: GemmConfig | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(x @ dequant(W)^T) * global_scale + bias`` for ``x[M, K]`` and linear-layout NVFP4 tensors.

    Writes ``out`` (``[M, N]`` in x's dtype, any strides) or a new contiguous tensor and returns
    it. ``config`` overrides the tuned config. Once the shape's key is tuned this issues one
    launch (two for two-pass) and no host synchronization, so it can be captured in a CUDA graph.
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
        config = tuner.lookup(key) or _first_use(key, x, packed, scale_bits, global_scale, bias)
    layout = (config, x.device.index, x.dtype, bias is not None, x.stride(1) == 1, x.data_ptr() % 16 == 0, n, k)
    if layout in _launched or x.device.type != "cuda":
        _launch(config, x, packed, scale_bits, global_scale, bias, y)
    else:
        with compile_scope():
            _launch(config, x, packed, scale_bits, global_scale, bias, y)
        _launched.add(layout)
    return y


def _first_use(key: tuple, x, packed, scale_bits, global_scale, bias) -> GemmConfig:
    """Resolve a new key through the tuner, timing candidates on these very tensors if it must measure."""
    n, k = packed.shape[0], x.shape[1]
    scratch_out = torch.empty((x.shape[0], n), dtype=x.dtype, device=x.device)

    def bench(cfg: GemmConfig) -> float:
        with compile_scope():
            return benchmark_ms(lambda: _launch(cfg, x, packed, scale_bits, global_scale, bias, scratch_out))

    def two_pass_candidates() -> tuple:
        return TWO_PASS_CANDIDATES if scratch.dense_buffer(n, k, x.dtype, x.device) is not None else ()

    heuristic_only = x.device.type != "cuda" or interpreter_active()
    return tuner.resolve(key, bench, heuristic_only, two_pass_candidates)


def _launch(cfg: GemmConfig, x, packed, scale_bits, global_scale, bias, y) -> None:
    m, k = x.shape
    n = packed.shape[0]
    if isinstance(cfg, TwoPassConfig):
        w = scratch.dense_buffer(n, k, x.dtype, x.device)
        if w is not None:
            _two_pass(cfg, x, packed, scale_bits, global_scale, bias, y, w)
            return
        cfg = default_config(m, n, k)  # scratch capped or off since tuning: use the fused kernel
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


def _two_pass(cfg: TwoPassConfig, x, packed, scale_bits, global_scale, bias, y, w) -> None:
    """Dequantize the weight (global scale folded in, rounded once to x's dtype) into ``w``, then cuBLAS."""
    n, k = w.shape
    grid = (triton.cdiv(n, cfg.block_n), triton.cdiv(k, cfg.block_k))
    nvfp4_dequant_kernel[grid](packed, scale_bits, global_scale, w, n, k,
                               BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k, num_warps=cfg.num_warps)
    if bias is None:
        torch.mm(x, w.t(), out=y)
    else:
        torch.addmm(bias.to(x.dtype), x, w.t(), out=y)
