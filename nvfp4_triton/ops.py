"""`nvfp4_linear`: the public op, its argument checks, and its torch custom-op registrations.

Each mode is one custom op with a fake (meta) implementation, so ``torch.compile(fullgraph=True)``
traces through it and CUDA graphs can capture it:
``torch.ops.nvfp4_triton.w4a16_linear`` (activations as they are), ``w4a8_linear`` (FP8
activations), ``w4a4_linear`` (NVFP4 activations, Blackwell emulation), and ``fp8_linear``
(weights converted to FP8 at load time, ``FP8Linear``). The ops are inference-only: they have no
autograd formula, and the public entry points refuse inputs that require grad. By default on a
GPU, torch.compile traces the W4A16 and FP8 layers into its graph instead (``inline``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from . import fp8, inline
from .act_quant import quantize_activation_nvfp4
from .gemm import fp8_gemm, from_rows, to_rows, w4a8_gemm, w4a8_runner, w4a16_gemm, w4a16_runner
from .launch import interpreter_active
from .weight import NVFP4Weight

ACTIVATIONS = (None, "fp8", "nvfp4")
"""How activations enter the GEMM: as they are (W4A16), FP8 per token (W4A8), NVFP4 (W4A4 emulation)."""
ACTIVATION_DTYPES = (torch.bfloat16, torch.float16)
BIAS_DTYPES = (torch.bfloat16, torch.float16, torch.float32)


def _w4a16_linear_impl(
    x: torch.Tensor,
    packed: torch.Tensor,
    block_scale_bits: torch.Tensor,
    global_scale: torch.Tensor,
    bias: torch.Tensor | None,
    gelu: bool = False,
) -> torch.Tensor:
    # The E4M3 block scales travel as their uint8 bit patterns: the kernel decodes them itself,
    # and torch's op checks cannot handle float8 arguments on every device.
    return from_rows(w4a16_gemm(to_rows(x), packed, block_scale_bits, global_scale, bias, gelu=gelu), x)


def _w4a4_linear_impl(
    x: torch.Tensor,
    packed: torch.Tensor,
    block_scale_bits: torch.Tensor,
    global_scale: torch.Tensor,
    input_scale: torch.Tensor,
    bias: torch.Tensor | None,
    gelu: bool = False,
) -> torch.Tensor:
    xq, _, _ = quantize_activation_nvfp4(to_rows(x), input_scale)
    alpha = input_scale * global_scale
    return from_rows(w4a16_gemm(xq, packed, block_scale_bits, alpha, bias, gelu=gelu), x)


def _w4a8_linear_impl(
    x: torch.Tensor,
    packed: torch.Tensor,
    block_scale_bits: torch.Tensor,
    global_scale: torch.Tensor,
    multipliers: torch.Tensor,
    column_scale: torch.Tensor,
    bias: torch.Tensor | None,
    gelu: bool = False,
    xq_bits: torch.Tensor | None = None,
    row_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    return from_rows(w4a8_gemm(to_rows(x), packed, block_scale_bits, global_scale, multipliers, column_scale, bias,
                               gelu=gelu, quantized=_given_rows(xq_bits, row_scale)), x)


def _fp8_linear_impl(
    x: torch.Tensor,
    w8_bits: torch.Tensor,
    column_scale: torch.Tensor,
    bias: torch.Tensor | None,
    gelu: bool = False,
    xq_bits: torch.Tensor | None = None,
    row_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    # The E4M3 weight travels as uint8 bits, like the block scales of the other ops.
    return from_rows(fp8_gemm(to_rows(x), w8_bits.view(torch.float8_e4m3fn), column_scale, bias, gelu=gelu,
                              quantized=_given_rows(xq_bits, row_scale)), x)


def _given_rows(xq_bits: torch.Tensor | None, row_scale: torch.Tensor | None) -> tuple | None:
    """The FP8 ops' optional pre-quantized x (see ``call_fp8_op``), as the GEMMs take it."""
    return (xq_bits.view(torch.float8_e4m3fn), row_scale) if xq_bits is not None else None


_LIB = torch.library.Library("nvfp4_triton", "DEF")  # the ops live as long as this object


