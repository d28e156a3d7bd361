"""Environment for the Python subprocesses that tests start: this checkout first on the import path."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def python_env(**extra: str) -> dict:
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path, **extra)
    env.pop("TRITON_CACHE_DIR", None)  # compiled kernels belong in the test's private cache
    return env
