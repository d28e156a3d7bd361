"""The activation modes and the GELU epilogue against plain-torch / float64 references.

- W4A4 emulation (``activation="nvfp4"``): the activation quantize kernel against
  ``format.quantize_activation``, then the GEMM against float64 W4A4 math.
- W4A8 (``activation="fp8"``) and ``FP8Linear``: the FP8 kernels against ``nvfp4_triton.fp8``, and
  the GEMM against the float64 product of the same FP8 operands and against exact NVFP4.
- ``gelu=True``: the fused epilogue against float64 GELU-tanh, for every strategy.

The kernels round to E4M3 on the bits (``kernels._e4m3``), so codes and scales must match the
references bit for bit both on the GPU and in the interpreter.
"""

import pytest
import torch
from hypothesis import given, settings, strategies as st

from nvfp4_triton import Fp8Config, NVFP4Linear, TileConfig, TwoPassConfig, fp8, nvfp4_linear, quantize
from nvfp4_triton import format as fmt
from nvfp4_triton.act_quant import (ONE_LAUNCH_MAX_K, ONE_TILE_MAX_K, fp8_operands, quantize_activation_nvfp4,
                                   quantize_rows_fp8)
from nvfp4_triton.gemm import dequantize_into, w4a8_gemm, w4a16_gemm
from nvfp4_triton.module import FP8Linear
from nvfp4_triton.weight import NVFP4Weight

from .checks import ELEMENT_RTOL, GELU_SLOPE, assert_matches_reference
from .strategies import GRID_AND_TIES

FP8_ERROR_BOUND = 4e-2
"""Documented relative L2 error of activation="fp8" against exact NVFP4 x BF16 (README, fp8.py)."""


def _problem(seed, m, n, k, dtype, has_bias, device):
    g = torch.Generator().manual_seed(seed)
    q = quantize(torch.randn(n, k, generator=g)).to(device)
    x = torch.randn(m, k, generator=g).to(dtype).to(device)
    bias = torch.randn(n, generator=g).to(dtype).to(device) if has_bias else None
    return x, q, bias


# ---------------------------------------------------------------- NVFP4 activations (W4A4)

@st.composite
def activations(draw):
    """``(x [M, K], input_scale)``: random, wide-range, exact ties, zero blocks, one huge value, NaN / Inf."""
    m, blocks = draw(st.integers(1, 40)), draw(st.integers(1, 20))
    dtype = draw(st.sampled_from([torch.bfloat16, torch.float16]))
    style = draw(st.sampled_from(["normal", "ranges", "ties", "special"]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    x = torch.randn(m, blocks, 16, generator=g)
    input_scale = float(x.abs().amax()) / 2688 * draw(st.sampled_from([0.25, 1.0, 4.0]))
    if style == "ranges":
        x = x * 10.0 ** (torch.rand(m, blocks, 1, generator=g) * 8 - 6)
    elif style == "ties":  # grid values and midpoints times a power-of-two scale: every element on a tie or grid point
        x = GRID_AND_TIES[torch.randint(0, len(GRID_AND_TIES), (m, blocks, 16), generator=g)]
        x = x * torch.where(torch.rand(m, blocks, 16, generator=g) < 0.5, -1.0, 1.0)
        x[:, :, 0] = 6.0
        input_scale = 2.0 ** draw(st.integers(-8, 0))
        x = x * (2.0 ** torch.randint(-3, 4, (m, blocks, 1), generator=g)) * input_scale
    elif style == "special":
        x[torch.rand(m, blocks, generator=g) < 0.3] = 0.0  # all-zero blocks
        x.view(-1)[torch.randint(0, x.numel(), (3,), generator=g)] = torch.tensor([1e4, float("inf"), float("nan")])
    x = x.reshape(m, blocks * 16).to(dtype)
    return x, torch.tensor(input_scale, dtype=torch.float32)


def test_reference_matches_the_modelopt_weight_recipe_when_the_scale_is_its_own():
    torch.manual_seed(0)
    x = torch.randn(33, 96) * torch.rand(33, 6, 1).repeat_interleave(16, 1).reshape(33, 96)
    packed, block_scale, global_scale = fmt.quantize_tensors(x)
    codes, scales = fmt.quantize_activation(x, global_scale)
    assert torch.equal(fmt.pack_nibbles(codes), packed)
    assert torch.equal(scales.view(torch.uint8), block_scale.view(torch.uint8))


def test_reference_semantics_of_special_blocks():
    g = torch.tensor(2.0**-7)
    x = torch.zeros(1, 80)
    x[0, 16] = 1e6  # one huge value: the scale saturates at 448, the value at 6, the rest of its block at 0
    x[0, 17] = 0.001
    x[0, 32:48] = 0.5 * 2.0**-7 * torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5, 6] * 2)  # ties at scale 0.5
    x[0, 50] = float("nan")
    x[0, 70] = -float("inf")
    codes, scale = fmt.quantize_activation(x, g)
    values = fmt.e2m1_decode(codes)
    assert scale[0, 0].item() == 1.0 and torch.equal(codes[0, :16], torch.zeros(16, dtype=torch.uint8))
    assert scale[0, 1].item() == 448.0 and values[0, 16] == 6.0 and values[0, 17] == 0.0
    assert scale[0, 2].item() == 0.5
    assert values[0, 32:40].tolist() == [0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0, 6.0]  # ties go to even codes
    assert torch.isnan(scale[0, 3].float()) and torch.equal(codes[0, 48:64], torch.zeros(16, dtype=torch.uint8))
    assert scale[0, 4].item() == 448.0 and values[0, 70] == -6.0


