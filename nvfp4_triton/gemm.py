"""Run the NVFP4 GEMMs on validated, 2-D tensors (no argument checking here: see ``ops``).

Per shape, a tuner (``autotune``) picks a strategy and its config:
- W4A16 (``w4a16_gemm``): the fused kernel (``TileConfig``), at M <= 4 the GEMV kernel
  (``GemvConfig``), at M <= 22 on Ada and Hopper the ring kernel (``RingConfig``, see ``ring``), from
  M = 46-1448 on Hopper the wgmma kernel (``WgmmaConfig``, see ``wgmma``), or two-pass, dequantize into
  the scratch buffer then cuBLAS (``TwoPassConfig``). The fused kernel, the GEMV and the ring kernel
  may split K across programs where the weight has too few output rows to fill the GPU (the last
  program of each output tile sums the slices);
- W4A8 (``w4a8_gemm``, ``activation="fp8"``): the W4A16 kernels, or FP8 two-pass
  (``Fp8Config``): dequantize to E4M3 into the scratch buffer and quantize the activations per
  token (one launch for both, for rows up to ``act_quant.ONE_LAUNCH_MAX_K``, unless x comes
  quantized), then cuBLAS's FP8 GEMM.
Once a key is known that is one dictionary lookup per call, and the Triton kernels launch through
``launch.Kernel`` (Triton's own dispatch only on the first launch per layout, inside
``compile_scope`` so that whatever it compiles lands in the nvfp4_triton cache). ``gelu=True``
applies GELU (tanh approximation) after the bias, inside the GEMM's epilogue where the strategy
allows it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from . import fp8, ring, scratch, wgmma
from .autotune import (FP8_CANDIDATES, TWO_PASS_CANDIDATES, Tuner, benchmark_ms, check_agreement, compile_scope,
                       m_bucket)
from .cache.keys import kernel_source_hash
from .act_quant import ONE_LAUNCH_MAX_K, fp8_operands, quantize_activation_nvfp4, quantize_rows_fp8
from .launch import Kernel, cdiv, interpreter_active, traced
from .kernels._dequant import nvfp4_dequant_kernel
from .kernels._w4a16_gemm import w4a16_gemm_kernel
from .kernels._w4a16_gemv import w4a16_gemv_kernel
from .tiling import (Fp8Config, GemmConfig, GemvConfig, RingConfig, TwoPassConfig, WgmmaConfig, default_config,
                     default_fp8_config, describe)
from .weight import random_weight

tuner = Tuner("w4a16_gemm")
fp8_tuner = Tuner("w4a8_gemm", default=default_fp8_config, tolerance=0.1)  # FP8 vs W4A16: ~3.4e-2 apart
_gemm_kernel = Kernel(w4a16_gemm_kernel)
_gemv_kernel = Kernel(w4a16_gemv_kernel)
_dequant_kernel = Kernel(nvfp4_dequant_kernel)
_ring_kernel = Kernel(ring.w4a16_ring_kernel) if ring.w4a16_ring_kernel is not None else None
_wgmma_kernel = Kernel(wgmma.w4a16_wgmma_kernel) if wgmma.w4a16_wgmma_kernel is not None else None


def _output(x: torch.Tensor, n: int, out: torch.Tensor | None) -> torch.Tensor:
    m = x.shape[0]
    if out is None:
        return torch.empty((m, n), dtype=x.dtype, device=x.device)
    if tuple(out.shape) != (m, n) or out.dtype != x.dtype or out.device != x.device:
        raise ValueError(f"nvfp4_triton GEMM: out must be {x.dtype} [{m}, {n}] on {x.device}, got "
                         f"{out.dtype} {tuple(out.shape)} on {out.device}")
    return out


def to_rows(x: torch.Tensor) -> torch.Tensor:
    """x ``[..., K]`` as the ``[M, K]`` the GEMMs take."""
    return x if x.dim() == 2 else x.reshape(-1, x.shape[-1])


def from_rows(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A GEMM's ``[M, N]`` output shaped like x: ``[..., N]``."""
    return y if x.dim() == 2 else y.reshape(*x.shape[:-1], y.shape[-1])


