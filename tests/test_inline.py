"""Tracing layers into torch.compile's graph (the default on a GPU), checked without a GPU.

Meta tensors stand in for CUDA ones: dynamo and AOTAutograd trace the layer as they would on a
GPU, and the test reads both graphs. (Running the traced kernels needs a GPU: tests/test_gpu.py.)
"""

import json
import subprocess
import sys
import textwrap

import pytest

from .subproc import python_env

TRACE = textwrap.dedent("""
    import json, torch
    from torch._functorch.aot_autograd import aot_module_simplified
    from torch._higher_order_ops.triton_kernel_wrap import kernel_side_table
    from nvfp4_triton import Fp8Config, TwoPassConfig, fp8, gemm, inline, ops, quantize, scratch

    assert inline.INLINE_COMPILED
    gemm.tuner.lookup = lambda key: TwoPassConfig()  # the tuner cannot time kernels on meta tensors
    gemm.fp8_tuner.lookup = lambda key: Fp8Config()
    w = quantize(torch.randn(512, 256))
    multipliers, column_scale = fp8.weight_scales(w)
    w8 = fp8.dequantize_to_fp8(w.packed, w.block_scale, multipliers).view(torch.uint8)
    packed, bits, scale, multipliers, column_scale, w8 = (
        t.to("meta") for t in (w.packed, w.scale_bits, w.global_scale, multipliers, column_scale, w8))
    bias = torch.randn(512, dtype=torch.bfloat16, device="meta")
    wide = quantize(torch.randn(64, ops.GRAPH_QUANT_MAX_K + 16))  # rows that the op quantizes itself
    wide_multipliers, wide_column = fp8.weight_scales(wide)
    wide_w8 = fp8.dequantize_to_fp8(wide.packed, wide.block_scale, wide_multipliers).view(torch.uint8)
    wide_packed, wide_bits, wide_scale, wide_multipliers, wide_column, wide_w8 = (
        t.to("meta") for t in (wide.packed, wide.scale_bits, wide.global_scale, wide_multipliers, wide_column, wide_w8))
    layers = {
        "w4a16": lambda x: ops.call_op(ops._w4a16_linear, x, packed, bits, scale, bias, False),
        "w4a8": lambda x: ops.call_fp8_op(ops._w4a8_linear, x, packed, bits, scale, multipliers, column_scale, bias,
                                          gelu=True),
        "fp8-resident": lambda x: ops.call_fp8_op(ops._fp8_linear, x, w8, column_scale.view(1, -1), bias, gelu=True),
        "w4a8-wide": lambda x: ops.call_fp8_op(ops._w4a8_linear, x, wide_packed, wide_bits, wide_scale, wide_multipliers,
                                               wide_column, None, gelu=True),
        "fp8-resident-wide": lambda x: ops.call_fp8_op(ops._fp8_linear, x, wide_w8, wide_column.view(1, -1), None,
                                                       gelu=True),
    }

    def kernel_name(node):
        kernel = kernel_side_table.get_kernel(node.kwargs["kernel_idx"])
        while hasattr(kernel, "fn"):  # the autotuner torch wraps it in, then the JIT function
            kernel = kernel.fn
        return kernel.__name__

    def trace(layer, limit, k):
        scratch.set_scratch_limit(limit)
        seen = {}

        def backend(gm, example_inputs):
            seen["plans"] = [a for n in gm.graph.nodes for a in n.args if isinstance(a, str)]

            def forward(g, _):
                seen["kernels"] = [kernel_name(n) for n in g.graph.nodes if "triton_kernel_wrapper" in str(n.target)]
                seen["ops"] = sorted({str(n.target) for n in g.graph.nodes if n.op == "call_function"})
                return g

            return aot_module_simplified(gm, example_inputs, fw_compiler=forward)

        torch._dynamo.reset()
        with torch.no_grad():
            y = torch.compile(layer, backend=backend, fullgraph=True)(
                torch.randn(2, 40, k, dtype=torch.bfloat16, device="meta"))
        seen["shape"] = list(y.shape)
        return seen

    results = {mode: [trace(layer, limit, wide.shape[1] if mode.endswith("wide") else 256) for limit in (None, 0)]
               for mode, layer in layers.items()}

    # Compiled with dynamic shapes, each M still gets its own graph and plan (the config depends on M).
    plans, shapes = [], []
    def recording(gm, example_inputs):
        plans.extend(a for n in gm.graph.nodes for a in n.args if isinstance(a, str))
        (out,) = [n for n in gm.graph.nodes if n.op == "output"][0].args[0]
        shapes.append(list(out.meta["example_value"].shape))
        return lambda *args: (torch.empty(shapes[-1], device="meta"),)  # running it would launch kernels
    torch._dynamo.reset()
    dynamic = torch.compile(layers["w4a16"], backend=recording, fullgraph=True, dynamic=True)
    with torch.no_grad():
        for m in (40, 300):
            dynamic(torch.randn(m, 256, dtype=torch.bfloat16, device="meta"))
    results["dynamic"] = {"plans": plans, "shapes": shapes}
    print(json.dumps(results))
""")


