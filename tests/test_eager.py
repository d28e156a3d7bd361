"""Eager layers keep their GEMMs ready per x layout (``eager.EagerPlans``): a kept plan must give
what the full dispatch gives, for every layout, and never outlive what it was made from."""

import copy
import io

import pytest
import torch
from torch import nn

from nvfp4_triton import FP8Linear, NVFP4Linear, nvfp4_linear
from nvfp4_triton.eager import EagerPlans

from .checks import assert_matches_reference


def _layer(seed: int, n: int = 40, k: int = 96, bias: bool = True) -> NVFP4Linear:
    torch.manual_seed(seed)
    return NVFP4Linear.from_linear(nn.Linear(k, n, bias=bias, dtype=torch.bfloat16))


def _layouts(device: torch.device) -> list[torch.Tensor]:
    """x of several layouts with in_features 96: 2-D, 3-D, a row slice, a transposed copy, fp16."""
    wide = torch.randn(7, 200, dtype=torch.bfloat16, device=device)
    return [torch.randn(5, 96, dtype=torch.bfloat16, device=device),
            torch.randn(2, 3, 96, dtype=torch.bfloat16, device=device),
            wide[:, 50:146],  # rows 200 apart, not 16-byte aligned
            torch.randn(96, 6, dtype=torch.bfloat16, device=device).t(),  # column-major
            torch.randn(4, 96, dtype=torch.float16, device=device)]


@pytest.mark.parametrize("activation", [None, "fp8", "nvfp4"])
def test_kept_plans_give_what_the_full_dispatch_gives(device, activation):
    layer = _layer(1).to(device)
    layer.activation = activation
    if activation == "nvfp4":
        layer.input_scale = torch.tensor(0.01, device=device)
    xs = _layouts(device)
    if activation == "fp8":
        xs = [x for x in xs if x.dtype == torch.bfloat16]
    with torch.no_grad():
        for _ in range(2):  # the first round makes the plans, the second runs them
            for x in xs:
                # Fresh values each call: a plan must read the x it is given.
                x = x.clone() if x.is_contiguous() else x
                x.normal_()
                expected = nvfp4_linear(x, layer.nvfp4_weight, layer.bias, activation=activation,
                                        input_scale=layer.input_scale,
                                        fp8_scales=layer._fp8_scales_of(layer.nvfp4_weight) if activation == "fp8"
                                        else None)
                assert torch.equal(layer(x), expected)
    assert len(layer._eager) == len(xs)
    if activation is None:
        assert_matches_reference(layer(xs[1]), xs[1], layer.nvfp4_weight, layer.bias)


def test_a_layer_drops_its_plans_when_it_changes(device):
    """Settings, a replaced bias, new weights by assignment or by load, and dtype moves: each must
    show in the next call with an x layout the layer has already run."""
    layer, other = _layer(2).to(device), _layer(3).to(device)
    x = torch.randn(6, 96, dtype=torch.bfloat16, device=device)

    def fresh_reference(layer, x=x):
        return nvfp4_linear(x, layer.nvfp4_weight, layer.bias, gelu=layer.gelu)

    with torch.no_grad():
        layer(x)
        layer.gelu = True
        assert torch.equal(layer(x), fresh_reference(layer))
        layer.bias = nn.Parameter(torch.randn(40, dtype=torch.bfloat16, device=device), requires_grad=False)
        assert torch.equal(layer(x), fresh_reference(layer))
        layer.weight = other.weight.clone()
        assert torch.equal(layer(x), fresh_reference(layer))
        layer.load_state_dict(other.state_dict())
        assert torch.equal(layer(x), nvfp4_linear(x, other.nvfp4_weight, other.bias, gelu=True))
        # Every tensor replaced by a new one (a device move; here meta and back), then filled in place.
        layer.to("meta").to_empty(device=device)
        for name, t in _layer(9).to(device).state_dict().items():
            getattr(layer, name).copy_(t)
        assert torch.equal(layer(x), fresh_reference(layer))
        half = x.half()
        layer.half()  # the bias becomes fp16; the quantized buffers keep their dtypes
        assert layer.bias.dtype == torch.float16
        assert torch.equal(layer(half), fresh_reference(layer, half))


def test_a_kept_plan_still_refuses_an_x_that_requires_grad(device):
    layer = _layer(4).to(device)
    x = torch.randn(3, 96, dtype=torch.bfloat16, device=device)
    layer(x)
    with pytest.raises(RuntimeError, match="requires grad"):
        layer(x.clone().requires_grad_())


