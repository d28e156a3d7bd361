"""Choose a strategy and its config per GEMM key by measurement on first use, and remember it on disk.

A key is (kernel, N, K, M bucket, activation dtype, bias or not, device). The first call with
a new key benchmarks a pruned candidate list (pruned by shape and by the device's shared
memory) and keeps the fastest; the result goes to the on-disk cache (``nvfp4_triton.cache``),
so later processes only read it. Later calls in the same process do one dictionary lookup: no
host synchronization and no allocation, so they can be captured in CUDA graphs.

M bucket: M rounded to the nearest power of two on a log scale, ``2 ** round(log2(M))``.
4096 and 4100 share bucket 4096; 16 and 4096 do not; 3072 and 4608 tune as 4096.

Timings are GPU time (CUDA-graph replays, see ``benchmark_ms``).

``NVFP4_TRITON_AUTOTUNE=0`` never benchmarks: every key gets the tuner's default
(``tiling.default_config``, or ``default_fp8_config`` for ``activation="fp8"``), a
deterministic function of the shape. The same happens under Triton's interpreter, on the CPU,
and (without remembering it) while a CUDA graph is being captured.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import triton

from . import ring, scratch, wgmma
from .cache import compiled
from .cache.keys import environment
from .cache.store import TuningStore, cache_root, warn_once
from .tiling import (MIN_BLOCK_K, Fp8Config, GemmConfig, GemvConfig, RingConfig, TileConfig, TwoPassConfig, WgmmaConfig,
                     config_from_dict, config_to_dict, default_config)

AUTOTUNE_ENV = "NVFP4_TRITON_AUTOTUNE"
BENCH_WARMUP_MS = 5
BENCH_REP_MS = 25
_LAUNCH_ERRORS = (triton.runtime.errors.OutOfResources, triton.compiler.errors.CompilationError, RuntimeError)


def m_bucket(m: int) -> int:
    """The M that a problem with ``m`` rows is tuned as (see the module docstring)."""
    return 1 << max(0, round(math.log2(m)))


def autotune_enabled() -> bool:
    return os.environ.get(AUTOTUNE_ENV, "1").strip().lower() not in ("0", "false", "off", "no")


def shared_memory_estimate(cfg: TileConfig) -> int:
    """Bytes of shared memory the W4A16 kernel needs: pipelined x/codes/scales plus one dequantized tile."""
    per_stage = cfg.block_m * cfg.block_k * 2 + cfg.block_n * cfg.block_k // 2 + cfg.block_n * cfg.block_k // 16
    return cfg.num_stages * per_stage + cfg.block_n * cfg.block_k * 2


_SMALL_M = [(64, 64, 4, 1), (64, 128, 4, 1), (128, 128, 4, 1)]
"""Fused (block_n, block_k, warps, stages) at M <= 16, each also split in K (``_SPLITS``): the fastest
on an H200 at the FLUX small-M shapes, where one stage (the kernel's own next-tile loads, no
pipelining by Triton) beat three, and 8 warps or 256-wide tiles gained nothing (bench/NOTES.md, v24)."""
_MID_M = [(64, 64, 4, 4), (64, 128, 4, 3), (128, 64, 4, 4), (128, 128, 4, 3), (256, 64, 8, 3)]
_LARGE_M = [(128, 128, 64, 4, 4), (128, 128, 128, 8, 3), (128, 256, 64, 8, 3), (64, 128, 128, 4, 4),
            (128, 64, 128, 4, 4), (64, 256, 64, 4, 4), (256, 128, 64, 8, 3), (64, 64, 128, 4, 4), (256, 64, 64, 8, 3)]


TWO_PASS_CANDIDATES = (TwoPassConfig(16, 512, 4), TwoPassConfig(32, 256, 4))
"""Two-pass configs timed beside the fused ones whenever the scratch limit admits the weight."""

FP8_CANDIDATES = (Fp8Config(16, 512, 4), Fp8Config(32, 256, 4))  # fast accumulation on: see Fp8Config
"""FP8 two-pass configs timed beside the fused ones for ``activation="fp8"`` (scratch permitting)."""


_GEMV = [(1, 32, 512, 4), (1, 16, 512, 4), (2, 32, 512, 4), (2, 16, 512, 4), (4, 32, 512, 4), (4, 16, 512, 4)]
"""GEMV (block_m, block_n, block_k, warps), timed for M buckets <= 4: the fastest on an H200 at the
FLUX small-M shapes (bench/NOTES.md, v8); the per-block sums take block_m x block_n x block_k / 16
fp32 values, at most 32 registers per thread."""

_SPLITS = (2, 4, 8)
"""K splits timed beside each GEMV config and each M <= 16 fused config, where every slice keeps at
least two K tiles: a ``[3072, 12288]`` weight gives 96-192 programs unsplit, too few to fill an
H200's 132 SMs with enough loads in flight."""


