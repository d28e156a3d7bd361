"""Launchers of the run-time activation quantizers (kernels in ``kernels._act_quant``).

- :func:`quantize_activation_nvfp4`: W4A4 emulation. NVFP4 codes and per-16 E4M3 scales under
  the checkpoint's static ``input_scale``, exactly as ``format.quantize_activation`` computes them.
- :func:`quantize_rows_fp8`: the W4A8 path. E4M3 values with one scale per token, exactly as
  ``fp8.quantize_rows`` computes them.
"""

from __future__ import annotations

import torch

from . import format as fmt
from .kernels._act_quant import fp8_row_quant_kernel, nvfp4_act_quant_kernel
from .launch import Kernel, cdiv, interpreter_active

_nvfp4_quant = Kernel(nvfp4_act_quant_kernel)
_fp8_quant = Kernel(fp8_row_quant_kernel)
_NVFP4_TILE = (16, 128)  # (rows, columns) per program: 8 scale blocks of 16 per row
ONE_TILE_MAX_K = 16384
"""Longest row the FP8 quantizer holds in registers and reads once (FLUX's longest is 15360). On
an H200 that cut its time per FLUX step from 10.3 to 7.8 ms (bench/RESULTS.md, session 6)."""


def quantize_activation_nvfp4(
    x: torch.Tensor, input_scale: torch.Tensor, codes: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """NVFP4-quantize ``x[M, K]`` under the global scale ``input_scale`` (float32 scalar tensor).

    Returns ``(xq, packed, block_scale)``: ``xq`` is ``e2m1 * e4m3`` in x's dtype (exact there;
    the global scale is left to the GEMM). With ``codes=True`` also the packed codes (uint8
    ``[M, K/2]``, ModelOpt's nibble order) and block scales (float8_e4m3fn ``[M, K/16]``); else None.
    """
    x = x if x.stride(1) == 1 else x.contiguous()
    m, k = x.shape
    xq = torch.empty_like(x, memory_format=torch.contiguous_format)
    # Without codes the kernel writes no codes or scales: xq stands in for their pointers.
    packed = torch.empty((m, k // 2), dtype=torch.uint8, device=x.device) if codes else xq
    scale = torch.empty((m, k // fmt.BLOCK_SIZE), dtype=torch.uint8, device=x.device) if codes else xq
    block_m, block_k = _NVFP4_TILE
    if m:
        _nvfp4_quant((cdiv(m, block_m), cdiv(k, block_k)), x, input_scale, xq, packed, scale, m, k, x.stride(0),
                     WRITE_CODES=codes, BLOCK_M=block_m, BLOCK_K=block_k, num_warps=4)
    if not codes:
        return xq, None, None
    return xq, packed, scale.view(torch.float8_e4m3fn)


def quantize_rows_fp8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token E4M3 quantization of ``x[M, K]`` (``fp8.quantize_rows``'s math): ``(q [M, K], scale [M, 1])``."""
    x = x if x.stride(1) == 1 else x.contiguous()
    m, k = x.shape
    xq = torch.empty((m, k), dtype=torch.float8_e4m3fn, device=x.device)
    row_scale = torch.empty((m, 1), dtype=torch.float32, device=x.device)
    row_tile = 1 << (k - 1).bit_length()  # next power of two (triton's is a slow JIT call)
    one_tile = row_tile <= ONE_TILE_MAX_K
    if m:
        _fp8_quant((m,), x, xq.view(torch.uint8), row_scale, k, x.stride(0), BIT_MATH=interpreter_active(),
                   BLOCK_K=row_tile if one_tile else 2048, ONE_TILE=one_tile,
                   num_warps=4 if row_tile <= 4096 or not one_tile else 8)
    return xq, row_scale