def test_copies_and_pickles_run_their_own_weights(device):
    """A deep copy made after a call must not keep plans that read the original's tensors."""
    layer = _layer(5).to(device)
    x = torch.randn(3, 96, dtype=torch.bfloat16, device=device)
    with torch.no_grad():
        layer(x)
        twin = copy.deepcopy(layer)
        twin.weight.copy_(_layer(6).weight.to(device))  # in place: no setattr tells the copy
        assert torch.equal(twin(x), nvfp4_linear(x, twin.nvfp4_weight, twin.bias))
        assert not torch.equal(twin(x), layer(x))
        buffer = io.BytesIO()
        torch.save(layer, buffer)
        buffer.seek(0)
        loaded = torch.load(buffer, weights_only=False)
        assert len(loaded._eager) == 0 and torch.equal(loaded(x), layer(x))


def test_plans_per_layer_are_bounded(device):
    layer = _layer(7).to(device)
    with torch.no_grad():
        for m in range(1, EagerPlans.LIMIT + 4):
            x = torch.randn(m, 96, dtype=torch.bfloat16, device=device)
            assert torch.equal(layer(x), nvfp4_linear(x, layer.nvfp4_weight, layer.bias))
    assert len(layer._eager) == EagerPlans.LIMIT


def test_fp8_resident_layer_keeps_plans_that_follow_its_bias(device):
    layer = FP8Linear.from_nvfp4(_layer(8).to(device))
    reference = FP8Linear(layer.weight, layer.weight_scale, layer.bias)
    x = torch.randn(2, 3, 96, dtype=torch.bfloat16, device=device)
    with torch.no_grad():
        first = layer(x)
        assert torch.equal(layer(x), first) and len(layer._eager) == 1
        layer.bias = nn.Parameter(layer.bias * 2, requires_grad=False)
        reference.bias = nn.Parameter(reference.bias * 2, requires_grad=False)
        assert torch.equal(layer(x), reference(x)) and not torch.equal(layer(x), first)
    with pytest.raises(RuntimeError, match="requires grad"):
        layer(x.clone().requires_grad_())


def test_making_a_runner_leaves_no_reference_cycles(device):
    """``nvfp4_linear`` and the tuner make a runner on every call: a reference cycle in one would be
    garbage for the collector each time, and a process's full collections paused eager FLUX steps
    for about 40 ms (bench/RESULTS.md, session 18)."""
    import gc

    from nvfp4_triton import Fp8Config, GemvConfig, TileConfig, TwoPassConfig, fp8, gemm

    q = _layer(10).nvfp4_weight.to(device)
    x = torch.randn(5, 96, dtype=torch.bfloat16, device=device)
    multipliers, column_scale = fp8.weight_scales(q)
    w8 = fp8.dequantize_to_fp8(q.packed, q.block_scale, multipliers)
    makers = [lambda cfg=cfg: gemm.w4a16_runner(x, q.packed, q.block_scale, q.global_scale, None, cfg)
              for cfg in (TileConfig(16, 32, 32, split_k=2), GemvConfig(1, 16, 32), TwoPassConfig())]
    makers.append(lambda: gemm.w4a8_runner(x, q.packed, q.block_scale, q.global_scale, multipliers, column_scale,
                                           None, Fp8Config()))
    makers.append(lambda: gemm.fp8_runner(x, w8, column_scale, None))
    gc.collect()
    gc.disable()
    try:
        for make in makers:
            make()
        assert gc.collect() == 0
    finally:
        gc.enable()


@pytest.mark.parametrize("activation", [None, "fp8"])
def test_a_kept_plan_follows_the_scratch_limit_at_once(device, monkeypatch, activation):
    """A layer that ran two-pass keeps no scratch buffer of its own: after ``set_scratch_limit(0)``
    its next call frees nothing more, holds nothing, and runs the fused kernel (exact weights)."""
    from nvfp4_triton import Fp8Config, TwoPassConfig, gemm, scratch

    monkeypatch.setattr(scratch, "_override", scratch._override)  # restore the limit afterwards
    which = gemm.fp8_tuner if activation else gemm.tuner
    monkeypatch.setattr(which, "lookup", lambda key: Fp8Config() if activation else TwoPassConfig())
    layer = _layer(11).to(device)
    layer.activation = activation
    x = torch.randn(6, 96, dtype=torch.bfloat16, device=device)
    scratch.release_scratch()
    try:
        with torch.no_grad():
            layer(x)
            assert scratch.scratch_bytes() > 0
            scratch.set_scratch_limit(0)
            assert scratch.scratch_bytes() == 0
            y = layer(x)
        assert scratch.scratch_bytes() == 0
        assert_matches_reference(y, x, layer.nvfp4_weight, layer.bias)  # the fused kernel, not FP8
    finally:
        scratch.release_scratch()