@settings(max_examples=30)
@given(case=activations())
def test_nvfp4_activation_kernel_matches_reference(device, case):
    x, input_scale = case
    x, input_scale = x.to(device), input_scale.to(device)
    xq, packed, scale = quantize_activation_nvfp4(x, input_scale, codes=True)
    ref_codes, ref_scale = fmt.quantize_activation(x.cpu(), input_scale.cpu())
    scale, packed, xq = scale.cpu(), packed.cpu(), xq.cpu()
    assert torch.equal(scale.view(torch.uint8), ref_scale.view(torch.uint8))
    assert torch.equal(packed, fmt.pack_nibbles(ref_codes))
    reference_xq = fmt.fake_quantize_activation(x.cpu(), input_scale.cpu())
    assert torch.equal(xq.isnan(), reference_xq.isnan())
    assert torch.equal(torch.nan_to_num(xq), torch.nan_to_num(reference_xq))


@settings(max_examples=15)
@given(seed=st.integers(0, 2**31), m=st.integers(1, 70), n=st.integers(1, 90), k_blocks=st.integers(1, 12),
       dtype=st.sampled_from([torch.bfloat16, torch.float16]), has_bias=st.booleans())
def test_w4a4_gemm_matches_float64_w4a4_math(device, seed, m, n, k_blocks, dtype, has_bias):
    x, q, bias = _problem(seed, m, n, 16 * k_blocks, dtype, has_bias, device)
    input_scale = (x.float().abs().amax() / 2688).reshape(())
    y = nvfp4_linear(x, q, bias, activation="nvfp4", input_scale=input_scale)
    xq = fmt.fake_quantize_activation(x, input_scale)
    alpha = NVFP4Weight(q.packed, q.block_scale, input_scale * q.global_scale, q.shape)
    assert_matches_reference(y, xq, alpha, bias)


def test_w4a4_needs_an_input_scale(device):
    x, q, _ = _problem(0, 4, 8, 32, torch.bfloat16, False, device)
    with pytest.raises(ValueError, match="input_scale"):
        nvfp4_linear(x, q, activation="nvfp4")
    with pytest.raises(TypeError, match="input_scale must be a float32"):
        nvfp4_linear(x, q, activation="nvfp4", input_scale=torch.ones(2, device=device))
    with pytest.raises(ValueError, match="activation must be one of"):
        nvfp4_linear(x, q, activation="int8")


# ---------------------------------------------------------------- FP8 (W4A8, FP8-resident)

def test_row_multipliers_are_the_largest_powers_of_two_that_fit():
    raw = torch.randint(0, 0x7F, (300, 12), dtype=torch.uint8)  # every E4M3 value but NaN, zero included
    raw[0] = 0x7E  # 448 everywhere: 6 * 448 needs 2**-3
    raw[1] = 0x01  # the smallest subnormal everywhere: capped exponent
    scales = raw.view(torch.float8_e4m3fn)
    mult = fp8.row_multipliers(scales)
    row_max = 6 * scales.float().amax(1)
    mantissa, _ = torch.frexp(mult)
    assert bool((mantissa == 0.5).all())  # powers of two
    assert bool((row_max * mult <= 448).all())
    assert bool(((row_max * mult * 2 > 448) | (mult == 2.0**30)).all())
    assert mult[0] == 2.0**-3


