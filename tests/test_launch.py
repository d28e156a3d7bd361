"""The launch key: a compiled kernel is reused only for arguments Triton would have compiled it for."""

import pytest
import torch

from nvfp4_triton.launch import _layout


def test_layout_separates_what_triton_specializes_on():
    def layout(arg):
        return _layout((arg,))

    pool = torch.empty(64, dtype=torch.bfloat16)
    assert pool.data_ptr() % 16 == 0
    assert layout(pool[0:]) != layout(pool[1:]), "16-byte aligned and 2 bytes off must not share a kernel"
    assert layout(pool[0:]) == layout(pool[8:]), "both 16-byte aligned"
    assert layout(pool) != layout(pool.view(torch.int16)), "dtype is part of the signature"
    assert layout(torch.nn.Parameter(pool, requires_grad=False)) == layout(pool), "a bias is a Parameter"
    assert len({layout(v) for v in (1, 16, 17, 2**31)}) == 4, "1, multiple of 16, other, beyond 32 bits"
    assert layout(32) == layout(4096)
    assert layout(None) != layout(0)
    assert layout(True) != layout(1), "a flag is not an integer argument"
    assert _layout((pool, 1)) != _layout((1, pool)), "positions are part of the signature"


def test_layout_of_tma_descriptors_is_their_tile_not_their_tensor():
    """x's descriptor is made anew on every call of the wgmma kernel: descriptors of the same dtype,
    tile and shared layout must share a compiled kernel (its shape and strides travel at launch),
    others not."""
    gluon = pytest.importorskip("triton.experimental.gluon.nvidia.hopper")
    from triton.experimental.gluon import language as gl

    swizzled = gl.NVMMASharedLayout(swizzle_byte_width=128, element_bitwidth=16, rank=2)

    def layout(x, tile, shared=swizzled):
        return _layout((gluon.TensorDescriptor.from_tensor(x, tile, shared),))

    a, b = torch.empty(512, 3072, dtype=torch.bfloat16), torch.empty(4096, 12288, dtype=torch.bfloat16)
    assert layout(a, [256, 64]) == layout(b, [256, 64])
    assert layout(a, [256, 64]) != layout(a, [128, 64])
    assert layout(a, [256, 64]) != layout(a.view(torch.float16), [256, 64])
    assert layout(a, [256, 64]) != layout(a, [256, 64], gl.NVMMASharedLayout(swizzle_byte_width=64,
                                                                             element_bitwidth=16, rank=2))


def test_empty_launch_hooks_are_passed_as_none():
    """Triton 3.6's launch hooks are chains that are never None: an empty one must not cost a
    metadata dictionary and a Python call per launch, and a hooked one must still be called."""
    from triton import knobs

    from nvfp4_triton.launch import _hook

    chain = knobs.runtime.launch_enter_hook
    assert _hook(None) is None
    if hasattr(chain, "calls"):
        assert not chain.calls and _hook(chain) is None
        chain.add(print)
        try:
            assert _hook(chain) is chain
        finally:
            chain.remove(print)
    assert _hook(print) is print, "a plain function set as the hook"


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
