"""GPU: what would per-1x128-block FP8 activations cost in cuBLAS's FP8 GEMM? (staged, session 12)

``act_blocks.py`` (CPU) found 1x128 blocks more accurate than per-token scales when a few
channels carry outliers (the GEMM's error 2.95e-2 -> 2.23e-2) and about equal on Gaussian data,
because each block's largest value becomes exact. torch's ``_scaled_mm`` takes 1x128 scales for
x (``[M, K/128]``) with either 1x128 (``[K/128, N]``: the library's per-row weight scale,
repeated) or 128x128 (``[K/128, N/128]``: the weight requantized per block) scales for the
weight. This times each recipe this torch/cuBLAS accepts against the library's row-wise form on
the FLUX shapes with M >= 512, and prints the errors against the exact NVFP4 x BF16 product, for
Gaussian activations and for 8 outlier channels x100.

    PYTHONPATH=. python3 bench/experiments/act_blocks_s12/blockwise_mm.py
"""
import itertools
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from act_blocks import E4M3_MAX, block_rows, rel  # noqa: E402
from flux_shapes import FLUX_1024  # noqa: E402

from nvfp4_triton import fp8, quantize  # noqa: E402
from nvfp4_triton.autotune import benchmark_ms  # noqa: E402


LAYOUTS = {"row-major": lambda t: t, "column-major": lambda t: t.t().contiguous().t()}
RECIPES = {  # the weight operand's scale shape for [K, N] = w8.t(); x's is [M, K/128] in both
    "1x128 x 1x128": lambda k, n: (k // 128, n),
    "1x128 x 128x128": lambda k, n: (k // 128, n // 128),
}


def accepted_layouts() -> dict:
    """Per recipe, the first (x scale layout, weight scale layout) that this torch/cuBLAS accepts.

    Session 12's first run tried only the same layout for both operands, and cuBLAS took neither:
    torch wants x's block scales column-major and the weight's row-major."""
    q = torch.randn(256, 256, device="cuda").to(torch.float8_e4m3fn)
    found = {}
    for recipe, shape_b in RECIPES.items():
        for (name_a, layout_a), (name_b, layout_b) in itertools.product(LAYOUTS.items(), repeat=2):
            try:
                torch._scaled_mm(q, q.t(), scale_a=layout_a(torch.ones(256, 2, device="cuda")),
                                 scale_b=layout_b(torch.ones(shape_b(256, 256), device="cuda")),
                                 out_dtype=torch.bfloat16)
            except RuntimeError as err:
                print(f"{recipe}, x {name_a}, weight {name_b}: {str(err).splitlines()[0][:160]}")
                continue
            print(f"{recipe}: x scales {name_a}, weight scales {name_b}")
            found[recipe] = (layout_a, layout_b)
            break
    if not found:
        raise SystemExit("no 1x128 recipe accepted: blockwise scaling is not available here")
    return found


def weight_blocks(w_exact: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The NVFP4 weight's exact values ``[N, K]`` as E4M3 per 128x128 block: ``(w8 [N, K], scale [K/128, N/128])``."""
    n, k = w_exact.shape
    blocks = w_exact.float().reshape(n // 128, 128, k // 128, 128)
    scale = blocks.abs().amax(dim=(1, 3), keepdim=True) / E4M3_MAX
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    w8 = (blocks / scale).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn).reshape(n, k)
    return w8, scale.reshape(n // 128, k // 128).t().contiguous()


def main() -> None:
    print(torch.cuda.get_device_name(), torch.__version__)
    recipes = accepted_layouts()
    g = torch.Generator(device="cuda").manual_seed(0)
    print("times in ms (GEMM alone, x already quantized); ratio = rowwise ms / 1x128 ms; errors: relative L2 "
          "against the exact NVFP4 x BF16 product, Gaussian x and x with 8 outlier channels x100")
    print(f"{'shape':34} {'M':>5} {'N':>6} {'K':>6} {'recipe':>16} {'bf16':>8} {'rowwise':>8} {'1x128':>8} "
          f"{'ratio':>6} {'err row':>8} {'err blk':>8} {'outl row':>8} {'outl blk':>8}")
    for label, m, n, k, _ in FLUX_1024:
        if m < 512:
            continue
        w = quantize(torch.randn(n, k, device="cuda", generator=g))
        multipliers, column = fp8.weight_scales(w)
        w8 = fp8.dequantize_to_fp8(w.packed, w.block_scale, multipliers)
        w_bf16 = w.dequantize(torch.bfloat16)
        exact_w = w.dequantize(torch.float64)
        x = torch.randn(m, k, device="cuda", generator=g).to(torch.bfloat16)
        outliers = x.clone()
        outliers[:, torch.randperm(k, device="cuda", generator=g)[:8]] *= 100.0
        qr, sr = fp8.quantize_rows(x)

        def rowwise(a):
            q, s = fp8.quantize_rows(a)
            return torch._scaled_mm(q, w8.t(), scale_a=s, scale_b=column, out_dtype=torch.bfloat16,
                                    use_fast_accum=True)

        for recipe, (layout_a, layout_b) in recipes.items():
            if recipe == "1x128 x 1x128":  # the library's per-row weight scale, repeated over K's blocks
                wb, sw = w8, layout_b(column.expand(k // 128, n).contiguous())
            else:
                wb, sw = weight_blocks(exact_w)
                sw = layout_b(sw)

            def blockwise(a):
                q, s = block_rows(a)
                return torch._scaled_mm(q, wb.t(), scale_a=layout_a(s), scale_b=sw, out_dtype=torch.bfloat16)

            try:
                errors = []
                for a in (x, outliers):
                    exact = a.double() @ exact_w.T
                    errors += [rel(rowwise(a), exact), rel(blockwise(a), exact)]
                qb, sb = block_rows(x)
                sb = layout_a(sb)
                times = [benchmark_ms(lambda: x @ w_bf16.t()),
                         benchmark_ms(lambda: torch._scaled_mm(qr, w8.t(), scale_a=sr, scale_b=column,
                                                               out_dtype=torch.bfloat16, use_fast_accum=True)),
                         benchmark_ms(lambda: torch._scaled_mm(qb, wb.t(), scale_a=sb, scale_b=sw,
                                                               out_dtype=torch.bfloat16))]
            except RuntimeError as err:
                print(f"{label:34} {m:5} {n:6} {k:6} {recipe:>16} failed: {str(err).splitlines()[0][:150]}")
                continue
            print(f"{label:34} {m:5} {n:6} {k:6} {recipe:>16} {times[0]:8.4f} {times[1]:8.4f} {times[2]:8.4f} "
                  f"{times[1] / times[2]:6.3f} " + " ".join(f"{e:8.2e}" for e in errors), flush=True)


if __name__ == "__main__":
    main()
