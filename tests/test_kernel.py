"""The W4A16 kernel against the float64 reference: ragged shapes, dtypes, bias, strides, tile configs.

Runs on the GPU when there is one, otherwise on CPU tensors through Triton's interpreter.
"""

import pytest
import torch
from hypothesis import given, settings, strategies as st

from nvfp4_triton import TileConfig, TwoPassConfig, nvfp4_linear, quantize
from nvfp4_triton.tiling import GemvConfig
from nvfp4_triton import scratch
from nvfp4_triton.gemm import w4a16_gemm
from nvfp4_triton.kernels._dequant import nvfp4_dequant_kernel

from .checks import ELEMENT_RTOL, assert_matches_reference

DTYPES = st.sampled_from([torch.bfloat16, torch.float16])
CONFIGS = st.sampled_from([
    None,  # the default for the shape
    TileConfig(16, 16, 32, group_m=1, num_warps=1, num_stages=1),
    TileConfig(32, 64, 128, group_m=3, num_warps=4, num_stages=2),
    TileConfig(64, 32, 32, group_m=2, num_warps=2, num_stages=2),
    TileConfig(16, 32, 64, num_warps=2, num_stages=1, split_k=4),
    TileConfig(128, 16, 32, group_m=2, num_warps=2, num_stages=1),  # K order (tall tile), one stage
])


