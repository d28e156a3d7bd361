"""`NVFP4Linear`: construction, forward, ModelOpt-named state dict, dtype/device moves."""

import pytest
import torch
from torch import nn

from nvfp4_triton import FP8Linear, NVFP4Linear, quantize

from .checks import assert_matches_reference


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))


@pytest.fixture
def linear():
    torch.manual_seed(0)
    return nn.Linear(96, 40).to(torch.bfloat16)


def test_from_linear_quantizes_weight_and_keeps_bias(linear, device):
    layer = NVFP4Linear.from_linear(linear).to(device)
    expected = quantize(linear.weight.detach())
    assert torch.equal(layer.weight.cpu(), expected.packed)
    assert _same_bits(layer.weight_scale.cpu(), expected.block_scale)
    assert torch.equal(layer.bias.cpu(), linear.bias.detach())
    x = torch.randn(2, 5, 96, dtype=torch.bfloat16, device=device)
    assert_matches_reference(layer(x), x, layer.nvfp4_weight, layer.bias)


def test_output_is_close_to_the_bf16_layer(linear, device):
    layer = NVFP4Linear.from_linear(linear).to(device)
    x = torch.randn(64, 96, dtype=torch.bfloat16)
    with torch.no_grad():
        want = linear(x).double()
    got = layer(x.to(device)).cpu().double()
    # 4-bit weights: ModelOpt's recipe gives roughly 10% relative error on Gaussian weights.
    assert float((got - want).norm() / want.norm()) < 0.2


def test_state_dict_uses_modelopt_names_and_dtypes(linear):
    sd = NVFP4Linear.from_linear(linear).state_dict()
    assert {k: (v.dtype, tuple(v.shape)) for k, v in sd.items()} == {
        "weight": (torch.uint8, (40, 48)),
        "weight_scale": (torch.float8_e4m3fn, (40, 6)),
        "weight_scale_2": (torch.float32, ()),
        "bias": (torch.bfloat16, (40,)),
    }


def test_load_state_dict_round_trips_and_adopts_input_scale(linear, device):
    src = NVFP4Linear.from_linear(linear)
    sd = src.state_dict() | {"input_scale": torch.tensor(0.25)}
    dst = NVFP4Linear(96, 40)
    dst.load_state_dict(sd)
    assert dst.input_scale.item() == 0.25
    assert "input_scale" in dst.state_dict()
    for name in ("weight", "weight_scale", "weight_scale_2", "bias"):
        assert _same_bits(getattr(dst, name), getattr(src, name)), name
    dst.load_state_dict(src.state_dict())
    assert dst.input_scale is None
    x = torch.randn(3, 96, dtype=torch.bfloat16, device=device)
    assert torch.equal(dst.to(device)(x), src.to(device)(x))


@pytest.mark.parametrize("name, bad", [("weight", torch.zeros(40, 48)), ("weight_scale", torch.ones(40, 6))])
def test_load_state_dict_refuses_wrong_dtypes(linear, name, bad):
    sd = NVFP4Linear.from_linear(linear).state_dict() | {name: bad}
    with pytest.raises(RuntimeError, match=f"{name}: expected dtype"):
        NVFP4Linear(96, 40).load_state_dict(sd)


def test_load_state_dict_refuses_wrong_shapes(linear):
    sd = NVFP4Linear.from_linear(linear).state_dict()
    with pytest.raises(RuntimeError, match="size mismatch for weight"):
        NVFP4Linear(128, 40).load_state_dict(sd)


def test_module_dtype_casts_leave_quantized_buffers_alone(linear):
    layer = NVFP4Linear.from_linear(linear)
    layer.input_scale = torch.tensor(0.5)
    before = {n: getattr(layer, n).clone() for n in ("weight", "weight_scale", "weight_scale_2", "input_scale")}
    layer.to(torch.float16)
    layer.half()
    assert layer.bias.dtype == torch.float16
    for name, t in before.items():
        assert _same_bits(getattr(layer, name), t), name
    layer.to("meta")
    assert layer.weight.device.type == "meta" and layer.weight_scale.dtype == torch.float8_e4m3fn


def test_extra_repr_shows_features_and_bytes(linear):
    text = repr(NVFP4Linear.from_linear(linear))
    assert "in_features=96, out_features=40" in text
    assert "weight_bytes=2164" in text  # 40*48 codes + 40*6 scales + 4