def test_fp8_weight_conversion_rounds_only_where_it_must():
    torch.manual_seed(1)
    q = quantize(torch.randn(64, 256))
    mult = fp8.row_multipliers(q.block_scale)
    w8 = fp8.dequantize_to_fp8(q.packed, q.block_scale, mult).double()
    exact = q.dequantize(torch.float64) / q.global_scale.double() * mult.double()[:, None]
    assert bool(((w8 - exact).abs() <= 2.0**-4 * exact.abs()).all())  # half an E4M3 step
    power_of_two_codes = torch.isin(fmt.e2m1_decode(fmt.unpack_nibbles(q.packed)).abs(),
                                    torch.tensor([0.5, 1.0, 2.0, 4.0]))
    normal = exact.abs() >= 2.0**-6
    assert torch.equal(w8[power_of_two_codes & normal], exact[power_of_two_codes & normal])


@settings(max_examples=20)
@given(seed=st.integers(0, 2**31), m=st.integers(1, 40), k_blocks=st.integers(1, 200),
       dtype=st.sampled_from([torch.bfloat16, torch.float16]), zero_rows=st.booleans())
def test_fp8_row_quant_kernel_matches_reference(device, seed, m, k_blocks, dtype, zero_rows):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(m, 16 * k_blocks, generator=g) * 10.0 ** (torch.rand(m, 1, generator=g) * 6 - 3)).to(dtype)
    if zero_rows:
        x[::3] = 0
    q, scale = quantize_rows_fp8(x.to(device))
    for ref_q, ref_scale in (fp8.quantize_rows(x), fp8.quantize_rows(x.to(device))):  # the reference on either device
        assert torch.equal(scale.cpu(), ref_scale.cpu())
        assert torch.equal(q.cpu().view(torch.uint8), ref_q.cpu().view(torch.uint8))


def test_fp8_row_quant_kernel_sweeps_rows_too_long_for_one_tile(device):
    """Rows longer than ``ONE_TILE_MAX_K`` take the kernel's two-sweep path, with the same results."""
    torch.manual_seed(3)
    x = torch.randn(3, ONE_TILE_MAX_K + 48, dtype=torch.bfloat16) * torch.tensor([[1e-3], [0.0], [50.0]])
    x[2, -1] = 900.0  # the row's amax in its last, partial tile
    q, scale = quantize_rows_fp8(x.to(device))
    ref_q, ref_scale = fp8.quantize_rows(x)
    assert torch.equal(scale.cpu(), ref_scale)
    assert torch.equal(q.cpu().view(torch.uint8), ref_q.view(torch.uint8))


@pytest.mark.parametrize("n,k", [(70, 208), (1, 32), (130, 96)])
def test_fp8_dequant_kernel_matches_reference(device, n, k):
    torch.manual_seed(n + k)
    q = quantize(torch.randn(n, k) * 3).to(device)
    mult = fp8.row_multipliers(q.block_scale)
    out = torch.empty((n, k), dtype=torch.float8_e4m3fn, device=device)
    dequantize_into(out, q.packed, q.block_scale.view(torch.uint8), mult, Fp8Config(32, 64, 2))
    ref = fp8.dequantize_to_fp8(q.packed, q.block_scale, mult)
    assert torch.equal(out.view(torch.uint8), ref.view(torch.uint8))


@settings(max_examples=10)
@given(seed=st.integers(0, 2**31), m=st.integers(1, 20), n=st.integers(1, 70), k_blocks=st.integers(1, 40),
       config=st.sampled_from([Fp8Config(), Fp8Config(32, 64, 2), Fp8Config(1, 32, 1)]),
       layout=st.sampled_from(["contiguous", "rows of a wider tensor", "column-major"]))
