"""The dense-weight scratch buffer of the two-pass strategy: one per (device, stream), bounded and visible.
Beside it, per (device, stream), the split-K launches' per-tile arrival counters (a few KB).

Two-pass runs dequantize an NVFP4 weight into this buffer, then hand it to cuBLAS. The buffer
is reused by every layer on the same stream (calls on one stream run in order) and grows to the
largest weight it has served. Its size is ``scratch_bytes()``.

While a CUDA graph is being captured, each call gets a fresh ``[n, k]`` tensor instead, from the
graph's memory pool, and drops it once its GEMM is enqueued. The allocator hands the freed block
to the capture's next two-pass call, so a graph's pool holds about one dense weight, and replays
keep the captured order, which makes that reuse safe. (A buffer of this module would tie every
graph to memory that eager calls on the same stream may overwrite at any time.) A layer that
torch.compile traces (``inline.w4a16_linear_inline``) asks for a fresh tensor too: it becomes one of
inductor's buffers, which the generated code frees after the GEMM. The limit below still decides
whether two-pass may run there.

The buffers themselves always come from torch's ordinary memory pool, also when the first call
on a stream is the warm-up run of ``torch.compile(mode="reduce-overhead")``, which sends the
calling thread's allocations into the graph's private pool (see ``_allocate``).

Limit: ``NVFP4_TRITON_SCRATCH_MB`` (MiB; ``0`` turns the two-pass strategy off) or
``set_scratch_limit(nbytes)``, which wins over the variable and applies at once. The variable is
read only when a weight shape first asks for the buffer (reading the environment on every call
cost measurable host time), so set it before the first call. No limit by default: FLUX.1-dev's
largest weight needs 108 MiB in bf16.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import torch
import triton

SCRATCH_ENV = "NVFP4_TRITON_SCRATCH_MB"
_UNSET = object()
_override: object = _UNSET
_buffers: dict[tuple, torch.Tensor] = {}
_views: dict[tuple, torch.Tensor] = {}  # (buffer key, n, k, dtype) -> its view: slicing per call costs host time
_counters: dict[tuple, torch.Tensor] = {}


def scratch_limit() -> int | None:
    """Bytes one buffer may take (None: no limit; 0: two-pass off)."""
    if _override is not _UNSET:
        return _override  # type: ignore[return-value]
    text = os.environ.get(SCRATCH_ENV, "").strip()
    if not text:
        return None
    try:
        return max(0, int(float(text) * 2**20))
    except ValueError:
        raise ValueError(f"{SCRATCH_ENV} must be a number of MiB (0 turns two-pass off), got {text!r}") from None


def set_scratch_limit(nbytes: int | None) -> None:
    """Cap each scratch buffer at ``nbytes`` (0: no two-pass; None: no cap). Buffers over the cap are freed."""
    global _override
    if nbytes is not None and nbytes < 0:
        raise ValueError(f"set_scratch_limit: nbytes must be >= 0 or None, got {nbytes}")
    _override = nbytes
    for key, buf in list(_buffers.items()):
        if nbytes is not None and buf.numel() > nbytes:
            _drop(key)


def _admits(nbytes: int) -> bool:
    limit = scratch_limit()
    return limit is None or nbytes <= limit


def admits(n: int, k: int, dtype: torch.dtype) -> bool:
    """Whether the limit lets a dense ``[n, k]`` weight in ``dtype`` into a buffer."""
    return _admits(n * k * dtype.itemsize)


def scratch_bytes() -> int:
    """Bytes held by all scratch buffers of this process, split-K counters included."""
    return sum(b.numel() for b in _buffers.values()) + sum(c.numel() * c.element_size() for c in _counters.values())


def release_scratch() -> None:
    """Free every scratch buffer (the next two-pass or split-K call allocates again)."""
    _buffers.clear()
    _views.clear()
    _counters.clear()


def release_stream(stream: torch.cuda.Stream) -> None:
    """Free the buffers of one stream (the tuner's short-lived timing streams)."""
    key = (stream.device.index, stream.cuda_stream)
    _drop(key)
    _counters.pop(key, None)


def _drop(key: tuple) -> None:
    """Forget one buffer and every view into it, so that its memory is freed."""
    _buffers.pop(key, None)
    for view_key in [v for v in _views if v[0] == key]:
        del _views[view_key]


def dense_buffer(n: int, k: int, dtype: torch.dtype, device: torch.device, fresh: bool = False) -> torch.Tensor | None:
    """An ``[n, k]`` view of this stream's buffer (during graph capture, or with ``fresh``: a new tensor),
    or None when the limit forbids it."""
    need = n * k * dtype.itemsize
    if fresh or _capturing(device):
        return torch.empty((n, k), dtype=dtype, device=device) if _admits(need) else None
    key = _stream_key(device)
    view = _views.get((key, n, k, dtype))
    if view is not None:  # admitted by the limit when made; a lower limit since then dropped it
        return view
    if not _admits(need):
        return None
    buf = _buffers.get(key)
    if buf is None or buf.numel() < need:
        _drop(key)  # free the smaller one first
        buf = _buffers[key] = _allocate(need, device)
    view = _views[(key, n, k, dtype)] = buf[:need].view(dtype).view(n, k)
    return view


def tile_counters(count: int, device: torch.device, fresh: bool = False) -> torch.Tensor:
    """At least ``count`` int32 zeros: a split-K launch's per-tile arrival counters
    (``kernels._w4a16_gemm.splitk_arrive``), which every launch leaves zero again. This stream's
    buffer, grown when a launch needs more; during graph capture or with ``fresh``, a new tensor,
    as in :func:`dense_buffer`. Not under the scratch limit: 4 bytes an output tile."""
    if fresh or _capturing(device):
        return torch.zeros(count, dtype=torch.int32, device=device)
    key = _stream_key(device)
    counters = _counters.get(key)
    if counters is None or counters.numel() < count:
        counters = _counters[key] = _allocate(4 * count, device).view(torch.int32).zero_()
    return counters


def _capturing(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_current_stream_capturing()


def _stream_key(device: torch.device) -> tuple:
    """What this module keeps buffers by: the device and its current stream."""
    if device.type != "cuda":
        return device.type, 0
    index = device.index if device.index is not None else torch.cuda.current_device()  # "cuda" alone
    return index, triton.runtime.driver.active.get_current_stream(index)  # a raw stream handle


def _allocate(nbytes: int, device: torch.device) -> torch.Tensor:
    """``nbytes`` of memory on ``device`` for the current stream, outside any CUDA-graph pool.

    While inductor's CUDA-graph trees warm up a graph, every allocation of the calling thread
    goes to that graph's private pool, and torch then refuses to record the graph ("tensor(s) in
    the cudagraph pool not tracked as outputs"): a buffer kept across calls must not live there.
    That routing is per thread, so a helper thread allocates it, on the same stream.
    """
    if device.type != "cuda":
        return torch.empty(nbytes, dtype=torch.uint8, device=device)
    stream = torch.cuda.current_stream(device)

    def on_stream() -> torch.Tensor:
        with torch.cuda.stream(stream):
            return torch.empty(nbytes, dtype=torch.uint8, device=device)

    with ThreadPoolExecutor(max_workers=1) as helper:
        return helper.submit(on_stream).result()
