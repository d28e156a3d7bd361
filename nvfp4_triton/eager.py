"""A layer's GEMMs made ready for eager calls, one per layout of x: the host time of an eager layer.

A FLUX step calls its NVFP4 layers about 500 times, and in eager mode each call used to walk
the whole dispatch before its first launch: argument checks, the op's routing, the tuner's key,
the strategy's closures. On an H200's host that came to 50-150 us a call for `activation="fp8"`,
where `F.linear` takes 15-20 (bench/RESULTS.md, session 18), so eager FP8 models waited on
Python. A layer keeps what its first call with a given x layout made (``ops.eager_runner``,
``gemm.Runner``): a function that checks nothing and only launches. The layer clears it whenever
its weights, bias or settings change.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Run = Callable[[torch.Tensor], torch.Tensor]


class EagerPlans:
    """Ready GEMMs by x's layout (shape, strides, dtype, device), at most ``LIMIT`` of them.

    Only plain tensors qualify (``eligible``): subclasses and tensors without values go through
    torch's dispatcher. Nothing made while a CUDA graph is captured is kept: the tuner gives a
    shape first met there its untuned default and does not remember it.
    """

    LIMIT = 16
    """Layouts kept per layer; the oldest is dropped beyond (a model fed ever new shapes must not
    grow without bound, and each entry holds views of the layer's tensors)."""

    def __init__(self) -> None:
        self._runs: dict[tuple, Run] = {}

    @staticmethod
    def eligible(x: object) -> bool:
        return type(x) is torch.Tensor and not torch.compiler.is_compiling()

    def get(self, x: torch.Tensor) -> Run | None:
        return self._runs.get((x.shape, x.stride(), x.dtype, x.device))

    def keep(self, x: torch.Tensor, run: Run) -> Run:
        """Remember ``run`` for x's layout (unless a graph is being captured) and return it."""
        if x.is_cuda and torch.cuda.is_current_stream_capturing():
            return run
        if len(self._runs) >= self.LIMIT:
            del self._runs[next(iter(self._runs))]
        self._runs[(x.shape, x.stride(), x.dtype, x.device)] = run
        return run

    def clear(self) -> None:
        self._runs.clear()

    @staticmethod
    def forget(layer: torch.nn.Module) -> None:
        """Drop the plans of ``layer`` (its weights, bias or settings changed); a no-op before it has any."""
        plans = layer.__dict__.get("_eager")
        if plans is not None:
            plans.clear()

    def __getstate__(self) -> dict:
        return {}  # a copied or pickled layer starts without plans: they hold the original's tensors

    def __setstate__(self, state: dict) -> None:
        self._runs = {}

    def __len__(self) -> int:
        return len(self._runs)