@pytest.fixture(scope="module")
def traced():
    env = python_env(NVFP4_TRITON_INLINE_COMPILE="1", TRITON_INTERPRET="0")
    out = subprocess.run([sys.executable, "-c", TRACE], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("mode, dequantizes", [("w4a16", True), ("w4a8", True), ("fp8-resident", False)])
def test_compiled_layer_is_traced_into_the_graph(traced, mode, dequantizes):
    for seen in traced[mode]:
        assert seen["shape"] == [2, 40, 512]
        assert not any("nvfp4_triton" in op for op in seen["ops"]), seen["ops"]  # no opaque call of ours
    admitted, no_scratch = traced[mode]
    gemm_op = "_scaled_mm" if mode != "w4a16" else "addmm"  # cuBLAS's GEMM as a graph op
    assert any(gemm_op in op for op in admitted["ops"]), admitted["ops"]
    if dequantizes:
        assert admitted["kernels"] == ["nvfp4_dequant_kernel"]
        assert no_scratch["kernels"] == ["w4a16_gemm_kernel"]  # two-pass off: the fused kernel
    else:
        assert admitted["kernels"] == no_scratch["kernels"] == []


@pytest.mark.parametrize("mode", ["w4a8-wide", "fp8-resident-wide"])
def test_compiled_fp8_layer_with_long_rows_is_traced_with_the_row_quantizer(traced, mode):
    """Rows longer than ``GRAPH_QUANT_MAX_K`` are quantized by our row quantizer, as in eager mode,
    not by graph ops: it (and W4A8's dequantization) are launches in the graph, cuBLAS's FP8 GEMM a
    graph op, then GELU; with the scratch limit at 0, W4A8 runs the fused W4A16 kernel instead."""
    admitted, no_scratch = traced[mode]
    for seen in (admitted, no_scratch):
        assert seen["shape"] == [2, 40, 64]
        assert not any("nvfp4_triton" in op for op in seen["ops"]), seen["ops"]  # no opaque call of ours
        assert not any("amax" in name for name in seen["ops"]), seen["ops"]  # no quantization by graph ops
        assert "aten.gelu.default" in seen["ops"]
    expected = ["fp8_row_quant_kernel", "nvfp4_dequant_kernel"] if mode == "w4a8-wide" else ["fp8_row_quant_kernel"]
    assert sorted(admitted["kernels"]) == expected, admitted["kernels"]
    assert any("_scaled_mm" in op for op in admitted["ops"]), admitted["ops"]
    if mode == "w4a8-wide":
        assert no_scratch["kernels"] == ["w4a16_gemm_kernel"], no_scratch["kernels"]
    else:  # the FP8 weight needs no scratch
        assert no_scratch["kernels"] == admitted["kernels"]


@pytest.mark.parametrize("mode", ["w4a16", "w4a8"])
def test_the_plan_in_the_graph_names_what_decides_the_launches(traced, mode):
    """The plan, a constant of dynamo's graph, names what decides the traced launches, so torch's
    compile caches (keyed by the graph) cannot hand a graph traced under one setting to another."""
    admitted, no_scratch = traced[mode]
    assert len(admitted["plans"]) == 1 and admitted["plans"][0].startswith("w4a16" if mode == "w4a16" else "fp8")
    assert ("Fp8Config" if mode == "w4a8" else "TwoPassConfig") in admitted["plans"][0]
    assert "scratch=True" in admitted["plans"][0] and "scratch=False" in no_scratch["plans"][0]


def test_dynamic_shapes_get_a_graph_per_m(traced):
    assert len(traced["dynamic"]["plans"]) == 2 and traced["dynamic"]["shapes"] == [[40, 512], [300, 512]]


def test_kernel_analysis_is_shared_only_between_launches_that_torch_cannot_tell_apart():
    """Torch's analysis of a traced launch (what the kernel writes) is shared between call sites
    only where torch would compile the same TTIR: same kernel of ours, dtypes and argument values."""
    import types

    import sympy
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    from nvfp4_triton import kernel_analysis
    from nvfp4_triton.kernels._dequant import nvfp4_dequant_kernel

    with FakeTensorMode():
        a, b = torch.empty(8, dtype=torch.bfloat16), torch.empty(64, 2, dtype=torch.bfloat16)
        c = torch.empty(8, dtype=torch.float16)
    calls = []

    def analyse(kernel, kwargs, tma_descriptor_metadata):
        calls.append(kwargs)
        return {"writes": ["out"]}

    shared = kernel_analysis._shared(analyse)
    first = shared(nvfp4_dequant_kernel, {"out": a, "n": 64, "m": sympy.Symbol("s0")}, {})
    again = shared(nvfp4_dequant_kernel, {"out": b, "n": 64, "m": sympy.Symbol("s1")}, {})
    assert len(calls) == 1 and again == first and again is not first  # each caller gets its own copy
    for kwargs in ({"out": c, "n": 64, "m": 2}, {"out": a, "n": 65, "m": 2}, {"out": a, "n": 64, "m": 2.0},
                   {"out": a, "n": 64, "m": 2, "extra": None}):
        shared(nvfp4_dequant_kernel, kwargs, {})
    assert len(calls) == 5
    shared(nvfp4_dequant_kernel, {"out": b, "n": 65, "m": 2}, {})  # as the second of those
    assert len(calls) == 5

    # Torch wraps the kernel in a new autotuner at each call site; its config's arguments count.
    def wrapped(**config):
        return types.SimpleNamespace(fn=nvfp4_dequant_kernel, configs=[types.SimpleNamespace(kwargs=config)])

    shared(wrapped(), {"out": b, "n": 65, "m": 2}, {})
    shared(wrapped(BLOCK=16), {"out": b, "n": 65, "m": 2}, {})
    shared(wrapped(BLOCK=16), {"out": b, "n": 65, "m": 2}, {})
    assert len(calls) == 6

    # Never shared: a kernel that is not ours, TMA descriptors, arguments of unknown kinds.
    assert kernel_analysis.signature(analyse, {"out": a}, {}) is None
    assert kernel_analysis.signature(nvfp4_dequant_kernel, {"out": a}, {"out": ("stable", ([16],))}) is None
    assert kernel_analysis.signature(nvfp4_dequant_kernel, {"out": a, "n": [64]}, {}) is None
    subclass = type("Wrapped", (torch.Tensor,), {})  # e.g. a functional tensor: what Triton gets is unknown
    assert kernel_analysis.signature(nvfp4_dequant_kernel, {"out": torch.ones(2).as_subclass(subclass)}, {}) is None
    assert kernel_analysis.signature(nvfp4_dequant_kernel, {"out": torch.ones(2)}, {}) is not None
    for _ in range(2):
        shared(nvfp4_dequant_kernel, {"out": a, "n": [64]}, {})
    assert len(calls) == 8


@pytest.mark.parametrize("setting, interpreted, on", [(None, "0", True), ("1", "0", True), ("0", "0", False),
                                                      (None, "1", False)])
def test_tracing_is_the_default_on_a_gpu_and_the_variable_turns_it_off(setting, interpreted, on):
    env = python_env(TRITON_INTERPRET=interpreted)
    env.pop("NVFP4_TRITON_INLINE_COMPILE", None)
    if setting is not None:
        env["NVFP4_TRITON_INLINE_COMPILE"] = setting
    code = "from nvfp4_triton import inline; print(inline.INLINE_COMPILED)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == str(on)


def test_layers_stay_opaque_where_torch_has_no_analysis_to_share(monkeypatch):
    """A torch without the analysis ``kernel_analysis`` replaces would spend minutes compiling
    FLUX's traced layers, so the layer keeps its opaque op there, and the user is told why."""
    import torch
    from torch._higher_order_ops import triton_kernel_wrap

    from nvfp4_triton import inline, kernel_analysis, quantize

    for name in kernel_analysis._ANALYSES:
        monkeypatch.delattr(triton_kernel_wrap, name, raising=False)
    assert not kernel_analysis.share_analysis()
    w = quantize(torch.randn(64, 32))
    x = torch.randn(3, 32, dtype=torch.bfloat16)
    with pytest.warns(UserWarning, match="opaque ops"):
        assert inline.call_planned(inline.w4a16_linear_inline, None, x, (w.packed, w.scale_bits, w.global_scale, None),
                                   bias=None) is None