def test_one_launch_fp8_operands_match_the_separate_kernels(device, seed, m, n, k_blocks, config, layout):
    """``fp8_operands`` (one grid: x's rows, then weight tiles) writes exactly what the row quantizer
    and the E4M3 dequantization write, every row and tile included (outputs start poisoned), for x
    in any layout."""
    g = torch.Generator().manual_seed(seed)
    k = 16 * k_blocks
    x = (torch.randn(m, k, generator=g) * 10.0 ** (torch.rand(m, 1, generator=g) * 6 - 3)).to(torch.bfloat16)
    x[::4] = 0
    q = quantize(torch.randn(n, k, generator=g) * 3).to(device)
    mult = fp8.row_multipliers(q.block_scale)
    w8 = torch.full((n, k), 0x7F, dtype=torch.uint8, device=device).view(torch.float8_e4m3fn)  # E4M3 NaN
    x_in = x.to(device)
    if layout == "rows of a wider tensor":
        x_in = torch.cat([x_in, torch.full_like(x_in[:, :16], float("nan"))], dim=1)[:, :k]
    elif layout == "column-major":
        x_in = x_in.t().contiguous().t()
    xq, row_scale = fp8_operands(x_in, w8, q.packed, q.block_scale.view(torch.uint8), mult, config)
    ref_q, ref_scale = fp8.quantize_rows(x)
    assert torch.equal(row_scale.cpu(), ref_scale)
    assert torch.equal(xq.cpu().view(torch.uint8), ref_q.view(torch.uint8))
    ref_w8 = fp8.dequantize_to_fp8(q.packed, q.block_scale, mult)
    assert torch.equal(w8.view(torch.uint8), ref_w8.view(torch.uint8))


def test_one_launch_fp8_operands_sweep_rows_too_long_for_one_tile(device):
    torch.manual_seed(4)
    x = torch.randn(2, ONE_TILE_MAX_K + 32, dtype=torch.bfloat16) * torch.tensor([[1e-2], [30.0]])
    x[1, -1] = 700.0  # the row's amax in its last, partial tile
    q = quantize(torch.randn(5, x.shape[1])).to(device)
    mult = fp8.row_multipliers(q.block_scale)
    w8 = torch.empty(q.shape, dtype=torch.float8_e4m3fn, device=device)
    xq, row_scale = fp8_operands(x.to(device), w8, q.packed, q.block_scale.view(torch.uint8), mult, Fp8Config())
    ref_q, ref_scale = fp8.quantize_rows(x)
    assert torch.equal(row_scale.cpu(), ref_scale)
    assert torch.equal(xq.cpu().view(torch.uint8), ref_q.view(torch.uint8))
    assert torch.equal(w8.view(torch.uint8), fp8.dequantize_to_fp8(q.packed, q.block_scale, mult).view(torch.uint8))


def _fp8_reference(x, q, bias):
    """float64 product of exactly the FP8 operands the W4A8 path multiplies (same kernels' outputs)."""
    xq, row_scale = quantize_rows_fp8(x)
    mult, column = fp8.weight_scales(q)
    w8 = torch.empty(q.shape, dtype=torch.float8_e4m3fn, device=x.device)
    dequantize_into(w8, q.packed, q.block_scale.view(torch.uint8), mult, Fp8Config())
    ref = (xq.double() * row_scale.double()) @ (w8.double() * column.double().reshape(-1, 1)).T
    magnitude = (xq.double() * row_scale.double()).abs() @ (w8.double() * column.double().reshape(-1, 1)).abs().T
    return (ref + bias.double() if bias is not None else ref), magnitude


@settings(max_examples=12)
@given(seed=st.integers(0, 2**31), m=st.integers(1, 150), n=st.sampled_from([16, 48, 160]),
       k_blocks=st.integers(1, 12), dtype=st.sampled_from([torch.bfloat16, torch.float16]), has_bias=st.booleans(),
       config=st.sampled_from([Fp8Config(fast_accum=False), Fp8Config(32, 256, 4, fast_accum=False),
                               TileConfig(16, 32, 32, num_warps=2)]))