def _register(name: str, schema: str, impl) -> torch._ops.OpOverload:
    """Define ``nvfp4_triton::name`` with ``impl`` as its CPU and CUDA kernel and ``_fake_output`` as its fake.

    Defined with ``torch.library.Library`` rather than ``torch.library.custom_op``: a compiled
    graph calls these ops once per layer, and custom_op's Python wrappers (autograd, redispatch,
    alias checks, a dynamo guard) cost a compiled call 30-60 us of host time on top of the
    kernel launches (measured on the CPU machine with the launches stubbed out). Without an
    autograd kernel, backpropagating through them would only make torch warn; the public entry
    points refuse inputs that ask for gradients first (``check_no_grad``).
    """
    _LIB.define(name + schema)
    for key in ("CPU", "CUDA"):
        _LIB.impl(name, impl, key)
    torch.library.register_fake(f"nvfp4_triton::{name}", _fake_output, lib=_LIB)
    return getattr(torch.ops.nvfp4_triton, name).default


def _fake_output(x: torch.Tensor, weight_rows: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """Every op's fake: its second argument has one row per output feature."""
    return x.new_empty((*x.shape[:-1], weight_rows.shape[0]))


_W = "Tensor packed, Tensor block_scale_bits, Tensor global_scale"
_w4a16_linear = _register("w4a16_linear", f"(Tensor x, {_W}, Tensor? bias, bool gelu=False) -> Tensor",
                          _w4a16_linear_impl)
_w4a4_linear = _register("w4a4_linear", f"(Tensor x, {_W}, Tensor input_scale, Tensor? bias, bool gelu=False) -> Tensor",
                         _w4a4_linear_impl)
_w4a8_linear = _register("w4a8_linear", f"(Tensor x, {_W}, Tensor multipliers, Tensor column_scale, Tensor? bias, "
                                        "bool gelu=False, Tensor? xq_bits=None, Tensor? row_scale=None) -> Tensor",
                         _w4a8_linear_impl)
_fp8_linear = _register("fp8_linear", "(Tensor x, Tensor w8_bits, Tensor column_scale, Tensor? bias, bool gelu=False, "
                                      "Tensor? xq_bits=None, Tensor? row_scale=None) -> Tensor", _fp8_linear_impl)
_IMPLS = {_w4a16_linear: _w4a16_linear_impl, _w4a4_linear: _w4a4_linear_impl, _w4a8_linear: _w4a8_linear_impl,
          _fp8_linear: _fp8_linear_impl}


def call_op(op, x: torch.Tensor, *args):
    """Run one of the ops above: through torch's dispatcher while tracing, straight to the launcher in eager mode.

    The dispatcher exists for torch.compile, export and fake tensors; on plain tensors in eager mode
    it only adds per-call host time (tens of microseconds, as much as a small GEMM takes). With
    ``inline.INLINE_COMPILED``, compiled W4A16 layers are traced into the graph instead.
    """
    if type(x) is torch.Tensor and not torch.compiler.is_compiling():
        return _IMPLS[op](x, *args)
    if op is _w4a16_linear and inline.INLINE_COMPILED and torch.compiler.is_compiling():
        y = inline.call_planned(inline.w4a16_linear_inline, None, x, args, bias=args[3])
        if y is not None:
            return y
    return op(x, *args)


def nvfp4_linear(
    x: torch.Tensor,
    weight: NVFP4Weight,
    bias: torch.Tensor | None = None,
    *,
    activation: str | None = None,
    input_scale: torch.Tensor | None = None,
    gelu: bool = False,
    fp8_scales: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """``y = act(x @ dequantize(weight)^T + bias)``, with the activation handled as ``activation`` says.

    Args:
        x: ``[..., in_features]``, bfloat16 or float16, on the weight's device. Any strides.
        weight: an :class:`NVFP4Weight` with ``scale_layout="linear"`` (convert a swizzled one
            once with ``weight.with_scale_layout("linear")``, not per call).
        bias: optional ``[out_features]``, bf16 / fp16 / fp32, on the same device.
        activation: how x enters the GEMM (see ``ACTIVATIONS``):
            - ``None``: as it is (W4A16). Accumulation is fp32.
            - ``"fp8"``: quantized per token to FP8-E4M3, multiplied on FP8 tensor cores against the
              weight converted to E4M3 (W4A8). Where it measures faster (small M) the W4A16 kernel
              runs instead, which is more accurate.
            - ``"nvfp4"``: quantized to NVFP4 the way Blackwell's NVFP4 GEMMs do (W4A4 emulation), with
              ``input_scale`` as the global scale.
        input_scale: float32 scalar tensor; required with ``activation="nvfp4"``.
        gelu: apply GELU (tanh approximation) to the output, fused into the GEMM where possible.
        fp8_scales: ``activation="fp8"`` only: ``(fp8.row_multipliers(...), fp8.column_scales(...))``
            of this weight, when the caller keeps them (``NVFP4Linear`` does); otherwise they are
            computed on each call.

    Returns ``[..., out_features]`` in x's dtype. CPU tensors run through Triton's interpreter,
    which must be switched on (``TRITON_INTERPRET=1``) before ``nvfp4_triton`` is imported.
    """
    check_linear_call(x, weight, bias, activation, input_scale)
    bits = weight.scale_bits
    if activation == "nvfp4":
        return call_op(_w4a4_linear, x, weight.packed, bits, weight.global_scale, input_scale, bias, gelu)
    if activation == "fp8":
        multipliers, column_scale = fp8_scales if fp8_scales is not None else fp8.weight_scales(weight)
        return call_fp8_op(_w4a8_linear, x, weight.packed, bits, weight.global_scale, multipliers, column_scale, bias,
                           gelu=gelu)
    return call_op(_w4a16_linear, x, weight.packed, bits, weight.global_scale, bias, gelu)


def eager_runner(x: torch.Tensor, weight: NVFP4Weight, bias: torch.Tensor | None, activation: str | None,
                 input_scale: torch.Tensor | None, gelu: bool,
                 fp8_scales: tuple[torch.Tensor, torch.Tensor] | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """``nvfp4_linear`` with these arguments, made ready for eager calls on plain tensors laid out as x.

    Checks the arguments as ``nvfp4_linear`` does and tunes x's shape if it is new; the function
    returned takes any x of the same shape, strides, dtype and device and does only the launches
    (``gemm.Runner``). What it leaves to its caller: refusing an x that requires grad
    (``check_no_grad``). ``eager.EagerPlans`` keeps these per layer.
    """
    check_linear_call(x, weight, bias, activation, input_scale)
    bits = weight.scale_bits
    if activation == "nvfp4":  # emulation, for accuracy studies: its quantizer allocates per call anyway
        return lambda x: _w4a4_linear_impl(x, weight.packed, bits, weight.global_scale, input_scale, bias, gelu)
    rows = to_rows(x)
    if activation == "fp8":
        multipliers, column_scale = fp8_scales if fp8_scales is not None else fp8.weight_scales(weight)
        run = w4a8_runner(rows, weight.packed, bits, weight.global_scale, multipliers, column_scale, bias, gelu=gelu)
    else:
        run = w4a16_runner(rows, weight.packed, bits, weight.global_scale, bias, gelu=gelu)
    return shaped_runner(run)


def shaped_runner(run) -> Callable[[torch.Tensor], torch.Tensor]:
    """A 2-D ``gemm.Runner`` as a function of x ``[..., K]``, returning ``[..., N]``."""
    return lambda x: from_rows(run(to_rows(x), None), x)


GRAPH_QUANT_MAX_K = 4096
"""Under torch.compile, FP8 layers with rows (``in_features``) up to this long have x quantized by
graph ops, which inductor fuses into the kernel that produces x; longer rows by our row quantizer
kernel, as in eager mode. In a compiled FLUX step on an H200 (bench/RESULTS.md, session 12), inductor's
fused GELU + concatenation + quantization of ``proj_out``'s 15360-long rows took 252 us a single
block, where BF16's graph spends 108 us on the GELU and concatenation and our row quantizer 57 us
on the result; likewise 150 us for ``ff.net.2``'s 12288-long rows against 62 + 42. The 3072-long
rows after a norm cost inductor 12 us more than BF16's norm alone, no more than a separate pass
of our quantizer would (13-16 us)."""


def call_fp8_op(op, x: torch.Tensor, *args, gelu: bool) -> torch.Tensor:
    """Run an FP8-path op (``w4a8_linear``, ``fp8_linear``; ``args`` up to its bias) with its GELU.

    In eager mode the op quantizes x itself and applies GELU right after its GEMM (cuBLAS's FP8
    GEMM, ``torch._scaled_mm``, has no GELU epilogue). While torch.compile traces, GELU becomes a
    graph op that inductor can fuse into whatever reads the output next (in FLUX's single blocks,
    the concatenation before ``proj_out``); shapes where the op runs a W4A16 kernel (small M),
    whose epilogue would have applied GELU for free, then pay a small separate GELU. x's rows:
    - up to ``GRAPH_QUANT_MAX_K`` long, graph ops quantize them (``fp8.quantize_rows``), and
      inductor fuses that into the kernel that produced x (a norm). Layers that share x (q, k, v)
      each get their own copy of the rows: nothing in the graph says the quantizations are the
      same (bench/RESULTS.md, session 8). With ``inline.INLINE_COMPILED`` the GEMM is traced into
      the graph as well (``inline.w4a8_linear_inline``; for ``fp8_linear``, ``torch._scaled_mm``
      itself);
    - longer, the row quantizer kernel (``act_quant.quantize_rows_fp8``) quantizes them, as in
      eager mode: launched from the graph with ``inline.INLINE_COMPILED``
      (``inline.w4a8_linear_inline`` given no rows, ``inline.fp8_linear_inline``), otherwise
      inside the op.
    """
    if not torch.compiler.is_compiling():
        return call_op(op, x, *args, gelu)
    wide = x.shape[-1] > GRAPH_QUANT_MAX_K
    y = _call_fp8_quantizing_itself(op, x, args) if wide else _call_fp8_with_graph_rows(op, x, args)
    return torch.nn.functional.gelu(y, approximate="tanh") if gelu else y


def _call_fp8_with_graph_rows(op, x: torch.Tensor, args: tuple) -> torch.Tensor:
    """``op`` without its GELU, on x's rows quantized by graph ops; traced where ``inline`` allows."""
    xq, row_scale = fp8.quantize_rows(to_rows(x))
    quantized = (xq.view(torch.uint8), row_scale)
    y = None
    if inline.INLINE_COMPILED and op is _fp8_linear:  # cuBLAS only: its plain torch code becomes graph ops
        y = _fp8_linear_impl(x, *args, False, *quantized)
    elif inline.INLINE_COMPILED and op is _w4a8_linear:
        y = inline.call_planned(inline.w4a8_linear_inline, "fp8", x, (*args, *quantized), bias=args[5])
    return y if y is not None else op(x, *args, False, *quantized)


def _call_fp8_quantizing_itself(op, x: torch.Tensor, args: tuple) -> torch.Tensor:
    """``op`` without its GELU, quantizing x's rows with the row quantizer kernel; traced where
    ``inline`` allows: the quantizer (and W4A8's dequantization) then become launches in
    inductor's code, which costs less host time than the opaque op's call."""
    y = None
    if inline.INLINE_COMPILED and op is _w4a8_linear:
        y = inline.call_planned(inline.w4a8_linear_inline, "fp8", x, (*args, None, None), bias=args[5])
    elif inline.INLINE_COMPILED and op is _fp8_linear:
        y = inline.call_unplanned(inline.fp8_linear_inline, x, args)
    return y if y is not None else op(x, *args, False)


RESIDENTS = (None, "fp8")
"""What a model keeps in memory: NVFP4 weights (None), or weights converted once to FP8 (``FP8Linear``)."""


def check_mode(activation: str | None, resident: str | None, caller: str) -> None:
    """Raise a ``ValueError`` naming ``caller`` for an unknown activation / resident mode or a pair that cannot run."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"{caller}: activation must be one of {ACTIVATIONS}, got {activation!r}")
    if resident not in RESIDENTS:
        raise ValueError(f"{caller}: resident must be one of {RESIDENTS}, got {resident!r}")
    if resident == "fp8" and activation not in (None, "fp8"):
        raise ValueError(f"{caller}: resident='fp8' runs FP8 activations; activation={activation!r} "
                         "cannot be combined with it")


def check_activation(activation: str | None, input_scale: torch.Tensor | None, device: torch.device) -> None:
    """Raise a ``ValueError`` / ``TypeError`` for an unknown mode or a missing / malformed ``input_scale``,
    and a ``RuntimeError`` for ``"fp8"`` on a GPU without FP8 tensor cores (``fp8.check_fp8_device``)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"nvfp4_linear: activation must be one of {ACTIVATIONS}, got {activation!r}")
    if activation == "fp8" and not torch.compiler.is_compiling():  # compiled: checked by the eager warm-up
        fp8.check_fp8_device(device, "nvfp4_linear")
    if activation != "nvfp4":
        return
    if input_scale is None:
        raise ValueError("nvfp4_linear: activation='nvfp4' needs input_scale (the checkpoint's calibrated "
                         "per-tensor activation scale); this layer has none")
    if not isinstance(input_scale, torch.Tensor) or input_scale.dtype != torch.float32 or input_scale.numel() != 1:
        got = f"{input_scale.dtype} {tuple(input_scale.shape)}" if isinstance(input_scale, torch.Tensor) \
            else type(input_scale).__name__
        raise TypeError(f"nvfp4_linear: input_scale must be a float32 tensor with one element, got {got}")
    if input_scale.device != device:
        raise ValueError(f"nvfp4_linear: input_scale is on {input_scale.device}, x on {device}")


def check_linear_call(x: torch.Tensor, weight: NVFP4Weight, bias: torch.Tensor | None, activation: str | None,
                      input_scale: torch.Tensor | None) -> None:
    """Every check of ``nvfp4_linear``'s arguments: the weight's type and layout, then
    ``check_linear_args`` and ``check_activation``."""
    if not isinstance(weight, NVFP4Weight):
        raise TypeError(f"nvfp4_linear: weight must be an NVFP4Weight, got {type(weight).__name__}")
    if weight.scale_layout != "linear":
        raise ValueError(
            f"nvfp4_linear: weight has scale_layout={weight.scale_layout!r}; the kernels read the 'linear' layout. "
            "Convert once at load time with weight.with_scale_layout('linear')."
        )
    check_linear_args(x, weight, bias)
    check_activation(activation, input_scale, x.device)


def check_no_grad(x: torch.Tensor, bias: torch.Tensor | None, caller: str) -> None:
    """Raise a ``RuntimeError`` when x or bias asks for gradients: the ops have no backward, and
    without this a backward pass would run on with the gradient through them silently missing."""
    if torch.is_grad_enabled() and (x.requires_grad or (bias is not None and bias.requires_grad)):
        which = "x" if x.requires_grad else "bias"
        raise RuntimeError(f"{caller}: {which} requires grad, but nvfp4_triton's GEMMs are inference-only (no "
                           "backward). Run under torch.no_grad() or torch.inference_mode(), or pass "
                           f"{which}.detach().")


def check_linear_args(x: torch.Tensor, weight: NVFP4Weight, bias: torch.Tensor | None) -> None:
    """Raise a ``TypeError`` / ``ValueError`` naming the argument that the kernel cannot take.

    The weight's own tensors were checked when the ``NVFP4Weight`` was built.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"nvfp4_linear: x must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in ACTIVATION_DTYPES:
        raise TypeError(f"nvfp4_linear: x must be bfloat16 or float16, got {x.dtype}")
    k, n = weight.in_features, weight.out_features
    if x.dim() < 1 or x.shape[-1] != k:
        raise ValueError(f"nvfp4_linear: x must have shape [..., {k}] (in_features of the weight), got {tuple(x.shape)}")
    device = x.device
    if bias is not None:
        if not isinstance(bias, torch.Tensor):
            raise TypeError(f"nvfp4_linear: bias must be a torch.Tensor or None, got {type(bias).__name__}")
        if bias.dtype not in BIAS_DTYPES:
            raise TypeError(f"nvfp4_linear: bias must be bfloat16, float16 or float32, got {bias.dtype}")
        if bias.dim() != 1 or bias.shape[0] != n:
            raise ValueError(f"nvfp4_linear: bias must have shape ({n},) (out_features), got {tuple(bias.shape)}")
        if bias.stride(0) != 1:
            raise ValueError("nvfp4_linear: bias must be contiguous")
    check_no_grad(x, bias, "nvfp4_linear")
    if weight.packed.device != device or (bias is not None and bias.device != device):
        where = f"x on {device}, weight on {weight.device}" + (f", bias on {bias.device}" if bias is not None else "")
        raise ValueError(f"nvfp4_linear: all tensors must be on one device, got {where}")
    if device.type == "cpu" and not interpreter_active():
        raise RuntimeError(
            "nvfp4_linear: x is on the CPU, where the Triton kernel runs only through Triton's interpreter. "
            "Move the tensors to a CUDA device, or set TRITON_INTERPRET=1 before importing nvfp4_triton."
        )
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"nvfp4_linear: x is on {device}; only CUDA devices (and the CPU interpreter) are supported")
