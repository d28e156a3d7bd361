"""Tracing W4A16 layers into torch.compile's graph (``NVFP4_TRITON_INLINE_COMPILE=1``), checked without a GPU.

Meta tensors stand in for CUDA ones: dynamo and AOTAutograd trace the layer as they would on a
GPU, and the test reads both graphs. (Running the traced kernels needs a GPU: tests/test_gpu.py.)
"""

import json
import subprocess
import sys
import textwrap

from .subproc import python_env

TRACE = textwrap.dedent("""
    import json, torch
    from torch._functorch.aot_autograd import aot_module_simplified
    from torch._higher_order_ops.triton_kernel_wrap import kernel_side_table
    from nvfp4_triton import TwoPassConfig, gemm, ops, quantize, scratch

    assert ops.INLINE_COMPILED
    gemm.tuner.lookup = lambda key: TwoPassConfig()  # the tuner cannot time kernels on meta tensors
    w = quantize(torch.randn(512, 256))
    packed, bits, scale = (t.to("meta") for t in (w.packed, w.scale_bits, w.global_scale))
    bias = torch.randn(512, dtype=torch.bfloat16, device="meta")

    def kernel_name(node):
        kernel = kernel_side_table.get_kernel(node.kwargs["kernel_idx"])
        while hasattr(kernel, "fn"):  # the autotuner torch wraps it in, then the JIT function
            kernel = kernel.fn
        return kernel.__name__

    results = []
    for limit in (None, 0):
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
        layer = lambda x: ops.call_op(ops._w4a16_linear, x, packed, bits, scale, bias, False)
        with torch.no_grad():
            y = torch.compile(layer, backend=backend, fullgraph=True)(
                torch.randn(2, 40, 256, dtype=torch.bfloat16, device="meta"))
        seen["shape"] = list(y.shape)
        results.append(seen)

    # Compiled with dynamic shapes, each M still gets its own graph and plan (the config depends on M).
    plans, shapes = [], []
    def recording(gm, example_inputs):
        plans.extend(a for n in gm.graph.nodes for a in n.args if isinstance(a, str))
        (out,) = [n for n in gm.graph.nodes if n.op == "output"][0].args[0]
        shapes.append(list(out.meta["example_value"].shape))
        return lambda *args: (torch.empty(shapes[-1], device="meta"),)  # running it would launch kernels
    torch._dynamo.reset()
    dynamic = torch.compile(layer, backend=recording, fullgraph=True, dynamic=True)
    with torch.no_grad():
        for m in (40, 300):
            dynamic(torch.randn(m, 256, dtype=torch.bfloat16, device="meta"))
    results.append({"plans": plans, "shapes": shapes})
    print(json.dumps(results))
""")


def test_compiled_w4a16_layer_is_traced_into_the_graph_with_its_plan():
    env = python_env(NVFP4_TRITON_INLINE_COMPILE="1", TRITON_INTERPRET="0")
    out = subprocess.run([sys.executable, "-c", TRACE], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    admitted, no_scratch, dynamic = json.loads(out.stdout.strip().splitlines()[-1])
    for seen in (admitted, no_scratch):
        assert seen["shape"] == [2, 40, 512]
        assert not any("nvfp4_triton.w4a16_linear.default" in op for op in seen["ops"])
    # The plan, a constant of dynamo's graph, names what decides the traced launches, so torch's
    # compile caches (keyed by the graph) cannot hand a graph traced under one setting to another.
    assert len(admitted["plans"]) == 1 and "TwoPassConfig" in admitted["plans"][0]
    assert "scratch=True" in admitted["plans"][0] and "scratch=False" in no_scratch["plans"][0]
    assert admitted["kernels"] == ["nvfp4_dequant_kernel"]
    assert any("addmm" in op for op in admitted["ops"])  # cuBLAS's GEMM as a graph op
    assert no_scratch["kernels"] == ["w4a16_gemm_kernel"]  # two-pass off: the fused kernel
    assert len(dynamic["plans"]) == 2 and dynamic["shapes"] == [[40, 512], [300, 512]]