def _problem(seed, m_shape, n, k, dtype, has_bias, device):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g) * torch.rand(n, k // 16, 1, generator=g).repeat_interleave(16, 1).reshape(n, k)
    q = quantize(w).to(device)
    x = torch.randn(*m_shape, k, generator=g).to(dtype).to(device)
    bias = (torch.randn(n, generator=g).to(dtype).to(device)) if has_bias else None
    return x, q, bias


@settings(max_examples=40)
@given(
    seed=st.integers(0, 2**31),
    m=st.integers(1, 200),
    n=st.integers(1, 160),
    k_blocks=st.integers(1, 20),
    dtype=DTYPES,
    has_bias=st.booleans(),
    transposed_x=st.booleans(),
    config=CONFIGS,
)
def test_gemm_writes_every_element_correctly(device, seed, m, n, k_blocks, dtype, has_bias, transposed_x, config):
    x, q, bias = _problem(seed, (m,), n, 16 * k_blocks, dtype, has_bias, device)
    if transposed_x:  # column-major x: the kernel must honour both strides
        x = x.t().contiguous().t()
    out = torch.full((m, n), float("nan"), dtype=dtype, device=device)  # poison
    y = w4a16_gemm(x, q.packed, q.block_scale, q.global_scale, bias, config=config, out=out)
    assert y is out
    assert_matches_reference(y, x, q, bias)


@settings(max_examples=16)
@given(
    seed=st.integers(0, 2**31),
    m=st.integers(1, 9),
    n=st.integers(1, 100),
    k_blocks=st.integers(1, 20),
    dtype=DTYPES,
    has_bias=st.booleans(),
    gelu=st.booleans(),
    config=st.sampled_from([GemvConfig(2, 8, 64, num_warps=2), GemvConfig(1, 16, 32), GemvConfig(4, 4, 128),
                            GemvConfig(1, 16, 32, split_k=4), GemvConfig(2, 8, 64, num_warps=2, split_k=2)]),
)
def test_gemv_kernel_writes_every_element_correctly(device, seed, m, n, k_blocks, dtype, has_bias, gelu, config):
    x, q, bias = _problem(seed, (m,), n, 16 * k_blocks, dtype, has_bias, device)
    x = x.t().contiguous().t() if seed % 2 else x  # both strides of x
    out = torch.full((m, n), float("nan"), dtype=dtype, device=device)
    y = w4a16_gemm(x, q.packed, q.block_scale, q.global_scale, bias, config=config, out=out, gelu=gelu)
    assert_matches_reference(y, x, q, bias, gelu=gelu)


@pytest.mark.parametrize("m, n, k, config", [
    (3, 40, 208, GemvConfig(2, 16, 32, split_k=4)),  # 7 K tiles: slices of 2, 2, 2 and 1
    (1, 17, 80, GemvConfig(1, 8, 32, split_k=8)),  # 3 K tiles: 3 slices, not 8
    (3, 40, 208, TileConfig(16, 16, 32, num_warps=1, num_stages=1, split_k=4)),  # the fused kernel, as above
])
@pytest.mark.parametrize("gelu", [False, True])
def test_split_k_adds_up_every_slice(device, m, n, k, config, gelu):
    """Split K (GEMV and fused kernel): each slice's partial sums, then the epilogue on their sum,
    with bias and without, into a row-major and a column-major output. The last program of each
    tile sums the slices, counted by per-tile counters that every launch must leave at zero: the
    second call of each pair would otherwise miss its sum."""
    for has_bias in (False, False, True, True):
        x, q, bias = _problem(7 + m, (m,), n, k, torch.bfloat16, has_bias, device)
        out = torch.full((n, m) if has_bias else (m, n), float("nan"), dtype=torch.bfloat16, device=device)
        out = out.t() if has_bias else out
        y = w4a16_gemm(x, q.packed, q.block_scale, q.global_scale, bias, config=config, out=out, gelu=gelu)
        assert_matches_reference(y, x, q, bias, gelu=gelu)
        assert not scratch.tile_counters(1, x.device).any()


@pytest.mark.parametrize("layout", ["offset", "row stride"])
def test_gemv_reads_x_that_cannot_be_viewed_as_int64_words(device, layout):
    """The GEMV reads x four values at a time; an x starting one element into its storage, or with
    rows not a multiple of four elements apart, is read correctly all the same."""
    m, n, k = 3, 40, 64
    x, q, bias = _problem(11, (m,), n, k, torch.bfloat16, True, device)
    if layout == "offset":
        storage = torch.empty(m * k + 1, dtype=x.dtype, device=device)
        shifted = storage[1:].view(m, k)
    else:
        shifted = torch.empty(m, k + 2, dtype=x.dtype, device=device)[:, :k]
    shifted.copy_(x)
    out = torch.full((m, n), float("nan"), dtype=x.dtype, device=device)
    y = w4a16_gemm(shifted, q.packed, q.block_scale, q.global_scale, bias, config=GemvConfig(4, 8, 32), out=out)
    assert_matches_reference(y, x, q, bias)


@pytest.mark.parametrize("config", [GemvConfig(2, 8, 64), TileConfig(16, 16, 32, num_warps=1)])
def test_codes_not_aligned_as_int64_words_are_read_correctly(device, config):
    """The kernels read the codes as int64 words; codes starting 3 bytes into their storage give the
    right result all the same."""
    x, q, bias = _problem(5, (2,), 40, 64, torch.bfloat16, True, device)
    storage = torch.empty(q.packed.numel() + 3, dtype=torch.uint8, device=device)
    packed = storage[3:].view(q.packed.shape)
    packed.copy_(q.packed)
    y = w4a16_gemm(x, packed, q.block_scale, q.global_scale, bias, config=config)
    assert_matches_reference(y, x, q, bias)


@settings(max_examples=15)
@given(
    seed=st.integers(0, 2**31),
    lead=st.sampled_from([(1, 1), (2, 3), (3, 17), (1, 2, 5)]),
    n=st.integers(1, 96),
    k_blocks=st.integers(1, 12),
    dtype=DTYPES,
    has_bias=st.booleans(),
)
def test_nvfp4_linear_keeps_leading_dims(device, seed, lead, n, k_blocks, dtype, has_bias):
    x, q, bias = _problem(seed, lead, n, 16 * k_blocks, dtype, has_bias, device)
    y = nvfp4_linear(x, q, bias)
    assert tuple(y.shape) == (*lead, n)
    assert_matches_reference(y, x, q, bias)


@pytest.mark.parametrize(
    "fields, match",
    [((16, 16, 16), "block_k must be a power of two >= 32"), ((8, 16, 32), "block_m must be"),
     ((16, 48, 32), "block_n must be"), ((16, 16, 32, 0), "group_m, num_warps and num_stages")],
)
def test_tile_config_rejects_unsupported_tiles(fields, match):
    with pytest.raises(ValueError, match=match):
        TileConfig(*fields)


def test_fp32_bias_is_accepted(device):
    x, q, _ = _problem(1, (5,), 24, 32, torch.bfloat16, False, device)
    bias = torch.randn(24, device=device)
    assert_matches_reference(nvfp4_linear(x, q, bias), x, q, bias)


def test_empty_batch_gives_empty_output(device):
    x, q, _ = _problem(2, (0,), 24, 32, torch.float16, False, device)
    y = nvfp4_linear(x, q)
    assert tuple(y.shape) == (0, 24) and y.dtype == torch.float16


def test_extreme_scales_dequantize_exactly(device):
    # Largest and smallest E4M3 scales (448 and the subnormal 2^-9) with every E2M1 code: the
    # in-kernel bit tricks must reproduce each product exactly. One-hot x picks single columns.
    from nvfp4_triton import format as fmt
    from nvfp4_triton.weight import NVFP4Weight

    codes = torch.arange(16, dtype=torch.uint8).repeat(4, 2)  # [4, 32]
    scale = torch.tensor([[448.0, 2.0**-9], [2.0**-9, 448.0], [1.0, 0.001953125 * 3], [0.375, 240.0]])
    q = NVFP4Weight(fmt.pack_nibbles(codes), scale.to(torch.float8_e4m3fn), torch.tensor(1.0), (4, 32)).to(device)
    x = torch.eye(32, dtype=torch.float16, device=device)
    y = nvfp4_linear(x, q)  # y[j, n] = W[n, j]
    assert torch.equal(y.T.cpu().double(), q.to("cpu").dequantize(torch.float64).to(torch.float16).double())


@settings(max_examples=12)
@given(
    seed=st.integers(0, 2**31),
    m=st.integers(1, 100),
    n=st.integers(1, 150),
    k_blocks=st.integers(1, 20),
    dtype=DTYPES,
    has_bias=st.booleans(),
    config=st.sampled_from([TwoPassConfig(), TwoPassConfig(32, 256, 4), TwoPassConfig(16, 32, 2)]),
)
def test_two_pass_strategy_matches_reference(device, seed, m, n, k_blocks, dtype, has_bias, config):
    x, q, bias = _problem(seed, (m,), n, 16 * k_blocks, dtype, has_bias, device)
    out = torch.full((m, n), float("nan"), dtype=dtype, device=device)
    y = w4a16_gemm(x, q.packed, q.block_scale, q.global_scale, bias, config=config, out=out)
    assert_matches_reference(y, x, q, bias, rounded_weight=True)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_dequant_kernel_rounds_the_exact_weight_once(device, dtype):
    torch.manual_seed(3)
    n, k = 70, 208  # ragged against the 64x128 tile
    q = quantize(torch.randn(n, k) * 3).to(device)
    out = torch.full((n, k), float("nan"), dtype=dtype, device=device)
    nvfp4_dequant_kernel[(2, 2)](q.packed, q.block_scale.view(torch.uint8), q.global_scale, out, n, k,
                                 PER_ROW=False, BIT_MATH=False, BLOCK_N=64, BLOCK_K=128)
    exact = q.dequantize(torch.float64)
    if device.type == "cuda":  # one round-to-nearest-even of the fp32 product
        assert torch.equal(out, q.dequantize(torch.float32).to(dtype))
    else:  # the interpreter's down-cast truncates: within one ulp
        ulp = ELEMENT_RTOL[dtype]
        assert bool(((out.double() - exact).abs() <= ulp * exact.abs()).all())


def test_scratch_is_one_growing_buffer_per_stream_with_a_limit(device, monkeypatch):
    monkeypatch.setattr(scratch, "_override", scratch._override)  # restore the limit afterwards
    scratch.release_scratch()
    try:
        a = scratch.dense_buffer(64, 128, torch.bfloat16, device)
        b = scratch.dense_buffer(32, 64, torch.float16, device)
        assert a.data_ptr() == b.data_ptr() and scratch.scratch_bytes() == 64 * 128 * 2
        scratch.dense_buffer(128, 128, torch.bfloat16, device)
        assert scratch.scratch_bytes() == 128 * 128 * 2  # grown, not added
        scratch.set_scratch_limit(10_000)
        assert scratch.scratch_bytes() == 0  # over the new cap: freed
        assert scratch.dense_buffer(128, 128, torch.bfloat16, device) is None
        assert scratch.dense_buffer(32, 64, torch.bfloat16, device) is not None
        scratch.set_scratch_limit(0)
        assert scratch.dense_buffer(1, 16, torch.bfloat16, device) is None
        x, q, _ = _problem(5, (4,), 40, 64, torch.bfloat16, False, device)
        y = w4a16_gemm(x, q.packed, q.block_scale, q.global_scale, None, config=TwoPassConfig())
        assert_matches_reference(y, x, q)  # falls back to the fused kernel: exact weights again
    finally:
        scratch.release_scratch()


def test_split_k_counters_are_one_zeroed_buffer_per_stream(device, monkeypatch):
    """The counters a split launch needs zero: one buffer per stream, grown with fresh zeros, counted
    in ``scratch_bytes()`` and untouched by the scratch limit; a traced layer gets its own."""
    monkeypatch.setattr(scratch, "_override", scratch._override)  # restore the limit afterwards
    scratch.release_scratch()
    try:
        a = scratch.tile_counters(100, device)
        assert a.dtype == torch.int32 and a.numel() >= 100 and not a.any()
        assert scratch.tile_counters(10, device) is a  # reused, not made per call
        a.fill_(7)  # marks the old buffer: the grown one must be new zeros
        b = scratch.tile_counters(1000, device)
        assert b.numel() >= 1000 and not b.any()  # grown: new zeros
        scratch.set_scratch_limit(0)
        assert scratch.tile_counters(1000, device) is b and scratch.scratch_bytes() == b.numel() * 4
        fresh = scratch.tile_counters(50, device, fresh=True)
        assert fresh is not b and fresh.numel() == 50 and not fresh.any()
    finally:
        scratch.release_scratch()
    assert scratch.scratch_bytes() == 0


def test_scratch_limit_from_the_environment(monkeypatch):
    monkeypatch.setenv("NVFP4_TRITON_SCRATCH_MB", "1.5")
    assert scratch.scratch_limit() == int(1.5 * 2**20)
    monkeypatch.setenv("NVFP4_TRITON_SCRATCH_MB", "lots")
    with pytest.raises(ValueError, match="NVFP4_TRITON_SCRATCH_MB must be a number"):
        scratch.scratch_limit()


@pytest.mark.parametrize("problem, match", [
    ((2, 64, 256, torch.bfloat16, "cpu"), "needs a CUDA GPU of compute capability 8.9"),
    ((2, 64, 256, torch.float16, "cpu"), "needs bf16 x"),
    ((2, 64, 240, torch.bfloat16, "cpu"), "K of 256"),
    ((33, 64, 256, torch.bfloat16, "cpu"), "M <= 32"),
])
def test_the_ring_config_where_it_cannot_run_says_why(problem, match):
    """The ring kernel (Gluon; Ada and Hopper) is only timed where it runs; asked for elsewhere by
    an explicit config, it refuses, naming what is missing."""
    from nvfp4_triton.tiling import RingConfig

    m, n, k, dtype, device = problem
    x, q, bias = _problem(3, (m,), n, k, dtype, True, device)
    with pytest.raises(ValueError, match=f"ring 64 w4 s3 cannot run here: .*{match}"):
        w4a16_gemm(x, q.packed, q.block_scale, q.global_scale, bias, config=RingConfig())


@pytest.mark.parametrize("problem, match", [
    ((200, 64, 256, torch.bfloat16, "cpu"), "needs a Hopper GPU"),
    ((200, 64, 256, torch.float16, "cpu"), "needs bf16 x"),
    ((200, 64, 240, torch.bfloat16, "cpu"), "K of 64"),
    ((200, 96, 256, torch.bfloat16, "cpu"), "N a multiple of 64"),
])
def test_the_wgmma_config_where_it_cannot_run_says_why(problem, match):
    """The wgmma kernel (Gluon; Hopper) is only timed where it runs; asked for elsewhere by an explicit
    config, it refuses, naming what is missing."""
    from nvfp4_triton.tiling import WgmmaConfig

    m, n, k, dtype, device = problem
    x, q, bias = _problem(5, (m,), n, k, dtype, True, device)
    with pytest.raises(ValueError, match=f"wgmma 256 s4 cannot run here: .*{match}"):
        w4a16_gemm(x, q.packed, q.block_scale, q.global_scale, bias, config=WgmmaConfig())


@pytest.mark.parametrize("pad, multiple, in_place", [(0, 16, True), (16, 16, True), (8, 16, False), (8, 8, True),
                                                     (4, 8, False)])
def test_gluon_kernels_read_x_in_place_where_its_rows_are_aligned(pad, multiple, in_place):
    """The Gluon kernels copy 16 bytes at a time, so x is copied unless its rows allow that; a row
    stride of K + 8 suits TMA (16-byte rows, the wgmma kernel) but not cp.async (the ring kernel's
    16-element multiple), and an x read in place saves a copy on every call."""
    from nvfp4_triton.gemm import _aligned_rows

    x = torch.randn(5, 256 + pad, dtype=torch.bfloat16)[:, :256]
    kept = _aligned_rows(x, multiple)
    assert (kept.data_ptr() == x.data_ptr()) == in_place
    assert torch.equal(kept, x) and kept.stride(1) == 1 and kept.stride(0) % multiple == 0
    assert _aligned_rows(x.t().contiguous().t(), multiple).is_contiguous()