def tuning_key(device: torch.device, dtype: torch.dtype, m: int, n: int, k: int, has_bias: bool) -> tuple:
    """What a tuned config is remembered by (see ``Tuner.lookup``). A CUDA device named without an
    index is the current one, as a tensor's ``device`` would name it."""
    index = device.index
    if index is None and device.type == "cuda":
        index = torch.cuda.current_device()
    return index, dtype, m_bucket(m), n, k, has_bias


def tuning_runner(activation: str | None, resident: str | None = None):
    """``(tuner or None, run(x, weight, bias))``: one GEMM run the way a model in this mode runs it,
    which tunes its shape if the tuner does not know it yet (``prewarm``, ``plan_gemm``)."""
    if resident == "fp8":
        def run(x, w, b):
            multipliers, column = fp8.weight_scales(w)
            fp8_gemm(x, fp8.dequantize_to_fp8(w.packed, w.block_scale, multipliers), column, b)
        return None, run
    if activation == "fp8":
        def run(x, w, b):
            scales = fp8.weight_scales(w)
            w4a8_gemm(x, w.packed, w.block_scale, w.global_scale, *scales, b)
            # Compiled graphs quantize x themselves and pass the rows: the weight is then dequantized alone.
            w4a8_gemm(x, w.packed, w.block_scale, w.global_scale, *scales, b, quantized=fp8.quantize_rows(x))
        return fp8_tuner, run
    if activation == "nvfp4":
        def run(x, w, b):
            xq, _, _ = quantize_activation_nvfp4(x, w.global_scale)
            w4a16_gemm(xq, w.packed, w.block_scale, w.global_scale, b)
        return tuner, run
    return tuner, lambda x, w, b: w4a16_gemm(x, w.packed, w.block_scale, w.global_scale, b)


_planned: dict[str, GemmConfig] = {}


def plan_gemm(activation: str | None, m: int, n: int, k: int, dtype: torch.dtype, device: torch.device,
              bias_dtype: torch.dtype | None) -> str:
    """Name the config an ``(m, n, k)`` GEMM will run with in W4A16 (``activation=None``) or W4A8
    (``"fp8"``), tuned now on random data if it is new.

    torch.compile bakes the name into its graph as a constant (``inline.w4a16_linear_inline``), and
    torch caches what a graph compiles to under a key that includes its constants. So the name
    says all that decides the traced launches: the mode, the config, whether the scratch limit
    admits its dense weight, and the kernel sources. ``planned_config(name)`` gives the config
    back. Tuning needs real inputs of the shape: torch.compile traces with tensors that have no values.
    """
    which, run = tuning_runner(activation)
    key = tuning_key(device, dtype, m, n, k, bias_dtype is not None)
    if which.lookup(key) is None:
        bias = None if bias_dtype is None else torch.randn(n, device=device, dtype=bias_dtype)
        run(torch.randn(m, k, device=device, dtype=dtype), random_weight(n, k, device), bias)
    config = which.lookup(key)
    scratch_dtype = torch.float8_e4m3fn if activation == "fp8" else dtype
    name = f"{activation or 'w4a16'} {config!r} scratch={scratch.admits(n, k, scratch_dtype)} " \
           f"kernels={kernel_source_hash()}"
    _planned[name] = config
    return name


def planned_config(name: str) -> GemmConfig:
    """The config that ``plan_gemm`` named in this process."""
    try:
        return _planned[name]
    except KeyError:
        raise RuntimeError(f"nvfp4_triton: no GEMM plan named {name!r} in this process") from None


Runner = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
"""One GEMM made ready for one x layout: ``run(x, out)`` returns ``out`` or a new tensor, for any
``x`` with the shape, strides, dtype and device of the x it was made for. It holds the config and
everything derived from the shape, so that a caller that keeps it (``eager.EagerPlans``) pays
only the launches on each call."""


