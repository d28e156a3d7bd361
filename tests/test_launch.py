"""The launch key: a compiled kernel is reused only for arguments Triton would have compiled it for."""

import pytest
import torch

from nvfp4_triton.launch import _layout


def test_layout_separates_what_triton_specializes_on():
    pool = torch.empty(64, dtype=torch.bfloat16)
    assert pool.data_ptr() % 16 == 0
    assert _layout(pool[0:]) != _layout(pool[1:]), "16-byte aligned and 2 bytes off must not share a kernel"
    assert _layout(pool[0:]) == _layout(pool[8:]), "both 16-byte aligned"
    assert _layout(pool) != _layout(pool.view(torch.int16)), "dtype is part of the signature"
    assert _layout(torch.nn.Parameter(pool, requires_grad=False)) == _layout(pool), "a bias is a Parameter"
    assert len({_layout(v) for v in (1, 16, 17, 2**31)}) == 4, "1, multiple of 16, other, beyond 32 bits"
    assert _layout(32) == _layout(4096)
    assert _layout(None) != _layout(0)


def test_kernel_refuses_a_constexpr_before_a_runtime_parameter():
    """The direct launch passes runtime arguments first, then constexprs: another order would
    hand the launcher misplaced arguments, so it is refused when the kernel is wrapped."""
    import triton
    import triton.language as tl

    from nvfp4_triton.launch import Kernel

    @triton.jit
    def constexpr_first(a_ptr, BLOCK: tl.constexpr, n):
        pass

    @triton.jit
    def constexpr_last(a_ptr, n, BLOCK: tl.constexpr):
        pass

    Kernel(constexpr_last)
    with pytest.raises(TypeError, match="constexpr"):
        Kernel(constexpr_first)