def test_w4a8_gemm_multiplies_the_fp8_operands_exactly(device, seed, m, n, k_blocks, dtype, has_bias, config):
    x, q, bias = _problem(seed, m, n, 16 * k_blocks, dtype, has_bias, device)
    mult, column = fp8.weight_scales(q)
    y = w4a8_gemm(x, q.packed, q.block_scale, q.global_scale, mult, column, bias, config=config)
    if isinstance(config, TileConfig):  # the tuner may pick the W4A16 kernel: then it is exactly W4A16
        assert_matches_reference(y, x, q, bias)
        return
    ref, magnitude = _fp8_reference(x, q, bias)
    # To bf16 rounding for both output dtypes: on an H200, cuBLAS's FP8 GEMM with per-row scales
    # came out of its epilogue less precise than one fp16 rounding. Hopper's FP8 tensor cores keep
    # about 14 bits of the running sum (DeepSeek-V3 report, section 3.3.2): under cancellation the
    # error is relative to the sum of |terms|. Seen on an H200: 2**-16.7 of it (M=84, N=16, K=16).
    bound = ELEMENT_RTOL[torch.bfloat16] * ref.abs() + 2.0**-14 * magnitude + 1e-30
    assert bool(((y.double() - ref).abs() <= bound).all())


@pytest.mark.parametrize("k", [96, ONE_LAUNCH_MAX_K + 16])  # x quantized in the weight's launch, or apart
def test_w4a8_gemm_takes_rows_quantized_by_the_caller(device, k):
    """Under torch.compile, x's FP8 rows come from the graph (``fp8.quantize_rows``): the GEMM must
    use them as given, and give what it gives when it quantizes x itself."""
    x, q, _ = _problem(5, 37, 48, k, torch.bfloat16, False, device)
    mult, column = fp8.weight_scales(q)
    config = Fp8Config(fast_accum=False)
    xq, row_scale = fp8.quantize_rows(x)
    assert torch.equal(row_scale, quantize_rows_fp8(x)[1])  # the same rows the GEMM's own quantizer makes
    own = w4a8_gemm(x, q.packed, q.block_scale, q.global_scale, mult, column, None, config=config)
    given = w4a8_gemm(x, q.packed, q.block_scale, q.global_scale, mult, column, None, config=config,
                      quantized=(xq, row_scale))
    assert torch.equal(given, own)
    doubled = w4a8_gemm(x, q.packed, q.block_scale, q.global_scale, mult, column, None, config=config,
                        quantized=(xq, row_scale * 2))
    assert torch.equal(doubled, own * 2)  # a power of two: exact in bf16


@pytest.mark.gpu
@pytest.mark.parametrize("m,n,k", [(4096, 3072, 3072), (512, 12288, 3072), (4096, 3072, 15360)])
def test_fp8_modes_stay_within_the_documented_error(m, n, k):
    torch.manual_seed(0)
    x, q, bias = _problem(0, m, n, k, torch.bfloat16, True, "cuda")
    exact = x.double() @ q.dequantize(torch.float64).T + bias.double()
    w4a8 = nvfp4_linear(x, q, bias, activation="fp8")
    resident = FP8Linear.from_nvfp4(NVFP4Linear.from_weight(q, bias))(x)
    for y in (w4a8, resident):
        assert float((y.double() - exact).norm() / exact.norm()) <= FP8_ERROR_BOUND


def test_fp8_linear_module(device):
    x, q, bias = _problem(3, 130, 48, 64, torch.bfloat16, True, device)
    layer = FP8Linear.from_nvfp4(NVFP4Linear.from_weight(q, bias))
    assert layer.weight.dtype == torch.float8_e4m3fn and layer.weight_scale.dtype == torch.float32
    assert layer.to(torch.float16).weight.dtype == torch.float8_e4m3fn  # .to(dtype) casts only the bias
    assert layer.bias.dtype == torch.float16
    layer.to(torch.bfloat16)
    ref, magnitude = _fp8_reference(x, q, bias)
    y = layer(x)
    assert bool(((y.double() - ref).abs() <= ELEMENT_RTOL[torch.bfloat16] * ref.abs() + 2**-14 * magnitude).all())
    assert layer(x.reshape(2, 65, 64)).shape == (2, 65, 48)
    with pytest.raises(ValueError, match=r"\[\.\.\., 64\]"):
        layer(x[:, :32])


