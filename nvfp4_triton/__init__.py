"""NVFP4 (4-bit E2M1 + FP8 block scales) linear layers as Triton kernels for GPUs without native FP4.

Public API:
    quantize, dequantize, NVFP4Weight   the format and its container
    nvfp4_linear                        the W4A16 op (a torch custom op)
    NVFP4Linear                         the nn.Module
    FP8Linear                           an nn.Module holding a weight converted to FP8 (resident="fp8")
    TileConfig, TwoPassConfig, Fp8Config  launch parameters of the GEMM strategies
    default_config                      the deterministic config used without autotuning
    scratch_bytes, set_scratch_limit    the two-pass strategy's scratch buffer

Names are imported on first use, so that a program (or ``python -m nvfp4_triton.demo``) can
still choose Triton's CPU interpreter (``TRITON_INTERPRET=1``) after importing the package
and before the kernels are built.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "BLOCK_SIZE": "format",
    "NVFP4Weight": "weight",
    "quantize": "weight",
    "dequantize": "weight",
    "nvfp4_linear": "ops",
    "NVFP4Linear": "module",
    "FP8Linear": "module",
    "fp8": None,
    "TileConfig": "tiling",
    "GemvConfig": "tiling",
    "Fp8Config": "tiling",
    "TwoPassConfig": "tiling",
    "default_config": "tiling",
    "scratch_bytes": "scratch",
    "set_scratch_limit": "scratch",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        if _EXPORTS[name] is None:  # a submodule
            return importlib.import_module(f".{name}", __name__)
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
