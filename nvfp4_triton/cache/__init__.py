"""The on-disk kernel cache: tuned configs and compiled kernels, keyed by environment.

``python -m nvfp4_triton.cache {info,list,clear,export,import}`` manages it; the functions
below are what the CLI calls. See ``store`` for the layout and the write rules, ``keys`` for
what an entry depends on, ``compiled`` for where Triton's binaries go.
"""

from .keys import digest, environment, kernel_source_hash
from .store import CACHE_DIR_ENV, TuningStore, cache_root

__all__ = ["CACHE_DIR_ENV", "TuningStore", "cache_root", "digest", "environment", "kernel_source_hash"]
