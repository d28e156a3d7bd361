"""What a tuned config depends on: the environment key of the on-disk cache.

A tuned config is valid only for the exact kernel source, compiler and GPU that measured it.
The key holds all of them; entries live under a directory named by the key's digest, so a
change to any field starts an empty directory instead of reusing an old entry.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import torch
import triton

SCHEMA_VERSION = 2  # 2: tuning times GPU time (CUDA-graph replays), not host-inclusive calls
KERNELS_DIR = Path(__file__).resolve().parent.parent / "kernels"


@functools.lru_cache(maxsize=None)
def kernel_source_hash() -> str:
    """sha256 (16 hex digits) over the source of every kernel module, in name order."""
    h = hashlib.sha256()
    for path in sorted(KERNELS_DIR.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def environment(device_index: int | None = None) -> dict:
    """The cache key of this process on a CUDA device (the current one by default), or of the CPU."""
    from .. import __version__

    if torch.cuda.is_available():
        index = torch.cuda.current_device() if device_index is None else device_index
        major, minor = torch.cuda.get_device_capability(index)
        gpu, capability = torch.cuda.get_device_name(index), f"{major}.{minor}"
    else:
        gpu, capability = "none", "none"
    return {
        "schema": SCHEMA_VERSION,
        "nvfp4_triton": __version__,
        "kernel_source": kernel_source_hash(),
        "triton": triton.__version__,
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "none",
        "gpu": gpu,
        "capability": capability,
    }


def digest(env: dict) -> str:
    """Short stable name of an environment key (16 hex digits)."""
    return hashlib.sha256(json.dumps(env, sort_keys=True).encode()).hexdigest()[:16]