def test_fp8_modes_refuse_gpus_without_fp8_tensor_cores(monkeypatch):
    """An Ampere GPU gets an error naming the caller, the GPU and W4A16 instead of a Triton compile
    failure; Ada, Hopper and Blackwell pass; CPU tensors (the interpreter) are not checked. No GPU
    is touched: the capability and the name are patched."""
    from nvfp4_triton.ops import check_activation
    from nvfp4_triton.prewarm import prewarm
    from nvfp4_triton.shapes import plan_from_config

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: "NVIDIA A100")
    monkeypatch.setattr(fp8, "_capability", lambda index: (8, 0))
    gpu = torch.device("cuda", 0)
    with pytest.raises(RuntimeError, match=r"^nvfp4_linear: .*8\.9 .*NVIDIA A100 \(cuda:0\) has 8\.0\. W4A16"):
        check_activation("fp8", None, gpu)
    check_activation(None, None, gpu)
    with pytest.raises(RuntimeError, match=r"^prewarm: "):
        prewarm(plan_from_config(), device=gpu, resident="fp8")
    for capability in ((8, 9), (9, 0), (10, 0)):
        monkeypatch.setattr(fp8, "_capability", lambda index, c=capability: c)
        fp8.check_fp8_device(gpu, "nvfp4_linear")
    monkeypatch.setattr(fp8, "_capability", lambda index: (8, 0))
    fp8.check_fp8_device(torch.device("cpu"), "nvfp4_linear")


def test_module_modes_call_the_op_with_their_settings(device):
    x, q, bias = _problem(5, 20, 40, 96, torch.bfloat16, True, device)
    input_scale = (x.float().abs().amax() / 2688).reshape(())
    layer = NVFP4Linear.from_weight(q, bias, input_scale=input_scale)
    for activation, kwargs in [(None, {}), ("fp8", {}), ("nvfp4", {"input_scale": layer.input_scale})]:
        for gelu in (False, True):
            layer.activation, layer.gelu = activation, gelu
            expected = nvfp4_linear(x, q, bias, activation=activation, gelu=gelu, **kwargs)
            assert torch.equal(layer(x), expected), (activation, gelu)
    bare = NVFP4Linear.from_weight(q, bias)
    bare.activation = "nvfp4"
    with pytest.raises(ValueError, match="input_scale"):
        bare(x)
    with pytest.raises(ValueError, match="activation must be one of"):
        NVFP4Linear(32, 8, activation="fp4")


# ---------------------------------------------------------------- GELU epilogue

@settings(max_examples=15)
@given(seed=st.integers(0, 2**31), m=st.integers(1, 90), n=st.integers(1, 100), k_blocks=st.integers(1, 12),
       dtype=st.sampled_from([torch.bfloat16, torch.float16]), has_bias=st.booleans(),
       config=st.sampled_from([None, TileConfig(32, 64, 64, num_warps=4), TwoPassConfig()]))
def test_gelu_epilogue_matches_float64_gelu(device, seed, m, n, k_blocks, dtype, has_bias, config):
    x, q, bias = _problem(seed, m, n, 16 * k_blocks, dtype, has_bias, device)
    out = torch.full((m, n), float("nan"), dtype=dtype, device=device)
    y = w4a16_gemm(x, q.packed, q.block_scale, q.global_scale, bias, config=config, out=out, gelu=True)
    assert_matches_reference(y, x, q, bias, rounded_weight=isinstance(config, TwoPassConfig), gelu=True)


@pytest.mark.gpu
@pytest.mark.parametrize("config", [TileConfig(128, 128, 64, num_warps=8), TwoPassConfig(), Fp8Config()])
def test_fused_gelu_equals_the_unfused_path(config):
    x, q, bias = _problem(7, 4096, 3072, 3072, torch.bfloat16, True, "cuda")
    if isinstance(config, Fp8Config):
        scales = fp8.weight_scales(q)
        run = lambda gelu: w4a8_gemm(x, q.packed, q.block_scale, q.global_scale, *scales, bias, config, gelu)  # noqa: E731
    else:
        run = lambda gelu: w4a16_gemm(x, q.packed, q.block_scale, q.global_scale, bias, config, gelu=gelu)  # noqa: E731
    pre = run(False).float()
    fused, unfused = run(True).float(), torch.nn.functional.gelu(pre, approximate="tanh")
    # Unfused applies GELU to the bf16-rounded pre-activation, fused to the unrounded one: they differ
    # by that rounding (half a bf16 ulp) through GELU's slope, plus the output's own rounding.
    bound = 2.0**-7 * unfused.abs() + GELU_SLOPE * 2.0**-8 * pre.abs() + 1e-6
    assert bool(((fused - unfused).abs() <= bound).all())
