"""Comparison of kernel outputs with the float64 reference of the dequantized weight."""

import torch

from nvfp4_triton.weight import NVFP4Weight

# Element bound: one ulp of the output dtype (Triton's interpreter truncates fp32 -> bf16
# instead of rounding, which costs up to a whole ulp). Norm bounds: correct rounding alone
# gives ~1.7e-3 (bf16) / ~2e-4 (fp16); truncation ~3.3e-3 (bf16).
ELEMENT_RTOL = {torch.bfloat16: 2.0**-7, torch.float16: 2.0**-10}
# Spacing of the output dtype's subnormals: the absolute rounding error of results near zero.
SUBNORMAL_ULP = {torch.bfloat16: 2.0**-133, torch.float16: 2.0**-24}
NORM_RTOL = {torch.bfloat16: 6e-3, torch.float16: 1e-3}


def reference_linear(x: torch.Tensor, weight: NVFP4Weight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ W^T + b`` in float64 on x's device, W dequantized exactly."""
    y = x.detach().double() @ weight.dequantize(torch.float64).T
    return y + bias.detach().double() if bias is not None else y


GELU_SLOPE = 1.13
"""Largest |d/da gelu_tanh(a)|: how much an error before the epilogue's GELU can grow through it."""


def assert_matches_reference(y: torch.Tensor, x: torch.Tensor, weight: NVFP4Weight, bias=None,
                             rounded_weight: bool = False, gelu: bool = False) -> None:
    """Every element within output rounding plus fp32 accumulation error, and the norm-wise error small.

    ``rounded_weight``: the path rounds the dequantized weight to x's dtype first (two-pass), which
    adds up to one ulp of that dtype per product. ``gelu``: the output went through GELU-tanh.
    """
    assert y.dtype == x.dtype, f"output dtype {y.dtype}, expected {x.dtype}"
    assert tuple(y.shape) == (*x.shape[:-1], weight.out_features)
    y64 = y.detach().double()
    assert bool(torch.isfinite(y64).all()), "output has NaN/Inf: unwritten or corrupted elements"
    ref = reference_linear(x, weight, bias)
    magnitude = x.detach().double().abs() @ weight.dequantize(torch.float64).abs().T
    k = weight.in_features
    weight_term = ELEMENT_RTOL[x.dtype] * magnitude if rounded_weight else 0.0
    before_output = (k + 2) * 2.0**-22 * magnitude + weight_term
    if gelu:  # the two-pass path rounds the pre-activation to x's dtype before its GELU
        before_output = GELU_SLOPE * (before_output + ELEMENT_RTOL[x.dtype] * ref.abs())
        ref = torch.nn.functional.gelu(ref, approximate="tanh")
    bound = ELEMENT_RTOL[x.dtype] * ref.abs() + before_output + SUBNORMAL_ULP[x.dtype]
    excess = (y64 - ref).abs() - bound
    worst = int(excess.argmax()) if excess.numel() else 0
    assert bool((excess <= 0).all()), (
        f"element {worst} off by {float((y64 - ref).abs().reshape(-1)[worst]):.3g} "
        f"(ref {float(ref.reshape(-1)[worst]):.4g}, bound {float(bound.reshape(-1)[worst]):.3g})"
    )
    if ref.numel() >= 256 and ref.norm() > 0:  # a norm-wise figure means little over a few elements
        rel = float((y64 - ref).norm() / ref.norm())
        assert rel <= NORM_RTOL[x.dtype], f"relative L2 error {rel:.3g} > {NORM_RTOL[x.dtype]}"
