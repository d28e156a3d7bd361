"""Torch's analysis of a traced Triton launch, done once per kernel signature instead of per call site.

When torch.compile traces a ``wrap_triton`` launch, torch compiles the kernel to TTIR to learn which
arguments it writes, at more than one stage and for every call site (pytorch/pytorch#193227, open).
Our layers traced into the graph (``inline``) made that the bulk of compiling FLUX: on an H200
host, a cut-down transformer of 52 layers cost 110 TTIRs of 0.14 s each, and the full one did not
compile in 5 minutes. The answer depends only on what torch feeds Triton: the JIT kernel, the
tensors' dtypes (fake tensors become empty ones), and the other arguments' values, symbolic sizes
replaced by a constant. So call sites that agree on those can share it: 7 TTIRs for a model of
twice that size. ``share_analysis`` does that, for our own kernels only.
"""

from __future__ import annotations

import copy
import functools

import sympy
import torch
from torch._subclasses.fake_tensor import FakeTensor

_ANALYSES = ("identify_accessed_tensors", "identify_mutated_tensors")  # torch 2.13's name, 2.11's
_PLAIN = (int, float, bool, str, type(None), torch.dtype)


def _argument_key(value: object) -> object:
    """What torch's TTIR for one argument depends on; raises TypeError where that is not known."""
    from torch._inductor.ir import TensorBox

    if isinstance(value, (torch.SymInt, torch.SymFloat, torch.SymBool, sympy.Expr)):
        return "symbolic"  # torch traces the kernel with a constant in its place
    if isinstance(value, (FakeTensor, TensorBox)):
        return "tensor", value.dtype if isinstance(value, FakeTensor) else value.get_dtype()
    if type(value) in (torch.Tensor, torch.nn.Parameter):  # a real tensor reaches Triton as it is
        return "tensor", value.dtype, value.data_ptr() % 16 == 0
    if isinstance(value, _PLAIN):
        return type(value), value
    raise TypeError(type(value))  # other tensor subclasses too: unknown what torch hands Triton for them


def signature(kernel: object, kwargs: dict, *rest: object) -> tuple | None:
    """The key that decides torch's analysis of ``kernel`` launched with ``kwargs``, or None where
    it cannot be shared: a kernel not ours, TMA descriptors, or an argument of another kind.

    Torch wraps the JIT kernel in a new autotuner at every call site (its one config carries
    ``num_warps``), and traces it with that config's arguments added: the key holds those, and the
    JIT kernel instead of its wrapper.
    """
    configs = getattr(kernel, "configs", None)
    if configs:
        kwargs = {**kwargs, **configs[0].kwargs}
    jit = kernel
    while hasattr(jit, "configs"):  # an autotuner
        jit = jit.fn
    python_fn = getattr(jit, "fn", jit)
    if not getattr(python_fn, "__module__", "").startswith(__package__ + ".") or any(rest):
        return None
    try:
        return jit, tuple((name, _argument_key(value)) for name, value in sorted(kwargs.items()))
    except TypeError:
        return None


def _shared(analyse):
    answers: dict = {}

    @functools.wraps(analyse)
    def analyse_once(kernel, kwargs, *rest):
        key = signature(kernel, kwargs, *rest)
        if key is None:
            return analyse(kernel, kwargs, *rest)
        if key not in answers:
            answers[key] = analyse(kernel, kwargs, *rest)
        return copy.deepcopy(answers[key])  # each graph node gets its own, as from torch

    analyse_once.shared_by_nvfp4_triton = True
    return analyse_once


def share_analysis() -> bool:
    """Make torch analyse each of our kernel signatures once per process (idempotent). Call sites
    look the analysis up as a module attribute at call time, so replacing it reaches all of them.
    False where this torch has none of the known analysis functions."""
    from torch._higher_order_ops import triton_kernel_wrap

    found = False
    for name in _ANALYSES:
        analyse = getattr(triton_kernel_wrap, name, None)
        if analyse is None:
            continue
        found = True
        if not getattr(analyse, "shared_by_nvfp4_triton", False):
            setattr(triton_kernel_wrap, name, _shared(analyse))
    return found
