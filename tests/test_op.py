"""`nvfp4_linear` argument checking and its torch custom-op registration."""

import subprocess
import sys
import textwrap

import pytest
import torch

from nvfp4_triton import FP8Linear, NVFP4Linear, fp8, nvfp4_linear, quantize
from nvfp4_triton.ops import _fp8_linear, _w4a4_linear, _w4a8_linear, _w4a16_linear

from .checks import assert_matches_reference


@pytest.fixture
def problem(device):
    torch.manual_seed(0)
    q = quantize(torch.randn(48, 64)).to(device)
    x = torch.randn(3, 64, dtype=torch.bfloat16, device=device)
    bias = torch.randn(48, dtype=torch.bfloat16, device=device)
    return x, q, bias


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda x, q, b: (x.float(), q, b), TypeError, "x must be bfloat16 or float16, got torch.float32"),
        (lambda x, q, b: (x[:, :32], q, b), ValueError, r"x must have shape \[\.\.\., 64\]"),
        (lambda x, q, b: (x[0, 0], q, b), ValueError, r"x must have shape \[\.\.\., 64\]"),
        (lambda x, q, b: ([[1.0]], q, b), TypeError, "x must be a torch.Tensor"),
        (lambda x, q, b: (x, q.packed, b), TypeError, "weight must be an NVFP4Weight"),
        (lambda x, q, b: (x, q.with_scale_layout("swizzled"), b), ValueError, "scale_layout='swizzled'"),
        (lambda x, q, b: (x, q, b[:40]), ValueError, r"bias must have shape \(48,\)"),
        (lambda x, q, b: (x, q, b.to(torch.int32)), TypeError, "bias must be bfloat16, float16 or float32"),
        (lambda x, q, b: (x, q, b.reshape(1, 48)), ValueError, r"bias must have shape \(48,\)"),
        (lambda x, q, b: (x, q, torch.stack([b, b], 1)[:, 0]), ValueError, "bias must be contiguous"),
        (lambda x, q, b: (x, q, 1.0), TypeError, "bias must be a torch.Tensor or None"),
        (lambda x, q, b: (x.to("meta"), q, None), ValueError, "x on meta"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(problem, make, error, match):
    x, q, bias = make(*problem)
    with pytest.raises(error, match=match):
        nvfp4_linear(x, q, bias)


def test_inputs_that_require_grad_are_refused_while_grad_is_on(problem):
    """The GEMMs have no backward: asking for a gradient through them must fail loudly, not lose it."""
    x, q, bias = problem
    resident = FP8Linear.from_nvfp4(NVFP4Linear.from_weight(q, bias))
    wants_grad = x.clone().requires_grad_()
    with pytest.raises(RuntimeError, match="x requires grad, but nvfp4_triton's GEMMs are inference-only"):
        nvfp4_linear(wants_grad, q, bias)
    with pytest.raises(RuntimeError, match="bias requires grad"):
        nvfp4_linear(x, q, bias.clone().requires_grad_())
    with pytest.raises(RuntimeError, match="FP8Linear: x requires grad"):
        resident(wants_grad)
    with torch.no_grad():
        assert torch.equal(nvfp4_linear(wants_grad, q, bias), nvfp4_linear(x, q, bias))
        assert torch.equal(resident(wants_grad), resident(x))


def test_custom_ops_pass_torch_opcheck(problem):
    x, q, bias = problem
    bits = q.block_scale.view(torch.uint8)
    input_scale = (x.float().abs().amax() / 2688).reshape(())
    multipliers, column = fp8.weight_scales(q)
    xq, row_scale = fp8.quantize_rows(x)
    xq_bits = xq.view(torch.uint8)
    resident = FP8Linear.from_nvfp4(NVFP4Linear.from_weight(q))
    for b in (bias, None):
        for gelu in (False, True):
            for op, args in [
                (_w4a16_linear, (x, q.packed, bits, q.global_scale, b, gelu)),
                (_w4a4_linear, (x, q.packed, bits, q.global_scale, input_scale, b, gelu)),
                (_w4a8_linear, (x, q.packed, bits, q.global_scale, multipliers, column, b, gelu)),
                (_w4a8_linear, (x, q.packed, bits, q.global_scale, multipliers, column, b, gelu, xq_bits, row_scale)),
                (_fp8_linear, (x, resident.weight.view(torch.uint8), resident.weight_scale.view(1, -1), b, gelu)),
                (_fp8_linear, (x, resident.weight.view(torch.uint8), resident.weight_scale.view(1, -1), b, gelu,
                               xq_bits, row_scale)),
            ]:
                torch.library.opcheck(op, args, test_utils=("test_schema", "test_faketensor",
                                                             "test_aot_dispatch_dynamic"))


@pytest.mark.parametrize("mode", [{"activation": "fp8"}, {"activation": "nvfp4"}, {"resident": "fp8"}])
def test_every_mode_traces_into_one_graph(problem, mode):
    x, q, bias = problem
    layer = NVFP4Linear.from_weight(q, bias, input_scale=(x.float().abs().amax() / 2688).reshape(()))
    layer.activation, layer.gelu = mode.get("activation"), True
    if "resident" in mode:
        layer = FP8Linear.from_nvfp4(layer)
    torch._dynamo.reset()
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
    if mode.get("activation") == "nvfp4":
        assert torch.equal(compiled(x), layer(x))
    else:  # FP8 paths: compiled, GELU runs after the op, on the output already rounded to x's dtype
        expected = layer(x)
        torch.testing.assert_close(compiled(x), expected, rtol=1.6e-2, atol=2**-8 * float(expected.abs().max()))


def test_traces_into_one_graph_without_breaks(problem):
    # aot_eager traces through the fake implementation exactly as inductor does, and needs no C++ compiler.
    x, q, bias = problem
    torch._dynamo.reset()
    compiled = torch.compile(lambda t: nvfp4_linear(t, q, bias), backend="aot_eager", fullgraph=True)
    assert_matches_reference(compiled(x), x, q, bias)
    explanation = torch._dynamo.explain(lambda t: nvfp4_linear(t, q, bias))(x)
    assert explanation.graph_break_count == 0


def test_cpu_tensors_without_interpreter_give_a_clear_error(tmp_path):
    script = textwrap.dedent("""
        import os, torch
        os.environ.pop("TRITON_INTERPRET", None)
        import nvfp4_triton as nt
        q = nt.quantize(torch.randn(16, 32))
        try:
            nt.nvfp4_linear(torch.randn(2, 32, dtype=torch.bfloat16), q)
        except RuntimeError as e:
            print("ERROR:", e)
    """)
    env = {k: v for k, v in __import__("os").environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert "ERROR: nvfp4_linear: x is on the CPU" in out.stdout, out.stdout + out.stderr
    assert "TRITON_INTERPRET=1" in out.stdout
