"""Launchers of the run-time activation quantizers (kernels in ``kernels._act_quant``).

- :func:`quantize_activation_nvfp4`: W4A4 emulation. NVFP4 codes and per-16 E4M3 scales under
  the checkpoint's static ``input_scale``, exactly as ``format.quantize_activation`` computes them.
- :func:`quantize_rows_fp8`: the W4A8 path. E4M3 values with one scale per token, exactly as
  ``fp8.quantize_rows`` computes them. :func:`fp8_operands` does the same and dequantizes the
  weight to E4M3 in the same launch, for W4A8 calls that quantize x themselves (rows up to
  ``ONE_LAUNCH_MAX_K`` long).
"""

from __future__ import annotations

import torch

from . import format as fmt
from .kernels._act_quant import fp8_row_quant_kernel, nvfp4_act_quant_kernel
from .kernels._fp8_operands import fp8_operands_kernel
from .launch import Kernel, cdiv, interpreter_active
from .tiling import Fp8Config

_nvfp4_quant = Kernel(nvfp4_act_quant_kernel)
_fp8_quant = Kernel(fp8_row_quant_kernel)
_fp8_both = Kernel(fp8_operands_kernel)
_NVFP4_TILE = (16, 128)  # (rows, columns) per program: 8 scale blocks of 16 per row
ONE_TILE_MAX_K = 16384
"""Longest row the FP8 quantizer holds in registers and reads once (FLUX's longest is 15360). On
an H200 that cut its time per FLUX step from 10.3 to 7.8 ms (bench/RESULTS.md, session 6)."""
ONE_LAUNCH_MAX_K = 4096
"""Longest row for which :func:`fp8_operands` quantizes x and dequantizes the weight in one launch.
Longer rows need the quantizer's 8-warp tile, and one grid runs every program with the warps and
registers of its costliest branch: for 12288-long rows 80 registers a thread, where the weight
tiles alone take 32 with 4 warps (``bench/kernel_asm.py fp8-operands``). By those counts an SM
holds 24 warps of the one grid against 64 of the dequantization alone (arithmetic, not measured).
On an H200 one launch saved 2.5 us at M = 512, K = 3072, and nothing at K = 12288
(bench/RESULTS.md, session 12)."""


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
    x, xq, row_scale = _fp8_rows(x)
    m, k = x.shape
    row_tile, one_tile, num_warps = row_quant_plan(k)
    if m:
        _fp8_quant((m,), x, xq.view(torch.uint8), row_scale, k, x.stride(0), BIT_MATH=interpreter_active(),
                   BLOCK_K=row_tile, ONE_TILE=one_tile, num_warps=num_warps)
    return xq, row_scale


def fp8_operands(x: torch.Tensor, w8: torch.Tensor, packed: torch.Tensor, scale_bits: torch.Tensor,
                 multipliers: torch.Tensor, cfg: Fp8Config) -> tuple[torch.Tensor, torch.Tensor]:
    """``quantize_rows_fp8(x)``, and the E4M3 weight written into ``w8[N, K]`` as ``gemm.dequantize_into``
    writes it with per-row ``multipliers`` and ``cfg``'s tile, in one launch (``kernels._fp8_operands``).

    Meant for rows up to ``ONE_LAUNCH_MAX_K`` long; longer ones work, but run slower than two launches.
    """
    x, xq, row_scale = _fp8_rows(x)
    m, k = x.shape
    n = w8.shape[0]
    row_tile, one_tile, row_warps = row_quant_plan(k)
    grid = (m + cdiv(n, cfg.block_n) * cdiv(k, cfg.block_k),)
    _fp8_both(grid, x, xq.view(torch.uint8), row_scale, packed, scale_bits, multipliers, w8.view(torch.uint8),
              m, n, k, x.stride(0), BIT_MATH=interpreter_active(), ROW_TILE=row_tile, ONE_TILE=one_tile,
              BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k, num_warps=max(row_warps, cfg.num_warps))
    return xq, row_scale


def _fp8_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x with unit K stride, empty FP8 rows [M, K], empty row scales [M, 1])``."""
    x = x if x.stride(1) == 1 else x.contiguous()
    m, k = x.shape
    return (x, torch.empty((m, k), dtype=torch.float8_e4m3fn, device=x.device),
            torch.empty((m, 1), dtype=torch.float32, device=x.device))


def row_quant_plan(k: int) -> tuple[int, bool, int]:
    """``(BLOCK_K, ONE_TILE, num_warps)`` of the FP8 row quantizer for rows of ``k`` elements."""
    row_tile = 1 << (k - 1).bit_length()  # next power of two (triton's is a slow JIT call)
    if row_tile <= ONE_TILE_MAX_K:
        return row_tile, True, 4 if row_tile <= 4096 else 8
    return 2048, False, 4
