"""NVFP4 (4-bit E2M1 + FP8 block scales) linear layers as Triton kernels for GPUs without native FP4.

Public API:
    quantize, dequantize, NVFP4Weight   the format and its container
    nvfp4_linear                        the W4A16 op (a torch custom op)
    NVFP4Linear                         the nn.Module
"""

from .format import BLOCK_SIZE
from .module import NVFP4Linear
from .ops import nvfp4_linear
from .tiling import TileConfig, default_config
from .weight import NVFP4Weight, dequantize, quantize

__version__ = "0.1.0"

__all__ = [
    "BLOCK_SIZE",
    "NVFP4Linear",
    "NVFP4Weight",
    "TileConfig",
    "default_config",
    "dequantize",
    "nvfp4_linear",
    "quantize",
    "__version__",
]
