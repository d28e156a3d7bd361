"""Test set-up: Triton's interpreter on machines without CUDA, the `gpu` marker, hypothesis profiles."""

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

# Must happen before nvfp4_triton's kernels are imported: with no CUDA device, the same
# @triton.jit kernels run on CPU tensors through Triton's interpreter.
HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

settings.register_profile(
    "default",
    deadline=None,  # the interpreter and first-call compilation make timings meaningless
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
# CI draws the same examples every run (a submission must not fail on a new random draw);
# local runs draw fresh ones, which is where new counterexamples come from.
settings.register_profile("ci", parent=settings.get_profile("default"), derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default"))


def pytest_collection_modifyitems(config, items):
    if HAS_CUDA:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own kernel cache folder (also seen by the subprocesses it starts).

    Autotuning is off unless a test turns it on: kernel tests meet hundreds of shapes, and
    benchmarking each would take minutes on a GPU.
    """
    root = tmp_path_factory.mktemp("nvfp4_cache")
    monkeypatch.setenv("NVFP4_TRITON_CACHE_DIR", str(root))
    monkeypatch.setenv("NVFP4_TRITON_AUTOTUNE", "0")
    return root


@pytest.fixture(scope="session")
def device() -> torch.device:
    """Where kernel tests run: the GPU when there is one, else the CPU through the interpreter."""
    return torch.device("cuda" if HAS_CUDA else "cpu")
