"""What every kernel launcher shares: interpreter detection and a low-overhead Triton launch.

A FLUX step makes ~500 NVFP4 linear calls, and Triton's ``kernel[grid](...)`` spends tens of
microseconds of host time in Python on each launch (binding arguments, hashing options, checking
globals) before its C launcher runs: in eager mode the GPU then waits on the host.
:class:`Kernel` launches through Triton only the first time per argument layout, and after
that calls the compiled kernel's launcher directly. While torch.compile traces a layer
(``inline.w4a16_linear_inline``), it records the launch for inductor instead.
"""

from __future__ import annotations

import inspect

import torch
import triton
import triton.language as tl
from torch._subclasses.fake_tensor import is_fake
from torch.library import wrap_triton
from triton import knobs

from .autotune import compile_scope
from .kernels._w4a16_gemm import w4a16_gemm_kernel

try:
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor
except ImportError:  # no Gluon: no kernel takes descriptors
    TensorDescriptor = ()

_INTERPRETED = not isinstance(w4a16_gemm_kernel, triton.runtime.JITFunction)


def interpreter_active() -> bool:
    """True when the kernels were built for Triton's CPU interpreter (``TRITON_INTERPRET=1`` at import).

    A constant decided at import: torch.compile can trace a constant, not an isinstance test on a kernel.
    """
    return _INTERPRETED


def traced(t: torch.Tensor) -> bool:
    """True for a tensor without values, as torch.compile traces with (fake, or functional over fake)."""
    return type(t) is not torch.Tensor and is_fake(t)


def cdiv(a: int, b: int) -> int:
    """``ceil(a / b)`` for grids. (``triton.cdiv`` is a JIT function: calling it from Python costs ~7 us.)"""
    return -(-a // b)


def _layout(args: tuple) -> tuple:
    """What Triton specializes a compiled kernel on, argument by argument.

    Tensors: dtype and 16-byte alignment. Integers: equal to 1, multiple of 16, fits in 32 bits. TMA
    descriptors: dtype, tile and shared layout (the tensor's own shape and strides travel at launch).
    (Finer than Triton where a parameter is not specialized; that only adds cache entries.) One
    comprehension, no call per argument: it runs on every launch.
    """
    return tuple((a.dtype, not a.data_ptr() & 15) if isinstance(a, torch.Tensor)  # nn.Parameter too
                 else (a == 1, not a % 16, -2147483648 <= a < 2147483648) if type(a) is int
                 else (a.base.dtype, *a.block_shape, a.layout) if isinstance(a, TensorDescriptor)
                 else (type(a), a) for a in args)


def _hook(hook: object) -> object:
    """A launch hook as the compiled launcher takes it: None where nothing is hooked. Triton 3.6's
    hooks are chains, never None; an empty one would still cost a metadata dictionary and a
    Python call per launch."""
    return None if hook is None or getattr(hook, "calls", True) == [] else hook


def _is_constexpr(param: inspect.Parameter) -> bool:
    return param.annotation is tl.constexpr or "constexpr" in str(param.annotation)


class Kernel:
    """A ``@triton.jit`` kernel launched as ``kernel(grid, *args, num_warps=.., **constexprs)``, on the
    device of its first argument.

    The first launch per layout (device, launch options, constexprs, and what Triton specializes on
    in each argument: see ``_layout``) goes through Triton inside ``compile_scope``, so that a
    compilation lands in nvfp4_triton's cache, and keeps the compiled kernel Triton returns.
    Later launches with that layout call its launcher directly. Under the interpreter every launch
    goes through Triton. Tensors without values (torch.compile tracing a ``triton_op``) record the
    launch in the graph, where inductor's generated code makes it.
    """

    def __init__(self, fn) -> None:
        self.fn = fn
        self._compiled: dict[tuple, object] = {}
        params = inspect.signature(fn.fn).parameters.values()  # fn.fn: the Python function, jitted or interpreted
        kinds = [_is_constexpr(p) for p in params]
        if kinds != sorted(kinds):  # the direct launch passes runtime arguments, then constexprs
            raise TypeError(f"{fn.fn.__name__}: every tl.constexpr parameter must come after the runtime parameters")
        self._constexprs = tuple((p.name, p.default) for p in params if _is_constexpr(p))

    def __call__(self, grid: tuple[int, ...], *args, num_warps: int, num_stages: int | None = None,
                 **constexprs) -> None:
        first = args[0]
        if traced(first):
            wrap_triton(self.fn)[grid](*args, **constexprs, **_options(num_warps, num_stages))
            return
        if _INTERPRETED or not first.is_cuda:
            self.fn[grid](*args, **constexprs, **_options(num_warps, num_stages))
            return
        device = first.get_device()
        if device != torch.cuda.current_device():  # Triton launches on the current device
            with torch.cuda.device(device):
                self(grid, *args, num_warps=num_warps, num_stages=num_stages, **constexprs)
            return
        key = (device, num_warps, num_stages, *constexprs.items(), _layout(args))
        compiled = self._compiled.get(key)
        if compiled is None:
            with compile_scope():
                self._compiled[key] = self.fn[grid](*args, **constexprs, **_options(num_warps, num_stages))
            return
        values = (*args, *(constexprs.get(name, default) for name, default in self._constexprs))
        stream = triton.runtime.driver.active.get_current_stream(device)
        grid3 = (*grid, 1, 1)
        enter, leave = _hook(knobs.runtime.launch_enter_hook), _hook(knobs.runtime.launch_exit_hook)
        metadata = None if enter is None and leave is None else compiled.launch_metadata(grid, stream, *values)
        compiled.run(grid3[0], grid3[1], grid3[2], stream, compiled.function, compiled.packed_metadata, metadata,
                     enter, leave, *values)


def _options(num_warps: int, num_stages: int | None) -> dict:
    return {"num_warps": num_warps} if num_stages is None else {"num_warps": num_warps, "num_stages": num_stages}
