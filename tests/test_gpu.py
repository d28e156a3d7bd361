"""GPU-only checks: FLUX-sized GEMMs, torch.compile with inductor, CUDA-graph capture and replay."""

import json
import re
import subprocess
import sys
import textwrap

import pytest
import torch
from hypothesis import given, settings, strategies as st

from nvfp4_triton import NVFP4Linear, nvfp4_linear, quantize
from nvfp4_triton.ops import GRAPH_QUANT_MAX_K

from .checks import assert_matches_reference
from .subproc import python_env

pytestmark = pytest.mark.gpu

# (N, K) of every NVFP4 linear in FLUX.1-dev (ModelOpt recipe), see ../shared/docs/flux-shapes.md.
FLUX_NK = [(3072, 3072), (12288, 3072), (3072, 12288), (3072, 15360), (18432, 3072), (9216, 3072)]
FLUX_M = [1, 2, 16, 512, 4096, 4608]


def _weight(n, k, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    return quantize(torch.randn(n, k, device="cuda", generator=g, dtype=torch.bfloat16))


@pytest.mark.parametrize("n, k", FLUX_NK)
@pytest.mark.parametrize("m", FLUX_M)
def test_flux_shapes_match_reference(m, n, k):
    q = _weight(n, k, seed=m)
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    bias = torch.randn(n, device="cuda", dtype=torch.bfloat16)
    assert_matches_reference(nvfp4_linear(x, q, bias), x, q, bias)


@settings(max_examples=12)
@given(
    m=st.integers(1, 5000),
    nk=st.sampled_from(FLUX_NK),
    dtype=st.sampled_from([torch.bfloat16, torch.float16]),
    has_bias=st.booleans(),
    batch=st.sampled_from([None, 2]),
)
def test_flux_sized_properties(m, nk, dtype, has_bias, batch):
    n, k = nk
    q = _weight(n, k, seed=m)
    shape = (m, k) if batch is None else (batch, -(-m // batch), k)
    x = torch.randn(shape, device="cuda", dtype=dtype)
    bias = torch.randn(n, device="cuda", dtype=dtype) if has_bias else None
    assert_matches_reference(nvfp4_linear(x, q, bias), x, q, bias)


@pytest.mark.parametrize("m, n, k", [(4096, 12288, 3072), (512, 3072, 12288), (1, 18432, 3072)])
def test_two_pass_strategy_at_flux_sizes(m, n, k):
    from nvfp4_triton import TwoPassConfig
    from nvfp4_triton.gemm import w4a16_gemm

    q = _weight(n, k, seed=m)
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    bias = torch.randn(n, device="cuda", dtype=torch.bfloat16)
    out = torch.full((m, n), float("nan"), device="cuda", dtype=torch.bfloat16)
    y = w4a16_gemm(x, q.packed, q.block_scale, q.global_scale, bias, config=TwoPassConfig(), out=out)
    assert_matches_reference(y, x, q, bias, rounded_weight=True)


@pytest.mark.parametrize("traced", [True, False])
def test_inductor_compiles_a_model_without_graph_breaks(traced, monkeypatch):
    """Both ways torch.compile can take our layers: traced into its graph (the default) and as
    opaque ops (``NVFP4_TRITON_INLINE_COMPILE=0``)."""
    from nvfp4_triton import inline

    monkeypatch.setattr(inline, "INLINE_COMPILED", traced)
    torch._dynamo.reset()
    model = torch.nn.Sequential(
        NVFP4Linear.from_linear(torch.nn.Linear(256, 512, dtype=torch.bfloat16, device="cuda")),
        torch.nn.GELU(approximate="tanh"),
        NVFP4Linear.from_linear(torch.nn.Linear(512, 256, dtype=torch.bfloat16, device="cuda")),
    )
    x = torch.randn(4, 77, 256, device="cuda", dtype=torch.bfloat16)
    with torch.no_grad():
        eager = model(x)
        compiled = torch.compile(model, fullgraph=True)(x)
    torch.testing.assert_close(compiled, eager, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("m, gelu, strategy", [(1, False, "tuned"), (3, True, "tuned"), (512, True, "two-pass"),
                                               (4096, False, "two-pass"), (512, True, "two-pass, no scratch"),
                                               (2, True, "split GEMV"), (4, True, "ring")])
def test_inductor_traces_w4a16_layers_into_its_graph(m, gelu, strategy, monkeypatch):
    """Traced (the default under torch.compile), a compiled W4A16 layer is no opaque call: inductor's
    generated code launches our kernels itself (two-pass's cuBLAS GEMM as a graph op), without
    copying the weight, and the output matches eager's. With the scratch limit at 0, two-pass stays
    off there too, also right after a graph of the same layer was compiled with it on. A layer tuned
    to the ring kernel (Gluon, which inductor does not record) runs the fused kernel there."""
    from torch._inductor.utils import run_and_get_code

    from nvfp4_triton import GemvConfig, TwoPassConfig, gemm, inline, scratch
    from nvfp4_triton.tiling import RingConfig

    monkeypatch.setattr(inline, "INLINE_COMPILED", True)
    if strategy == "ring":
        _ring_or_skip()
        monkeypatch.setattr(gemm.tuner, "lookup", lambda key: RingConfig(64, 4, 3))
    elif strategy == "split GEMV":
        monkeypatch.setattr(gemm.tuner, "lookup", lambda key: GemvConfig(2, 16, 512, split_k=4))
    elif strategy != "tuned":
        monkeypatch.setattr(gemm.tuner, "lookup", lambda key: TwoPassConfig())
    if strategy.endswith("no scratch"):
        monkeypatch.setattr(scratch, "_override", 0)  # as set_scratch_limit(0) sets it, undone after the test
    torch._dynamo.reset()
    layer = NVFP4Linear.from_linear(torch.nn.Linear(3072, 1024, dtype=torch.bfloat16, device="cuda"))
    layer.gelu = gelu
    x = torch.randn(m, 3072, device="cuda", dtype=torch.bfloat16)
    with torch.no_grad():
        eager = layer(x)
        compiled, (code,) = run_and_get_code(torch.compile(layer, fullgraph=True), x)
    assert "torch.ops.nvfp4_triton" not in code  # no opaque call of ours left
    assert "clone" not in code  # tensors handed to our kernels are not copied first
    kernels = {name for name in ("nvfp4_dequant_kernel", "w4a16_gemm_kernel", "w4a16_gemv_kernel") if name in code}
    expected = {"two-pass": {"nvfp4_dequant_kernel"}, "two-pass, no scratch": {"w4a16_gemm_kernel"},
                "split GEMV": {"w4a16_gemv_kernel"}, "ring": {"w4a16_gemm_kernel"}}
    assert len(kernels) == 1 and kernels == expected.get(strategy, kernels), kernels
    torch.testing.assert_close(compiled, eager, rtol=2e-2, atol=2e-2)
    assert_matches_reference(compiled, x, layer.nvfp4_weight, layer.bias, gelu=gelu,
                             rounded_weight=kernels == {"nvfp4_dequant_kernel"})


def test_inductor_analyses_each_kernel_signature_once(monkeypatch):
    """Traced, torch works out what a kernel writes by compiling it to TTIR, more than once per call
    site (pytorch/pytorch#193227): minutes for FLUX's ~500 layers. Four same-shape layers must cost
    one TTIR, and run right. Torch's compile caches are off here: a graph they hand back needs no
    analysis at all, and passed this test in session 10 without showing anything."""
    from torch._higher_order_ops import triton_kernel_wrap
    from torch._inductor.utils import run_and_get_code

    from nvfp4_triton import TwoPassConfig, gemm, inline

    monkeypatch.setattr(inline, "INLINE_COMPILED", True)
    monkeypatch.setattr(gemm.tuner, "lookup", lambda key: TwoPassConfig())
    monkeypatch.setattr(torch._inductor.config, "force_disable_caches", True)
    generated = []
    generate = triton_kernel_wrap.generate_ttir
    monkeypatch.setattr(triton_kernel_wrap, "generate_ttir", lambda *a: generated.append(1) or generate(*a))
    torch._dynamo.reset()
    layers = torch.nn.Sequential(*(NVFP4Linear.from_linear(torch.nn.Linear(1024, 1024, dtype=torch.bfloat16,
                                                                           device="cuda")) for _ in range(4)))
    x = torch.randn(512, 1024, device="cuda", dtype=torch.bfloat16)
    with torch.no_grad():
        eager = layers(x)
        compiled, (code,) = run_and_get_code(torch.compile(layers, fullgraph=True), x)
    launches = re.findall(r"nvfp4_dequant_kernel\w*\.run\(", code)
    assert len(launches) == 4, [line for line in code.splitlines() if "nvfp4_dequant_kernel" in line]
    assert len(generated) == 1  # this process's first analysis of the signature: no other test has N = K = 1024
    torch.testing.assert_close(compiled, eager, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("resident, k", [(False, 3072), (True, 3072), (False, 5120), (True, 5120)])
def test_inductor_traces_fp8_layers_into_its_graph(resident, k, monkeypatch):
    """Traced (the default under torch.compile), compiled ``activation="fp8"`` and FP8-resident layers
    make no opaque call either (``torch._scaled_mm`` is a graph op), and match eager: the same GEMM
    on x quantized by the same per-token recipe, with GELU rounded by inductor instead of our
    epilogue. Rows longer than ``GRAPH_QUANT_MAX_K`` are quantized by our row quantizer, launched
    by inductor's code.

    Shorter rows are quantized by inductor's code from ``fp8.quantize_rows``, which may round an
    element to the neighbouring E4M3 value where our kernel does not (on an H200, 2 of 524288
    outputs then differed by 0.035, session 14): so the outputs are compared in relative L2, far
    below the 3.4e-2 that separates the FP8 path from another one."""
    from torch._inductor.utils import run_and_get_code

    from nvfp4_triton import FP8Linear, Fp8Config, gemm, inline

    monkeypatch.setattr(inline, "INLINE_COMPILED", True)
    if k > GRAPH_QUANT_MAX_K:  # FP8 two-pass, whatever the tuner would measure at this size
        monkeypatch.setattr(gemm.fp8_tuner, "lookup", lambda key: Fp8Config())
    torch._dynamo.reset()
    layer = NVFP4Linear.from_linear(torch.nn.Linear(k, 1024, dtype=torch.bfloat16, device="cuda"))
    layer.activation, layer.gelu = "fp8", True
    if resident:
        layer = FP8Linear.from_nvfp4(layer)
    x = torch.randn(512, k, device="cuda", dtype=torch.bfloat16)
    with torch.no_grad():
        eager = layer(x)
        compiled, (code,) = run_and_get_code(torch.compile(layer, fullgraph=True), x)
    assert "torch.ops.nvfp4_triton" not in code
    assert "clone" not in code
    assert ("fp8_row_quant_kernel" in code) == (k > GRAPH_QUANT_MAX_K)
    assert float((compiled.double() - eager.double()).norm() / eager.double().norm()) < 5e-3


@pytest.mark.parametrize("traced", [True, False])
def test_inductor_fp8_mode_quantizes_in_the_graph_as_accurately_as_eager(traced, monkeypatch):
    """Compiled, ``activation="fp8"`` quantizes x with graph ops that inductor generates and fuses
    (``proj_mlp``, 1024-long rows) or with our row quantizer (``proj_out``, rows longer than
    ``GRAPH_QUANT_MAX_K``: a launch in the graph when traced, inside the op when opaque), and
    applies GELU in the graph; the block must stay as close to exact NVFP4 math as eager is, with
    the layers traced into the graph or as opaque ops.

    Not bitwise: inductor's norm and GELU round differently in bf16, and each difference can flip an
    FP8 rounding (measured on an H200: compiled and eager 1.5e-2 apart, each about 3e-2 from exact).
    """
    from nvfp4_triton import inline
    from nvfp4_triton.fusion import fuse_gelu

    monkeypatch.setattr(inline, "INLINE_COMPILED", traced)
    torch._dynamo.reset()
    torch.manual_seed(0)
    block = torch.nn.Module()
    block.proj_mlp = NVFP4Linear.from_linear(torch.nn.Linear(1024, 4096, dtype=torch.bfloat16, device="cuda"))
    block.act_mlp = torch.nn.GELU(approximate="tanh")
    block.proj_out = NVFP4Linear.from_linear(torch.nn.Linear(5120, 1024, dtype=torch.bfloat16, device="cuda"))
    assert block.proj_out.in_features > GRAPH_QUANT_MAX_K >= block.proj_mlp.in_features
    block.norm = torch.nn.LayerNorm(1024, dtype=torch.bfloat16, device="cuda")
    block.forward = lambda x: block.proj_out(torch.cat([x, block.act_mlp(block.proj_mlp(block.norm(x)))], dim=-1))
    for layer in (block.proj_mlp, block.proj_out):
        layer.activation = "fp8"
    assert fuse_gelu(block) == ["proj_mlp"]
    x = torch.randn(2, 600, 1024, device="cuda", dtype=torch.bfloat16)
    with torch.no_grad():
        eager = block(x)
        compiled = torch.compile(block.forward, fullgraph=True)(x)

    def exact(layer, h):
        return h @ layer.nvfp4_weight.dequantize(torch.float64).T + layer.bias.double()

    with torch.no_grad():
        xd = x.double()
        h = torch.nn.functional.layer_norm(xd, (1024,), block.norm.weight.double(), block.norm.bias.double())
        ref = exact(block.proj_out, torch.cat([xd, torch.nn.functional.gelu(exact(block.proj_mlp, h),
                                                                             approximate="tanh")], dim=-1))

    def error(y):
        return float((y.double() - ref).norm() / ref.norm())

    assert error(eager) < 6e-2  # FP8 activations and weights, two layers deep
    assert error(compiled) < 1.2 * error(eager)


@pytest.mark.parametrize("activation", [None, "fp8"])
def test_two_pass_inside_a_captured_graph(activation, monkeypatch):
    """Captured two-pass GEMMs keep their strategy, and stay exact while layers of one graph share its pool.

    Each layer's dense weight comes from the graph's memory pool and is freed after its GEMM, so
    the next layer's lands on the same block: replaying must still give eager's output bit for bit.
    """
    from nvfp4_triton import Fp8Config, TwoPassConfig, fp8, gemm, scratch

    dims = [3072, 1024, 3072, 2048]  # K of the first layer, then each layer's N
    weights = [_weight(n, k, seed=i) for i, (k, n) in enumerate(zip(dims, dims[1:]))]

    def chain(x):
        for q in weights:
            if activation == "fp8":
                multipliers, column_scale = fp8.weight_scales(q)
                x = gemm.w4a8_gemm(x, q.packed, q.block_scale, q.global_scale, multipliers, column_scale, None,
                                   config=Fp8Config())
            else:
                x = gemm.w4a16_gemm(x, q.packed, q.block_scale, q.global_scale, None, config=TwoPassConfig())
        return x

    static_x = torch.randn(512, dims[0], device="cuda", dtype=torch.bfloat16)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        chain(static_x)  # compile and warm up outside capture
    torch.cuda.current_stream().wait_stream(stream)
    held = scratch.scratch_bytes()

    def no_fallback(*args):
        raise AssertionError("a captured two-pass call fell back to the fused kernel")

    monkeypatch.setattr(gemm, "default_config", no_fallback)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_y = chain(static_x)
    assert scratch.scratch_bytes() == held  # the graph's weights are not in (or shared with) eager scratch
    for _ in range(2):
        static_x.copy_(torch.randn_like(static_x))
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(static_y, chain(static_x))


@pytest.mark.parametrize("inline", [False, True])
def test_reduce_overhead_compile_keeps_two_pass(inline, monkeypatch):
    """``torch.compile(mode="reduce-overhead")`` (inductor's CUDA graphs: warm-up runs in the graphs'
    memory pool, then capture, then replays) runs two-pass throughout and matches eager, with the
    opaque op and with W4A16 traced into the graph."""
    from nvfp4_triton import TwoPassConfig, gemm
    from nvfp4_triton import inline as inline_module

    monkeypatch.setattr(inline_module, "INLINE_COMPILED", inline)
    torch._dynamo.reset()
    model = torch.nn.Sequential(
        NVFP4Linear.from_linear(torch.nn.Linear(1024, 3072, dtype=torch.bfloat16, device="cuda")),
        torch.nn.GELU(approximate="tanh"),
        NVFP4Linear.from_linear(torch.nn.Linear(3072, 1024, dtype=torch.bfloat16, device="cuda")),
    )
    monkeypatch.setattr(gemm.tuner, "lookup", lambda key: TwoPassConfig())

    def no_fallback(*args):
        raise AssertionError("a two-pass call fell back to the fused kernel")

    monkeypatch.setattr(gemm, "default_config", no_fallback)
    compiled = torch.compile(model, mode="reduce-overhead", fullgraph=True)
    with torch.no_grad():
        for _ in range(4):  # warm-up, capture, then replays
            x = torch.randn(2, 256, 1024, device="cuda", dtype=torch.bfloat16)
            torch.compiler.cudagraph_mark_step_begin()
            y = compiled(x).clone()
            torch.testing.assert_close(y, model(x), rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("m, split_gemv", [(512, False), (1, True)])
def test_cuda_graph_capture_and_replay(m, split_gemv, monkeypatch):
    """A captured layer replays right, also a GEMV whose K is split (two launches, a buffer of partial sums)."""
    from nvfp4_triton import GemvConfig, gemm

    if split_gemv:
        monkeypatch.setattr(gemm.tuner, "lookup", lambda key: GemvConfig(1, 16, 512, split_k=4))
    layer = NVFP4Linear.from_linear(torch.nn.Linear(3072, 3072, dtype=torch.bfloat16, device="cuda"))
    static_x = torch.randn(m, 3072, device="cuda", dtype=torch.bfloat16)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.no_grad():
        layer(static_x)  # compile the kernel outside capture
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.no_grad():
        static_y = layer(static_x)
    for _ in range(3):
        static_x.copy_(torch.randn_like(static_x))
        graph.replay()
        torch.cuda.synchronize()
        with torch.no_grad():
            assert torch.equal(static_y, layer(static_x))
        assert_matches_reference(static_y, static_x, layer.nvfp4_weight, layer.bias)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
@pytest.mark.parametrize("activation", [None, "fp8", "nvfp4"])
def test_layer_on_a_gpu_other_than_the_current_one(activation):
    """Models split across GPUs call layers whose tensors are not on the current device."""
    torch.cuda.set_device(0)
    dense = torch.nn.Linear(512, 768, dtype=torch.bfloat16, device="cuda:1")
    layer = NVFP4Linear.from_linear(dense)
    x = torch.randn(300, 512, device="cuda:1", dtype=torch.bfloat16)
    layer.activation = activation
    if activation == "nvfp4":
        layer.input_scale = (x.float().abs().amax() / 2688).reshape(())
    with torch.no_grad():
        y = layer(x)
        with torch.cuda.device(1):
            expected = layer(x)
    assert y.device == x.device
    assert torch.equal(y, expected)
    if activation is None:
        assert_matches_reference(y, x, layer.nvfp4_weight, layer.bias)


def test_reduce_overhead_compile_replays_graphs():
    torch._dynamo.reset()
    layer = NVFP4Linear.from_linear(torch.nn.Linear(512, 1024, dtype=torch.bfloat16, device="cuda"))
    fn = torch.compile(layer, mode="reduce-overhead", fullgraph=True)
    with torch.no_grad():
        for _ in range(4):
            x = torch.randn(8, 512, device="cuda", dtype=torch.bfloat16)
            assert torch.equal(fn(x).clone(), layer(x))


def _run(code: str, cache_root) -> dict:

    env = python_env(NVFP4_TRITON_CACHE_DIR=str(cache_root), NVFP4_TRITON_AUTOTUNE="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=540)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


FIRST_OUTPUTS = textwrap.dedent("""
    import json, torch
    from nvfp4_triton import nvfp4_linear, quantize
    from nvfp4_triton.gemm import tuner
    from nvfp4_triton.prewarm import count_compilations
    errors = []
    with count_compilations() as compiled:
        for m, n, k in SHAPES:
            q = quantize(torch.randn(n, k, device="cuda"))
            x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
            b = torch.randn(n, device="cuda", dtype=torch.bfloat16)
            y = nvfp4_linear(x, q, b).double()
            ref = x.double() @ q.dequantize(torch.float64).T + b.double()
            errors.append(float((y - ref).norm() / ref.norm()))
    print(json.dumps({"tuned": tuner.stats.tuned, "loaded": tuner.stats.loaded, "compiled": compiled[0],
                      "max_error": max(errors)}))
""")


def test_first_use_tunes_and_a_fresh_process_reuses_everything(private_cache):
    code = "SHAPES = [(512, 3072, 3072), (1, 9216, 3072)]\n" + FIRST_OUTPUTS
    first = _run(code, private_cache)
    assert first["tuned"] == 2 and first["compiled"] >= 2 and first["max_error"] < 4e-3
    second = _run(code, private_cache)
    assert second == {"tuned": 0, "loaded": 2, "compiled": 0, "max_error": second["max_error"]}
    assert second["max_error"] < 4e-3


def test_prewarm_in_fp8_mode_tunes_the_fp8_keys(private_cache):
    """After ``prewarm --activation fp8``, a fresh process runs the FP8 GEMMs both ways (eager, and
    with x's rows given as compiled graphs give them) without tuning or compiling anything."""
    env = python_env(NVFP4_TRITON_CACHE_DIR=str(private_cache), NVFP4_TRITON_AUTOTUNE="1")
    cmd = [sys.executable, "-m", "nvfp4_triton.prewarm", "--recipe", "mixed", "--resolution", "512x512",
           "--activation", "fp8", "--require-gpu"]
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=540)
    assert first.returncode == 0 and "4 tuned" in first.stdout, first.stdout + first.stderr[-3000:]
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=540)
    assert "0 tuned, 4 read from cache, 0 kernels compiled" in again.stdout, again.stdout
    fresh = _run(f"SHAPES = {PREWARMED_SHAPES}\n" + FIRST_FP8_OUTPUTS, private_cache)
    assert fresh == {"tuned": 0, "compiled": 0}


PREWARMED_SHAPES = [(1536, 3072, 3072), (1536, 3072, 15360), (1024, 3072, 3072), (512, 3072, 3072)]
"""The GEMMs of ``prewarm --recipe mixed --resolution 512x512``."""

FIRST_FP8_OUTPUTS = textwrap.dedent("""
    import json, torch
    from nvfp4_triton import fp8, gemm, quantize
    from nvfp4_triton.prewarm import count_compilations
    with count_compilations() as compiled:
        for m, n, k in SHAPES:
            q = quantize(torch.randn(n, k, device="cuda"))
            x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
            b = torch.randn(n, device="cuda", dtype=torch.bfloat16)
            args = (x, q.packed, q.block_scale, q.global_scale, *fp8.weight_scales(q), b)
            gemm.w4a8_gemm(*args)  # eager: quantizes x itself
            gemm.w4a8_gemm(*args, quantized=fp8.quantize_rows(x))  # compiled graphs pass x's rows
    print(json.dumps({"tuned": gemm.fp8_tuner.stats.tuned, "compiled": compiled[0]}))
""")


def test_prewarm_leaves_nothing_to_tune_or_compile(private_cache):
    env = python_env(NVFP4_TRITON_CACHE_DIR=str(private_cache), NVFP4_TRITON_AUTOTUNE="1")
    cmd = [sys.executable, "-m", "nvfp4_triton.prewarm", "--recipe", "mixed", "--resolution", "512x512",
           "--require-gpu"]
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=540)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "4 GEMM shapes x 1 dtype(s): 4 tuned" in first.stdout, first.stdout
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=540)
    assert "0 tuned, 4 read from cache, 0 kernels compiled" in again.stdout, again.stdout
    for out, what in ((first.stdout, r"tuned in [\d.]+ s"), (again.stdout, "cached")):
        lines = [line for line in out.splitlines() if line.startswith("[")]
        assert len(lines) == 4 and all(re.search(what + r" +\S", line) for line in lines), out  # names its config
    fresh = _run(f"SHAPES = {PREWARMED_SHAPES}\n" + FIRST_OUTPUTS, private_cache)
    assert fresh["tuned"] == 0 and fresh["compiled"] == 0 and fresh["max_error"] < 4e-3


def test_tuner_rejects_a_config_whose_output_is_wrong(private_cache, monkeypatch, caplog):
    """A candidate that computes garbage (as a miscompiled tile would) is skipped, never chosen."""
    import logging

    from nvfp4_triton import autotune, gemm
    from nvfp4_triton.tiling import TileConfig

    good, broken = TileConfig(64, 64, 64, num_warps=4), TileConfig(32, 32, 32, num_warps=2)
    monkeypatch.setenv("NVFP4_TRITON_AUTOTUNE", "1")
    monkeypatch.setattr(autotune, "candidate_configs", lambda *args: [broken, good])
    bind = gemm._bind_w4a16

    def sabotaged(cfg, *args):
        run = bind(cfg, *args)
        return (lambda x, out: run(x, out).mul_(-1)) if cfg == broken else run
    monkeypatch.setattr(gemm, "_bind_w4a16", sabotaged)
    caplog.set_level(logging.WARNING, "nvfp4_triton")
    n, k = 1000, 512  # a shape no other test tunes
    q = _weight(n, k, seed=11)
    x = torch.randn(300, k, device="cuda", dtype=torch.bfloat16)
    y = gemm.w4a16_gemm(x, q.packed, q.block_scale, q.global_scale, None)
    chosen = gemm.tuner.lookup((x.device.index, x.dtype, gemm.m_bucket(300), n, k, False))
    assert chosen != broken
    assert any("CandidateMismatch" in r.getMessage() for r in caplog.records)
    assert_matches_reference(y, x, q, None, rounded_weight=True)


def test_later_launches_respect_a_new_argument_layout():
    """After the first launch, kernels launch without Triton's dispatch; an x or out that is not
    16-byte aligned, or an M of another kind (1, a multiple of 16, neither), must still get a
    kernel compiled for it, in whichever order the layouts arrive."""
    from nvfp4_triton.gemm import w4a16_gemm
    from nvfp4_triton.tiling import GemvConfig, TileConfig, TwoPassConfig

    n, k = 96, 256
    q = _weight(n, k, seed=21)
    x_pool = torch.randn(64 * k + 8, device="cuda", dtype=torch.bfloat16)
    y_pool = torch.empty(64 * n + 8, device="cuda", dtype=torch.bfloat16)
    for config in (TileConfig(32, 32, 64, num_warps=4), GemvConfig(2, 8, 128), TwoPassConfig()):
        for m, x_off, y_off in ((64, 0, 0), (64, 1, 0), (64, 0, 3), (17, 0, 0), (17, 5, 1), (1, 0, 0), (1, 3, 0),
                                (32, 0, 0)):
            x = x_pool[x_off:x_off + m * k].view(m, k)
            out = y_pool[y_off:y_off + m * n].view(m, n).fill_(float("nan"))
            y = w4a16_gemm(x, q.packed, q.block_scale, q.global_scale, None, config=config, out=out)
            assert y.data_ptr() == out.data_ptr()
            assert_matches_reference(y, x, q, None, rounded_weight=isinstance(config, TwoPassConfig))


@pytest.mark.parametrize("m, n, k", [(1, 18432, 3072), (3, 9216, 3072), (4, 3072, 12288)])
def test_gemv_configs_at_flux_sizes(m, n, k):
    from nvfp4_triton.autotune import candidate_configs
    from nvfp4_triton.gemm import w4a16_gemm
    from nvfp4_triton.tiling import GemvConfig

    q = _weight(n, k, seed=m + 1)
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    bias = torch.randn(n, device="cuda", dtype=torch.bfloat16)
    for config in (c for c in candidate_configs(m, n, k, 228 * 1024) if isinstance(c, GemvConfig)):
        out = torch.full((m, n), float("nan"), device="cuda", dtype=torch.bfloat16)
        y = w4a16_gemm(x, q.packed, q.block_scale, q.global_scale, bias, config=config, out=out)
        assert_matches_reference(y, x, q, bias)


def _ring_or_skip():
    from nvfp4_triton import ring

    problem = ring.device_problem(torch.device("cuda"))
    if problem:
        pytest.skip(f"the ring kernel cannot run here: {problem}")


RING_CONFIGS = [("64 w4 s2", 64, 4, 2, 1), ("64 w4 s3 split2", 64, 4, 3, 2), ("64 w4 s4 split4", 64, 4, 4, 4),
                ("128 w4 s3", 128, 4, 3, 1), ("128 w8 s2 split3", 128, 8, 2, 3)]


@pytest.mark.parametrize("m", [1, 3, 8, 11, 16, 17, 32])
@pytest.mark.parametrize("label, block_n, warps, stages, split", RING_CONFIGS)
def test_ring_configs_match_reference(m, label, block_n, warps, stages, split):
    """Every ring config at 8, 16 and 32 columns of x, K split (8 trips: 3 slices take 3, 3 and 2), with
    bias, GELU at odd M, and a seventh of the blocks with a zero scale while their codes are not."""
    from nvfp4_triton import NVFP4Weight
    from nvfp4_triton.gemm import w4a16_gemm
    from nvfp4_triton.tiling import RingConfig

    _ring_or_skip()
    n, k = 384, 2048
    q = _weight(n, k, seed=m)
    scales = q.block_scale.clone()
    scales.view(torch.uint8)[:, ::7] = 0
    w = NVFP4Weight(q.packed, scales, q.global_scale, q.shape)
    assert bool((w.packed.view(n, k // 16, 8)[:, ::7] != 0).any())
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    bias = torch.randn(n, device="cuda", dtype=torch.bfloat16)
    gelu = m % 2 == 1
    out = torch.full((m, n), float("nan"), device="cuda", dtype=torch.bfloat16)
    y = w4a16_gemm(x, w.packed, w.block_scale, w.global_scale, bias, config=RingConfig(block_n, warps, stages, split),
                   out=out, gelu=gelu)
    assert y.data_ptr() == out.data_ptr()
    assert_matches_reference(y, x, w, bias, gelu=gelu)


def test_ring_reads_any_x_and_writes_any_out():
    """x not 16-byte aligned or with padded rows (by 8, 1 and 16 elements), and out offset or
    transposed, on a kernel that copies x 16 bytes at a time."""
    from nvfp4_triton.gemm import w4a16_gemm
    from nvfp4_triton.tiling import RingConfig

    _ring_or_skip()
    n, k = 128, 512
    q = _weight(n, k, seed=31)
    x_pool = torch.randn(16 * (k + 8) + 8, device="cuda", dtype=torch.bfloat16)
    y_pool = torch.empty(16 * n + 8, device="cuda", dtype=torch.bfloat16)
    for m, x_off, x_stride, y_off, transposed in ((4, 0, k, 0, False), (4, 1, k, 0, False), (5, 0, k + 8, 3, False),
                                                  (9, 3, k + 1, 1, False), (6, 0, k, 0, True),
                                                  (3, 0, k + 16, 0, False)):
        x = x_pool[x_off:x_off + m * x_stride].view(m, x_stride)[:, :k]
        if transposed:
            out = y_pool[y_off:y_off + m * n].view(n, m).t()
        else:
            out = y_pool[y_off:y_off + m * n].view(m, n)
        out.fill_(float("nan"))
        y = w4a16_gemm(x, q.packed, q.block_scale, q.global_scale, None, config=RingConfig(64, 4, 3, 2), out=out)
        assert y.data_ptr() == out.data_ptr()
        assert_matches_reference(y, x, q, None)


@pytest.mark.parametrize("m, n, k, split", [(1, 18432, 3072, 1), (4, 3072, 12288, 8), (8, 9216, 3072, 2),
                                           (22, 12288, 3072, 4)])
def test_ring_at_flux_sizes(m, n, k, split):
    from nvfp4_triton.gemm import w4a16_gemm
    from nvfp4_triton.tiling import RingConfig

    _ring_or_skip()
    q = _weight(n, k, seed=m + 7)
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    bias = torch.randn(n, device="cuda", dtype=torch.bfloat16)
    out = torch.full((m, n), float("nan"), device="cuda", dtype=torch.bfloat16)
    y = w4a16_gemm(x, q.packed, q.block_scale, q.global_scale, bias, config=RingConfig(64, 4, 3, split), out=out)
    assert_matches_reference(y, x, q, bias)


def _wgmma_or_skip():
    from nvfp4_triton import wgmma

    problem = wgmma.device_problem(torch.device("cuda"))
    if problem:
        pytest.skip(f"the wgmma kernel cannot run here: {problem}")


@pytest.mark.parametrize("m", [1, 45, 128, 300])
@pytest.mark.parametrize("block_m, stages", [(128, 2), (256, 4), (256, 5)])
def test_wgmma_configs_match_reference(m, block_m, stages):
    """Every offered wgmma config and the smallest ring, x rows filling one tile, several or a part of
    one (TMA reads the rows past M as zeros); K of 65 steps (the ring wraps unevenly), bias, GELU at
    odd M, and a seventh of the blocks with a zero scale while their codes are not."""
    from nvfp4_triton import NVFP4Weight
    from nvfp4_triton.gemm import w4a16_gemm
    from nvfp4_triton.tiling import WgmmaConfig

    _wgmma_or_skip()
    n, k = 192, 4160
    q = _weight(n, k, seed=m + 3)
    scales = q.block_scale.clone()
    scales.view(torch.uint8)[:, ::7] = 0
    w = NVFP4Weight(q.packed, scales, q.global_scale, q.shape)
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    bias = torch.randn(n, device="cuda", dtype=torch.bfloat16)
    gelu = m % 2 == 1
    out = torch.full((m, n), float("nan"), device="cuda", dtype=torch.bfloat16)
    y = w4a16_gemm(x, w.packed, w.block_scale, w.global_scale, bias, config=WgmmaConfig(block_m, stages), out=out,
                   gelu=gelu)
    assert y.data_ptr() == out.data_ptr()
    assert_matches_reference(y, x, w, bias, gelu=gelu)


@pytest.mark.parametrize("m, n, k, pad", [(512, 3072, 3072, 8), (512, 3072, 12288, 8), (4608, 3072, 3072, 4)])
def test_wgmma_at_flux_sizes_and_any_x_layout(m, n, k, pad):
    """FLUX shapes, x with padded rows (K + 8: read in place by TMA; K + 4: copied, its rows are not
    16-byte aligned) and y transposed."""
    from nvfp4_triton.gemm import w4a16_gemm
    from nvfp4_triton.tiling import WgmmaConfig

    _wgmma_or_skip()
    q = _weight(n, k, seed=m + 5)
    x = torch.randn(m, k + pad, device="cuda", dtype=torch.bfloat16)[:, :k]
    out = torch.full((n, m), float("nan"), device="cuda", dtype=torch.bfloat16).t()
    y = w4a16_gemm(x, q.packed, q.block_scale, q.global_scale, None, config=WgmmaConfig(256, 4), out=out)
    assert y.data_ptr() == out.data_ptr()
    assert_matches_reference(y, x, q, None)


def test_tuning_with_the_wgmma_kernel_offered(private_cache, monkeypatch, caplog):
    """At M = 512 on Hopper the tuner times the wgmma configs beside the others, none disagrees with the
    default config, and whichever wins, the layer's output is right."""
    import logging

    from nvfp4_triton import autotune, gemm

    _wgmma_or_skip()
    monkeypatch.setenv("NVFP4_TRITON_AUTOTUNE", "1")
    monkeypatch.setattr(gemm, "tuner", autotune.Tuner("w4a16_gemm"))  # see the ring's tuning test
    timed = []
    bind = gemm._bind_wgmma
    monkeypatch.setattr(gemm, "_bind_wgmma", lambda cfg, *args: timed.append(cfg) or bind(cfg, *args))
    n, k = 3072, 3072
    q = _weight(n, k, seed=17)
    x = torch.randn(2, 256, k, device="cuda", dtype=torch.bfloat16)
    bias = torch.randn(n, device="cuda", dtype=torch.bfloat16)
    with caplog.at_level(logging.WARNING):
        y = nvfp4_linear(x, q, bias)
    assert timed and "wgmma" not in caplog.text
    assert_matches_reference(y, x, q, bias)


@pytest.mark.parametrize("m", [4, 8, 16])
def test_tuning_with_the_ring_kernel_offered(m, private_cache, monkeypatch, caplog):
    """Where the ring kernel runs the tuner times it beside the other kernels, every ring candidate
    agrees with the default config (none is skipped), and whichever wins, the layer's output is right."""
    import logging

    from nvfp4_triton import autotune, gemm

    _ring_or_skip()
    monkeypatch.setenv("NVFP4_TRITON_AUTOTUNE", "1")
    # A new process's tuner: earlier tests may have met this shape with autotuning off, and the
    # module's tuner would then give their default config without timing anything.
    monkeypatch.setattr(gemm, "tuner", autotune.Tuner("w4a16_gemm"))
    timed = []
    bind = gemm._bind_ring
    monkeypatch.setattr(gemm, "_bind_ring", lambda cfg, *args: timed.append(cfg) or bind(cfg, *args))
    n, k = 3072, 3072
    q = _weight(n, k, seed=m + 11)
    x = torch.randn(2, m // 2, k, device="cuda", dtype=torch.bfloat16)
    bias = torch.randn(n, device="cuda", dtype=torch.bfloat16)
    with caplog.at_level(logging.WARNING):
        y = nvfp4_linear(x, q, bias)
    assert timed and "ring" not in caplog.text
    assert_matches_reference(y, x, q, bias)