_WGMMA = [WgmmaConfig(256, 4), WgmmaConfig(256, 5)]
"""wgmma kernel configs, at M buckets 64-1024 on Hopper (``wgmma.offered``). On an H200, with one
producer warpgroup (bench/NOTES.md, v43), 256 rows of x ran 0.59-0.70x of cuBLAS's speed at M = 512
and 4096, 128 rows 0.40-0.53x, and 3 stages were 15-20% slower than 4-5; with two producers (v48,
the kernel now) only 256 rows were timed, and 4 and 5 stages came within 5% of each other."""

_RING = [RingConfig(64, 4, 2)]
"""Ring kernel config (64 rows a program, 4 warps, a 2-trip ring), also split in K (``_SPLITS``). On an
H200, at issue #5's small-M points, 64 rows and 4 warps beat 128 rows (bench/NOTES.md, v30), and 2
stages beat 3 and 4 at all 20 points, by 2-20%: a shallower ring lets more programs share an SM (v31)."""


def candidate_configs(bucket: int, n: int, k: int, max_shared: int, dtype: torch.dtype = torch.bfloat16,
                      device: torch.device | None = None) -> list[GemmConfig]:
    """Configs worth timing for one key: fused tiles no larger than needed and fitting in shared memory
    (split in K too at M <= 16), at M <= 4 the GEMV kernel's, and where ``ring.offered`` or
    ``wgmma.offered`` those kernels' (``device``: None, the current CUDA device)."""
    k_cap = max(MIN_BLOCK_K, triton.next_power_of_2(k))
    gemv = [GemvConfig(bm, bn, min(bk, k_cap), w) for bm, bn, bk, w in _GEMV if bm <= max(bucket, 2)] \
        if bucket <= 4 else []
    tiles = _tile_candidates(bucket, n, k, max_shared)
    if bucket <= 16:
        tiles += [replace(c, split_k=s) for c in tiles for s in _SPLITS if -(-k // c.block_k) >= 2 * s]
    gemv += [replace(c, split_k=s) for c in gemv for s in _SPLITS if -(-k // c.block_k) >= 2 * s]
    device = device or torch.device("cuda")
    rings = []
    if ring.offered(bucket, n, k, dtype, device):
        rings = _RING + [replace(c, split_k=s) for c in _RING for s in _SPLITS if k // ring.TRIP >= 2 * s]
    wgmmas = _WGMMA if wgmma.offered(bucket, n, k, dtype, device) else []
    return [*dict.fromkeys(tiles), *dict.fromkeys(gemv), *rings, *wgmmas]


def _tile_candidates(bucket: int, n: int, k: int, max_shared: int) -> list[TileConfig]:
    if bucket <= 16:
        raw = [(16, bn, bk, w, s) for bn, bk, w, s in _SMALL_M]
    elif bucket <= 64:
        raw = [(bucket, bn, bk, w, s) for bn, bk, w, s in _MID_M]
    else:
        raw = _LARGE_M
    n_cap, k_cap = max(16, triton.next_power_of_2(n)), max(MIN_BLOCK_K, triton.next_power_of_2(k))
    seen, out = set(), []
    for bm, bn, bk, w, s in raw:
        cfg = TileConfig(bm, min(bn, n_cap), min(bk, k_cap), group_m=8, num_warps=w, num_stages=s)
        if cfg not in seen and shared_memory_estimate(cfg) <= max_shared:
            seen.add(cfg)
            out.append(cfg)
    return out or [default_config(bucket, n, k)]


@dataclass
class TuningStats:
    """What the tuner did in this process (for tests, benchmarks and prewarm's report)."""

    tuned: int = 0  # keys benchmarked here
    loaded: int = 0  # keys read from the disk cache
    heuristic: int = 0  # keys given the default config without measuring


class Tuner:
    """Per-process memo of tuned configs in front of the on-disk store, for one kernel."""

    def __init__(self, kernel: str, store: TuningStore | None = None,
                 default: Callable[[int, int, int], GemmConfig] = default_config, tolerance: float = 1e-2) -> None:
        self.kernel = kernel
        self.default = default  # (M bucket, N, K) -> the config used without measuring
        self.tolerance = tolerance  # how far a candidate's output may be from the default's (check_agreement)
        self._store = store
        self._memo: dict[tuple, GemmConfig] = {}
        self.stats = TuningStats()

    @property
    def store(self) -> TuningStore:
        return self._store if self._store is not None else TuningStore(cache_root())

    def lookup(self, key: tuple) -> GemmConfig | None:
        """The remembered config for ``key`` = (device index, dtype, M bucket, N, K, has_bias), if any."""
        return self._memo.get(key)

    def resolve(self, key: tuple, bench: Callable[[GemmConfig], float], heuristic_only: bool,
                extra: Callable[[], tuple[GemmConfig, ...]] = tuple) -> GemmConfig:
        """Find the config for a key seen for the first time: disk cache, else measure, else heuristic.

        ``extra()`` gives configs of other strategies to time beside the fused-kernel candidates;
        it is called only when measuring.
        """
        index, dtype, bucket, n, k, has_bias = key
        if heuristic_only or not autotune_enabled():
            self.stats.heuristic += 1
            return self._memo.setdefault(key, self.default(bucket, n, k))
        if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
            warn_once("nvfp4_triton: a new GEMM shape met during CUDA graph capture runs with the default config; "
                      "run it once before capture (or prewarm) to get the tuned one")
            return self.default(bucket, n, k)
        env = environment(index)
        name = f"{self.kernel}-n{n}-k{k}-m{bucket}-{str(dtype).removeprefix('torch.')}-{'bias' if has_bias else 'nobias'}"
        store = self.store
        config = _config_of(store.load(env, name), name)
        if config is None:
            with store.lock(env, name):
                config = _config_of(store.load(env, name), name)  # another process may have tuned it meanwhile
                if config is None:
                    record = self._measure(key, name, env, bench, extra)
                    store.save(env, name, record)
                    config = config_from_dict(record["config"])
                    self.stats.tuned += 1
                else:
                    self.stats.loaded += 1
        else:
            self.stats.loaded += 1
        return self._memo.setdefault(key, config)

    def _measure(self, key: tuple, name: str, env: dict, bench: Callable[[GemmConfig], float],
                 extra: Callable[[], tuple[GemmConfig, ...]]) -> dict:
        index, dtype, bucket, n, k, has_bias = key
        start = time.perf_counter()
        runnable = []
        # First pass: compile and run every candidate once. Compiling leaves the GPU idle and its
        # clocks drop, so these times are discarded and all candidates are timed again below.
        device = torch.device("cuda", index)
        for cfg in [*candidate_configs(bucket, n, k, device_shared_memory(index), dtype, device), *extra()]:
            if _attempt(bench, cfg, name) is not None:
                runnable.append(cfg)
        timings = [(ms, cfg) for cfg in runnable if (ms := _attempt(bench, cfg, name)) is not None]
        if not timings:
            cfg = self.default(bucket, n, k)
            timings = [(float("nan"), cfg)]
        best_ms, best = min(timings, key=lambda t: (math.isnan(t[0]), t[0]))
        return {
            "schema": env["schema"],
            "env": env,
            "name": name,
            "kernel": self.kernel,
            "key": {"n": n, "k": k, "m_bucket": bucket, "dtype": str(dtype).removeprefix("torch."), "bias": has_bias},
            "config": config_to_dict(best),
            "tuned_ms": best_ms,
            "candidates": [{"config": config_to_dict(c), "ms": ms} for ms, c in timings],
            "tuning_seconds": time.perf_counter() - start,
            "tuned_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }


class CandidateMismatch(RuntimeError):
    """A candidate's output disagreed with the default config's: a broken or miscompiled config."""


def check_agreement(out: torch.Tensor, reference: torch.Tensor, tolerance: float) -> None:
    """Raise :class:`CandidateMismatch` unless ``out`` is finite wherever ``reference`` is and within
    ``tolerance`` of it in relative L2 norm.

    Strategies differ legitimately (two-pass rounds the weight; FP8 rounds activations), so the
    tolerance is loose; it catches garbage, such as Triton 3.6's miscompiled BLOCK_K = 16 tiles.
    """
    ref = reference.float()
    finite = torch.isfinite(ref)
    diff = (out.float() - ref)[finite]
    scale = ref[finite].norm()
    if not bool(torch.isfinite(out.float()[finite]).all()) or float(diff.norm()) > tolerance * float(scale):
        raise CandidateMismatch(f"relative L2 difference {float(diff.norm() / scale.clamp_min(1e-30)):.3g} "
                                f"from the default config exceeds {tolerance}")


def _attempt(bench: Callable[[GemmConfig], float], cfg: GemmConfig, name: str) -> float | None:
    """``bench(cfg)``, or None (after one warning) when the config cannot run or gives wrong output."""
    try:
        return bench(cfg)
    except _LAUNCH_ERRORS as err:
        warn_once(f"nvfp4_triton: skipping config {cfg} for {name}: {type(err).__name__}: {err}"[:300])
        return None


def device_shared_memory(index: int) -> int:
    """Bytes of shared memory one program may use on CUDA device ``index`` (opt-in maximum)."""
    props = torch.cuda.get_device_properties(index)
    return getattr(props, "shared_memory_per_block_optin", 99 * 1024)


def _config_of(record: dict | None, name: str) -> GemmConfig | None:
    """The entry's config, or None (after one warning) when it is not a valid one."""
    if record is None:
        return None
    try:
        return config_from_dict(record["config"])
    except (TypeError, ValueError) as err:
        warn_once(f"nvfp4_triton cache: entry {name} holds an invalid config ({err}); tuning again")
        return None


def benchmark_ms(fn: Callable[[], object]) -> float:
    """GPU time of one ``fn()`` in ms: the median over CUDA-graph replays, L2 flushed before each.

    ``fn`` runs once eagerly first (compiling what it needs), then once on a side stream (the
    warm-up that capture needs: cuBLAS sets up its workspace per stream), and is captured there.
    Timing the replay leaves out the host's launch overhead, which would otherwise favour
    strategies with fewer launches even where they are slower on the GPU; in a model, host work
    overlaps the GPU's. Where capture is impossible, the eager call is timed instead.

    The flush writes 256 MB, so each call starts with L2 full of dirty lines; ``rotating_ms``
    times a chain of calls on distinct weights instead, as in a model.
    """
    with _captured([fn]) as run:
        return triton.testing.do_bench(run, warmup=BENCH_WARMUP_MS, rep=BENCH_REP_MS, return_mode="median")


def rotating_ms(fns: list[Callable[[], object]], reps: int = 50) -> float:
    """GPU time of one call in ms, when each of ``fns`` reads a weight that the others do not.

    The calls are captured in turn in one CUDA graph, and the replays are timed without flushing
    L2 (median over ``reps``, divided by ``len(fns)``). With the weights together several times
    larger than L2, each call reads its weight from HBM while L2 holds the other weights' clean
    lines: a chain of distinct layers, as in a model. Capture and fallback as ``benchmark_ms``.
    """
    with _captured(fns) as run:
        for _ in range(3):
            run()
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
        for start, end in events:
            start.record()
            run()
            end.record()
        torch.cuda.synchronize()
        times = sorted(start.elapsed_time(end) for start, end in events)
    return times[reps // 2] / len(fns)


def rotation_copies(nbytes: int, device: torch.device) -> int:
    """How many distinct copies of ``nbytes`` of weight ``rotating_ms`` should cycle through: together
    at least four times L2's size, and two at least."""
    return max(2, math.ceil(4 * torch.cuda.get_device_properties(device).L2_cache_size / nbytes))


@contextlib.contextmanager
def _captured(fns: list[Callable[[], object]]):
    """A callable that runs ``fns`` in turn: one CUDA-graph replay, or the eager calls if capture fails."""
    def eager() -> None:
        for fn in fns:
            fn()

    eager()  # compiles what the calls need
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.stream(stream):
            eager()
        with torch.cuda.graph(graph, stream=stream):
            eager()
        run = graph.replay
    except RuntimeError:
        run = eager
    torch.cuda.current_stream().wait_stream(stream)
    try:
        yield run
    finally:
        del graph
        scratch.release_stream(stream)


def compile_scope():
    """Context for launches that may compile: binaries go into the nvfp4_triton cache (see cache.compiled)."""
    return compiled.compile_scope(cache_root())