def _resolve(which: Tuner, scratch_candidates: tuple, scratch_dtype: torch.dtype, bind, config: GemmConfig | None,
             x: torch.Tensor, n: int, has_bias: bool) -> GemmConfig:
    """The config for x's shape: given, remembered, or tuned now.

    ``bind(cfg)`` makes the runner of one config. Tuning times the tuner's own candidates plus
    ``scratch_candidates`` when the scratch limit admits the ``[N, K]`` weight in ``scratch_dtype``;
    it writes into a throw-away output.
    """
    m, k = x.shape
    key = tuning_key(x.device, x.dtype, m, n, k, has_bias)
    config = config or which.lookup(key)
    if config is not None:
        return config
    probe = torch.empty((m, n), dtype=x.dtype, device=x.device)
    reference = None

    def bench(cfg: GemmConfig) -> float:
        nonlocal reference
        run = bind(cfg)
        with compile_scope():
            if reference is None:  # the default config's output, which every candidate must agree with
                reference = bind(which.default(m_bucket(m), n, k))(x, torch.empty_like(probe))
            ms = benchmark_ms(lambda: run(x, probe))
        check_agreement(probe, reference, which.tolerance)
        return ms

    def extra() -> tuple:
        return scratch_candidates if scratch.dense_buffer(n, k, scratch_dtype, x.device) is not None else ()

    heuristic_only = x.device.type != "cuda" or interpreter_active()
    # Timing streams and graphs must belong to x's device, which need not be the current one.
    with contextlib.nullcontext() if heuristic_only else torch.cuda.device(x.device):
        return which.resolve(key, bench, heuristic_only, extra)


def _no_rows(n: int) -> Runner:
    """The runner for an x without rows: an empty ``[0, N]`` output."""
    return lambda x, out: _output(x, n, out)


def w4a16_gemm(
    x: torch.Tensor,
    packed: torch.Tensor,
    block_scale: torch.Tensor,
    global_scale: torch.Tensor,
    bias: torch.Tensor | None,
    config: GemmConfig | None = None,
    out: torch.Tensor | None = None,
    gelu: bool = False,
) -> torch.Tensor:
    """``act((x @ dequant(W)^T) * global_scale + bias)`` for ``x[M, K]`` and linear-layout NVFP4 tensors.

    ``act`` is GELU-tanh with ``gelu=True``, else identity. Writes ``out`` (``[M, N]`` in x's
    dtype, any strides) or a new contiguous tensor and returns it. ``config`` overrides the tuned
    config. Once the shape's key is tuned this issues one launch (two for two-pass) and no host
    synchronization, so it can be captured in a CUDA graph.
    """
    return w4a16_runner(x, packed, block_scale, global_scale, bias, config, gelu)(x, out)


def w4a16_runner(x: torch.Tensor, packed: torch.Tensor, block_scale: torch.Tensor, global_scale: torch.Tensor,
                 bias: torch.Tensor | None, config: GemmConfig | None = None, gelu: bool = False) -> Runner:
    """:func:`w4a16_gemm` made ready for x's layout (see ``Runner``), its config tuned now if new."""
    n = packed.shape[0]
    if x.shape[0] == 0:
        return _no_rows(n)
    scale_bits = block_scale if block_scale.dtype == torch.uint8 else block_scale.view(torch.uint8)

    def bind(cfg: GemmConfig) -> Runner:
        return _bind_w4a16(cfg, x, packed, scale_bits, global_scale, bias, gelu)

    return bind(_resolve(tuner, TWO_PASS_CANDIDATES, x.dtype, bind, config, x, n, bias is not None))