def test_from_weight_keeps_input_scale_on_the_weight_device(linear):
    q = quantize(linear.weight.detach()).to("meta")
    layer = NVFP4Linear.from_weight(q, input_scale=torch.tensor([0.5]))
    assert layer.input_scale.device.type == "meta" and layer.input_scale.shape == ()


def test_from_weight_converts_swizzled_scales_once(linear):
    q = quantize(linear.weight.detach(), scale_layout="swizzled")
    layer = NVFP4Linear.from_weight(q, linear.bias.detach())
    assert tuple(layer.weight_scale.shape) == (40, 6)
    assert torch.equal(layer.nvfp4_weight.dequantize(), q.dequantize())


@pytest.mark.parametrize(
    "args, match",
    [((20, 8), "multiple of 16"), ((0, 8), "multiple of 16"), ((32, 0), "out_features must be >= 1")],
)
def test_constructor_rejects_bad_sizes(args, match):
    with pytest.raises(ValueError, match=match):
        NVFP4Linear(*args)


def test_from_linear_rejects_other_modules():
    with pytest.raises(TypeError, match="expected an nn.Linear"):
        NVFP4Linear.from_linear(nn.Conv1d(16, 16, 1))


def test_no_bias_layer(device):
    layer = NVFP4Linear.from_linear(nn.Linear(32, 16, bias=False)).to(device)
    assert layer.bias is None and "bias" not in layer.state_dict()
    x = torch.randn(4, 32, dtype=torch.float16, device=device)
    assert_matches_reference(layer(x), x, layer.nvfp4_weight)


def test_module_traces_into_one_graph(linear, device):
    # aot_eager runs on the CPU too: fullgraph fails on any graph break, including in the module's own code.
    layer = NVFP4Linear.from_linear(linear).to(device)
    torch._dynamo.reset()
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
    x = torch.randn(3, 96, dtype=torch.bfloat16, device=device)
    with torch.no_grad():
        assert torch.equal(compiled(x), layer(x))
        layer.to(device)  # buffers unchanged: still the same graph
        assert torch.equal(compiled(x), layer(x))


