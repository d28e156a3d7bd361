"""Where Triton writes the compiled binaries of nvfp4_triton's kernels.

Rule: if the user chose a Triton cache folder (``TRITON_CACHE_DIR``, or ``triton.knobs.cache.dir``
set in code), Triton's own setting wins and nothing is redirected. Otherwise our kernels compile
into ``<cache root>/triton``, so a prewarmed cache holds both the tuned configs and the binaries,
and ``export`` ships both. The redirect is scoped to our own compilations; other Triton kernels in
the process (inductor's, for one) keep Triton's default folder.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from triton import knobs

from .store import ensure_root, warn_once


def user_chose_triton_cache() -> bool:
    return bool(os.environ.get("TRITON_CACHE_DIR")) or "dir" in knobs.cache.__dict__


def triton_dir(root: Path) -> Path:
    return root / "triton"


@contextlib.contextmanager
def compile_scope(root: Path) -> Iterator[None]:
    """Run a first launch (which may compile) with Triton's cache pointed into ``root``."""
    if user_chose_triton_cache():
        yield
        return
    target = triton_dir(root)
    try:
        ensure_root(root)
        target.mkdir(exist_ok=True)
    except OSError as err:
        warn_once(f"nvfp4_triton cache: cannot use {target} for compiled kernels ({err}); "
                  "Triton's default cache folder is used")
        yield
        return
    with knobs.cache.scope():
        knobs.cache.dir = str(target)
        yield