def w4a8_gemm(
    x: torch.Tensor,
    packed: torch.Tensor,
    block_scale: torch.Tensor,
    global_scale: torch.Tensor,
    multipliers: torch.Tensor,
    column_scale: torch.Tensor,
    bias: torch.Tensor | None,
    config: GemmConfig | None = None,
    gelu: bool = False,
    quantized: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """The ``activation="fp8"`` GEMM: FP8 two-pass where it is faster, else the W4A16 kernel.

    ``multipliers`` (``[N]``) and ``column_scale`` (``[1, N]``) are ``fp8.row_multipliers`` and
    ``fp8.column_scales`` of the weight, prepared once at load time. ``quantized``: x already
    quantized per token, as ``fp8.quantize_rows(x)`` returns it; else the FP8 strategy quantizes it.
    """
    return w4a8_runner(x, packed, block_scale, global_scale, multipliers, column_scale, bias, config, gelu,
                       quantized)(x, None)


def w4a8_runner(x: torch.Tensor, packed: torch.Tensor, block_scale: torch.Tensor, global_scale: torch.Tensor,
                multipliers: torch.Tensor, column_scale: torch.Tensor, bias: torch.Tensor | None,
                config: GemmConfig | None = None, gelu: bool = False,
                quantized: tuple[torch.Tensor, torch.Tensor] | None = None) -> Runner:
    """:func:`w4a8_gemm` made ready for x's layout (see ``Runner``), its config tuned now if new.
    ``quantized`` rows are bound into it: a runner kept across calls must be made without them."""
    n, k = packed.shape[0], x.shape[1]
    if x.shape[0] == 0:
        return _no_rows(n)
    scale_bits = block_scale if block_scale.dtype == torch.uint8 else block_scale.view(torch.uint8)

    def bind(cfg: GemmConfig) -> Runner:
        if not isinstance(cfg, Fp8Config):
            return _bind_w4a16(cfg, x, packed, scale_bits, global_scale, bias, gelu)
        one_launch = quantized is None and k <= ONE_LAUNCH_MAX_K
        fused = _fused_fallback(x, packed, scale_bits, global_scale, bias, gelu)

        def run(x: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
            w8 = scratch.dense_buffer(n, k, torch.float8_e4m3fn, x.device, fresh=traced(x))
            if w8 is None:
                return fused(x, out)
            if one_launch:
                rows = fp8_operands(x, w8, packed, scale_bits, multipliers, cfg)
            else:  # fp8_gemm quantizes x if the caller did not
                rows = quantized
                dequantize_into(w8, packed, scale_bits, multipliers, cfg)
            return fp8_gemm(x, w8, column_scale, bias, gelu, cfg.fast_accum, out=out, quantized=rows)
        return run

    return bind(_resolve(fp8_tuner, FP8_CANDIDATES, torch.float8_e4m3fn, bind, config, x, n, bias is not None))


FAST_ACCUM_MIN_M = 64
"""Below this M, FP8 GEMMs accumulate at full precision: they are memory-bound there, and cuBLAS has
no fast-accumulation algorithm for some skinny shapes (M <= 16, N = 3072, K = 12288 on an H200)."""


def fp8_gemm(
    x: torch.Tensor,
    w8: torch.Tensor,
    column_scale: torch.Tensor,
    bias: torch.Tensor | None,
    gelu: bool = False,
    fast_accum: bool = True,
    out: torch.Tensor | None = None,
    quantized: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """``act((fp8(x) @ w8^T) * column_scale + bias)``: quantize x per token, then ``torch._scaled_mm``.

    ``w8`` is E4M3 ``[N, K]`` row-major; ``column_scale`` float32 ``[1, N]``. ``fast_accum``
    applies from ``FAST_ACCUM_MIN_M`` rows on. ``quantized``: ``(fp8(x), row scale)`` made by the
    caller, as ``fp8.quantize_rows`` makes them.
    """
    return fp8_runner(x, w8, column_scale, bias, gelu, fast_accum, quantized)(x, out)


def fp8_runner(x: torch.Tensor, w8: torch.Tensor, column_scale: torch.Tensor, bias: torch.Tensor | None,
               gelu: bool = False, fast_accum: bool = True,
               quantized: tuple[torch.Tensor, torch.Tensor] | None = None) -> Runner:
    """:func:`fp8_gemm` made ready for x's layout (see ``Runner``); ``quantized`` rows are bound into it."""
    fast_accum = fast_accum and x.shape[0] >= FAST_ACCUM_MIN_M
    n = w8.shape[0]
    w8_t = w8.t()

    def run(x: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
        xq, row_scale = quantized if quantized is not None else quantize_rows_fp8(x)
        if out is not None:
            _output(x, n, out)
        b = bias if bias is None or bias.dtype == x.dtype else bias.to(x.dtype)
        y = torch._scaled_mm(xq, w8_t, scale_a=row_scale, scale_b=column_scale, bias=b, out_dtype=x.dtype,
                             use_fast_accum=fast_accum, out=out)
        if gelu:
            torch.ops.aten.gelu_(y, approximate="tanh")
        return y
    return run


def dequantize_into(out: torch.Tensor, packed: torch.Tensor, scale_bits: torch.Tensor, factor: torch.Tensor,
                    cfg: TwoPassConfig | Fp8Config) -> None:
    """Dense ``out[N, K] = e2m1 * e4m3 * factor`` (factor: the global scale, or one multiplier per row)."""
    n, k = out.shape
    grid = (cdiv(n, cfg.block_n), cdiv(k, cfg.block_k))
    if out.dtype == torch.float8_e4m3fn:
        out = out.view(torch.uint8)  # the kernel writes E4M3 bit patterns
    _dequant_kernel(grid, packed, scale_bits, factor, out, n, k, PER_ROW=factor.dim() == 1,
                    BIT_MATH=interpreter_active(),
                    BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k, num_warps=cfg.num_warps)


def _bind_w4a16(cfg: GemmConfig, x: torch.Tensor, packed: torch.Tensor, scale_bits: torch.Tensor,
                global_scale: torch.Tensor, bias: torch.Tensor | None, gelu: bool) -> Runner:
    """The runner of one W4A16 config: two-pass, the fused kernel, the GEMV or the ring kernel."""
    m, k = x.shape
    n = packed.shape[0]
    if isinstance(cfg, RingConfig):
        return _bind_ring(cfg, x, packed, scale_bits, global_scale, bias, gelu)
    if isinstance(cfg, WgmmaConfig):
        return _bind_wgmma(cfg, x, packed, scale_bits, global_scale, bias, gelu)
    if isinstance(cfg, TwoPassConfig):
        fused = _fused_fallback(x, packed, scale_bits, global_scale, bias, gelu)

        def two_pass(x: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
            w = scratch.dense_buffer(n, k, x.dtype, x.device, fresh=traced(x))
            if w is None:
                return fused(x, out)
            dequantize_into(w, packed, scale_bits, global_scale, cfg)
            return _cublas(x, w, bias, out, gelu)
        return two_pass
    k_per_split, split = k_slices(k, cfg.block_k, cfg.split_k)
    gemv = isinstance(cfg, GemvConfig)
    tiles = cdiv(n, cfg.block_n) * (1 if gemv else cdiv(m, cfg.block_m))
    grid = (tiles, split)
    words = _word_view(packed, torch.int64)  # both kernels read the codes 16 to a word
    # Everything but the tensors and strides is fixed for x's layout: made once, not per call.
    options = dict(HAS_BIAS=bias is not None, GELU_TANH=gelu, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n,
                   BLOCK_K=cfg.block_k, SPLIT_K=split, num_warps=cfg.num_warps)
    if gemv:
        options.update(X_BF16=x.dtype == torch.bfloat16)
    else:
        options.update(DOT_F32=interpreter_active() and x.dtype == torch.bfloat16, PACKED_MUL=not interpreter_active(),
                       GROUP_M=cfg.group_m, num_stages=cfg.num_stages)

    def run(x: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
        y = _output(x, n, out)
        partial, counters = _split_buffers(split, m, n, tiles, y, fresh=traced(x))
        bias_arg = bias if bias is not None else y
        if gemv:
            x_words = _word_view(x, torch.int64)
            _gemv_kernel(grid, x_words, words, scale_bits, global_scale, bias_arg, y, partial, counters,
                         m, n, k, k // 16, k_per_split, x_words.stride(0), y.stride(0), y.stride(1), **options)
        else:
            _gemm_kernel(grid, x, words, scale_bits, global_scale, bias_arg, y, partial, counters,
                         m, n, k, k_per_split, x.stride(0), x.stride(1), y.stride(0), y.stride(1), **options)
        return y
    return run


def _split_buffers(split: int, m: int, n: int, tiles: int, y: torch.Tensor,
                   fresh: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A split-K launch's fp32 partial sums ``[split, M, N]`` (per call) and its ``tiles`` arrival
    counters (``scratch.tile_counters``); unsplit, y stands in for both (the kernel reads neither)."""
    if split == 1:
        return y, y
    return (torch.empty((split, m, n), dtype=torch.float32, device=y.device),
            scratch.tile_counters(tiles, y.device, fresh=fresh))


def _fused_fallback(x: torch.Tensor, packed: torch.Tensor, scale_bits: torch.Tensor, global_scale: torch.Tensor,
                    bias: torch.Tensor | None, gelu: bool) -> Runner:
    """The fused kernel's default config, for a scratch strategy whose dense weight the scratch limit
    has forbidden since tuning. Bound on its first call and kept: most runners never need it."""
    bound: list[Runner] = []

    def run(x: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
        if not bound:
            m, n, k = x.shape[0], packed.shape[0], x.shape[1]
            bound.append(_bind_w4a16(default_config(m, n, k), x, packed, scale_bits, global_scale, bias, gelu))
        return bound[0](x, out)
    return run


def k_slices(k: int, block_k: int, split_k: int) -> tuple[int, int]:
    """``(k_per_split, split)``: K columns per slice (whole K tiles) and how many slices a split-K
    launch has, at most ``split_k`` and none left empty."""
    steps = cdiv(k, block_k)
    k_per_split = cdiv(steps, min(split_k, steps)) * block_k
    return k_per_split, cdiv(k, k_per_split)


def _word_view(t: torch.Tensor, word: torch.dtype) -> torch.Tensor:
    """A 2-D tensor of 1- or 2-byte elements (rows a whole number of words long) viewed as ``word``
    (int32 or int64), for the kernels to load several elements at a time; copied first where its
    strides or offset do not allow that view (a column-major or offset x, every call; codes sliced
    out of a larger buffer at an offset that is not a whole word, once per runner, which holds the copy)."""
    per_word = word.itemsize // t.element_size()
    if t.stride(1) != 1 or t.stride(0) % per_word or t.storage_offset() % per_word:
        t = t.clone(memory_format=torch.contiguous_format)
    return t.view(word)


def _bind_ring(cfg: RingConfig, x: torch.Tensor, packed: torch.Tensor, scale_bits: torch.Tensor,
               global_scale: torch.Tensor, bias: torch.Tensor | None, gelu: bool) -> Runner:
    """The ring kernel's runner (see ``ring``). While torch.compile traces, the fused kernel's default
    config runs instead (inductor records Triton launches; the ring kernel is Gluon)."""
    m, k = x.shape
    n = packed.shape[0]
    if traced(x):
        return _bind_w4a16(default_config(m, n, k), x, packed, scale_bits, global_scale, bias, gelu)
    problem = _gluon_problem(ring.problem(m, n, k, x.dtype, x.device))
    if not problem and n % cfg.block_n:
        problem = f"N = {n} is not a multiple of its block_n"
    if problem:
        raise ValueError(f"nvfp4_triton: {describe(cfg)} cannot run here: {problem}")
    k_per_split, split = k_slices(k, ring.TRIP, cfg.split_k)
    grid = (n // cfg.block_n, split)
    words, scales = _word_view(packed, torch.int32), _word_view(scale_bits, torch.int32)
    block_m = ring.columns(m)
    options = dict(HAS_BIAS=bias is not None, GELU_TANH=gelu, SPLIT=split, BN=cfg.block_n, BM=block_m,
                   WARPS=cfg.num_warps, STAGES=cfg.num_stages, **ring.layouts(cfg.block_n, cfg.num_warps, block_m),
                   num_warps=cfg.num_warps)

    def run(x: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
        y = _output(x, n, out)
        x = _aligned_rows(x, 16)
        partial, counters = _split_buffers(split, m, n, grid[0], y, fresh=False)
        _ring_kernel(grid, words, scales, x, global_scale, bias if bias is not None else y, y, partial, counters,
                     m, n, k, k_per_split, x.stride(0), y.stride(0), y.stride(1), **options)
        return y
    return run


def _gluon_problem(problem: str) -> str:
    """``problem``, or why no Gluon kernel can run in this process (Triton's interpreter); "" if none."""
    return problem or ("Triton's interpreter does not run Gluon" if interpreter_active() else "")


def _aligned_rows(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """x itself, or a contiguous copy where its rows could not be read 16 bytes at a time: unit K stride,
    a 16-byte aligned start, and a row stride that is a multiple of ``multiple`` elements. cp.async (the
    ring kernel) needs 16 (the multiple Triton specializes a stride on), TMA (the wgmma kernel) 16-byte
    rows, 8 bf16."""
    if x.stride(1) != 1 or x.stride(0) % multiple or x.data_ptr() % 16:
        return x.clone(memory_format=torch.contiguous_format)
    return x


def _bind_wgmma(cfg: WgmmaConfig, x: torch.Tensor, packed: torch.Tensor, scale_bits: torch.Tensor,
                global_scale: torch.Tensor, bias: torch.Tensor | None, gelu: bool) -> Runner:
    """The wgmma kernel's runner (see ``wgmma``). While torch.compile traces, the fused kernel's default
    config runs instead (inductor records Triton launches; the wgmma kernel is Gluon)."""
    m, k = x.shape
    n = packed.shape[0]
    if traced(x):
        return _bind_w4a16(default_config(m, n, k), x, packed, scale_bits, global_scale, bias, gelu)
    problem = _gluon_problem(wgmma.problem(m, n, k, x.dtype, x.device))
    if problem:
        raise ValueError(f"nvfp4_triton: {describe(cfg)} cannot run here: {problem}")
    grid = (n // wgmma.BLOCK_N, cdiv(m, cfg.block_m))
    codes = wgmma.code_descriptor(_word_view(packed, torch.int32))
    scales = _word_view(scale_bits, torch.int32)
    options = dict(HAS_BIAS=bias is not None, GELU_TANH=gelu, BM=cfg.block_m, STAGES=cfg.num_stages, num_warps=8,
                   maxnreg=wgmma.REGISTERS)

    def run(x: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
        y = _output(x, n, out)
        x_tiles = wgmma.x_descriptor(_aligned_rows(x, 8), cfg.block_m)
        _wgmma_kernel(grid, scales, x_tiles, codes, global_scale, bias if bias is not None else y, y, m, n, k,
                      y.stride(0), y.stride(1), **options)
        return y
    return run


def _cublas(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None, out: torch.Tensor | None,
            gelu: bool) -> torch.Tensor:
    """``act(x @ w^T + bias)`` by cuBLAS, into ``out`` or a new tensor; with a bias on CUDA, GELU-tanh
    rides cuBLASLt's epilogue.

    (``torch._addmm_activation`` applies ReLU unless ``use_gelu``, and the exact GELU on the CPU:
    it serves the GELU case on CUDA only.)
    """
    if out is not None:
        _output(x, w.shape[0], out)
    if bias is not None and bias.dtype != x.dtype:
        bias = bias.to(x.dtype)
    if gelu and bias is not None and x.device.type == "cuda":
        return torch._addmm_activation(bias, x, w.t(), use_gelu=True, out=out)
    y = torch.mm(x, w.t(), out=out) if bias is None else torch.addmm(bias, x, w.t(), out=out)
    if gelu:
        torch.ops.aten.gelu_(y, approximate="tanh")
    return y