def _built(how: str, mode: str | None, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    layer = NVFP4Linear.from_linear(nn.Linear(64, 48, dtype=torch.bfloat16))
    if how == "load_state_dict":
        loaded = NVFP4Linear(64, 48)
        loaded.load_state_dict(layer.state_dict())
        layer = loaded
    elif how == "meta, then assign":  # how load_transformer builds a model
        state = layer.state_dict()
        layer = NVFP4Linear(64, 48, device="meta")
        layer.load_state_dict(state, assign=True)
    layer = layer.to(device)  # on the CPU machine, a no-op
    if mode == "resident fp8":
        return FP8Linear.from_nvfp4(layer)
    layer.activation = mode
    return layer


@pytest.mark.parametrize("how", ["from_linear", "load_state_dict", "meta, then assign"])
@pytest.mark.parametrize("mode", [None, "fp8", "resident fp8"])
def test_a_fresh_layer_compiles_once(how, mode, device):
    """Whatever the layer caches about its weight exists before the first trace: built inside it,
    it would be stored as a side effect, and the second call would compile the model again."""
    compilations = []

    def counting_backend(gm, example_inputs):
        compilations.append(gm)
        return gm.forward

    layer = _built(how, mode, device)
    torch._dynamo.reset()
    compiled = torch.compile(layer, backend=counting_backend, fullgraph=True)
    with torch.no_grad():
        for _ in range(3):
            compiled(torch.randn(130, 64, dtype=torch.bfloat16, device=device))
    assert len(compilations) == 1


@pytest.mark.parametrize("mode", [None, "fp8", "resident fp8"])
def test_compiled_layer_reads_only_its_own_parameters_and_buffers(mode, device):
    """Compiled, a layer's graph takes x and the layer's registered tensors, reached as such.

    Reached through a cache instead (the ``NVFP4Weight``, a tuple of FP8 scales or views), the
    same tensors make dynamo guard each layer with Python identity checks on every call: on an
    H200 that cost a compiled FLUX step 3.2-3.3 ms of host time (bench/RESULTS.md, session 7).
    """
    sources = []

    def recording_backend(gm, example_inputs):
        for node in gm.graph.nodes:
            if node.op == "placeholder":
                name = node.meta["grapharg"].source.name
                sources.append(name() if callable(name) else name)  # a method in older torch, a property in newer
        return gm.forward

    layer = _built("from_linear", mode, device)
    torch._dynamo.reset()
    with torch.no_grad():
        torch.compile(layer, backend=recording_backend, fullgraph=True)(
            torch.randn(130, 64, dtype=torch.bfloat16, device=device))
    # Compared by suffix: what the root is called (the module, the frame's local) varies across torch versions.
    own = [f"._buffers['{name}']" for name, _ in layer.named_buffers()]
    own += [f"._parameters['{name}']" for name, _ in layer.named_parameters()]
    others = [source for source in sources if not source.endswith(tuple(own))]
    assert len(others) == 1 and others[0].endswith("['x']"), others


def test_fp8_scales_stay_out_of_the_state_dict_and_keep_float32(linear, device):
    """``activation="fp8"`` keeps its weight scales as buffers (for torch.compile) but saves only
    ModelOpt's tensors, and a dtype cast leaves the scales in float32."""
    layer = NVFP4Linear.from_linear(linear).to(device)
    plain = set(layer.state_dict())
    layer.activation = "fp8"
    assert set(layer.state_dict()) == plain
    layer.half()
    assert layer.fp8_multipliers.dtype == layer.fp8_column_scale.dtype == torch.float32
    layer.activation = None
    assert layer.fp8_multipliers is None and layer.fp8_column_scale is None


def test_fp8_mode_follows_weights_loaded_after_a_forward(device, monkeypatch):
    from nvfp4_triton import Fp8Config, gemm

    monkeypatch.setattr(gemm.fp8_tuner, "lookup", lambda key: Fp8Config(fast_accum=False))  # the FP8 strategy
    torch.manual_seed(0)
    layer = NVFP4Linear.from_linear(nn.Linear(64, 48, dtype=torch.bfloat16)).to(device)
    other = nn.Linear(64, 48, dtype=torch.bfloat16)
    with torch.no_grad():
        other.weight.mul_(3)  # another global scale,
        other.weight[:5] *= 0.01  # and rows whose FP8 multipliers differ from the first weight's
    fresh = NVFP4Linear.from_linear(other).to(device)
    layer.activation = fresh.activation = "fp8"
    x = torch.randn(130, 64, dtype=torch.bfloat16, device=device)
    with torch.no_grad():
        layer(x)
        layer.load_state_dict(fresh.state_dict())
        assert torch.equal(layer(x), fresh(x))


def test_to_empty_gives_buffers_of_their_own_dtypes(linear, device):
    """The meta-device pattern (build on meta, ``to_empty``, then load) used by accelerate and FSDP."""
    layer = NVFP4Linear(96, 40, device="meta").to_empty(device=device)
    assert {name: (t.dtype, t.device.type) for name, t in layer.state_dict().items()} == {
        "weight": (torch.uint8, device.type), "weight_scale": (torch.float8_e4m3fn, device.type),
        "weight_scale_2": (torch.float32, device.type), "bias": (torch.bfloat16, device.type)}
    source = NVFP4Linear.from_linear(linear).to(device)
    layer.load_state_dict(source.state_dict())
    x = torch.randn(3, 96, dtype=torch.bfloat16, device=device)
    with torch.no_grad():
        assert torch.equal(layer(x), source(x))


def test_a_failed_move_leaves_the_layer_as_it_was():
    layer = NVFP4Linear(32, 16, bias=False, device="meta")
    with pytest.raises(NotImplementedError):
        layer.to("cpu")  # a meta tensor has no data to copy
    assert layer.weight.is_meta and layer.weight_scale.dtype == torch.float8_e4m3fn


def test_unknown_activation_is_refused_when_set():
    layer = NVFP4Linear(32, 16)
    with pytest.raises(ValueError, match="activation must be one of"):
        layer.activation = "int8"


def test_compiled_fp8_layer_follows_weight_buffers_assigned_after_compiling(device):
    """``activation="fp8"`` derives FP8 scales from the weight; a compiled forward reads them as
    buffers. Assigning other quantized buffers must not leave the compiled layer on the old scales."""
    torch.manual_seed(0)
    layer, other = (NVFP4Linear.from_linear(nn.Linear(64, 48, dtype=torch.bfloat16)).to(device) for _ in range(2))
    other.weight_scale_2 = other.weight_scale_2 * 3  # global scales that differ, as between real layers
    for ly in (layer, other):
        ly.activation = "fp8"
    x = torch.randn(130, 64, dtype=torch.bfloat16, device=device)
    torch._dynamo.reset()
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        assert torch.equal(compiled(x), layer(x))
        layer.bias = other.bias
        for name in ("weight", "weight_scale", "weight_scale_2"):
            setattr(layer, name, getattr(other, name))
        assert torch.equal(compiled(x), other(x))
