"""GPU: what would per-1x128-block FP8 activations cost in cuBLAS's FP8 GEMM? (staged, session 12)

``act_blocks.py`` (CPU) found 1x128 blocks more accurate than per-token scales when a few
channels carry outliers (the GEMM's error 2.95e-2 -> 2.23e-2) and about equal on Gaussian data,
because each block's largest value becomes exact. torch's ``_scaled_mm`` takes 1x128 scales for
both operands (scale_a ``[M, K/128]``, scale_b ``[K/128, N]``). This times that form against the
library's row-wise form on the FLUX shapes with M >= 512, and prints both errors against the
exact NVFP4 x BF16 product, for Gaussian activations and for 8 outlier channels x100.

    PYTHONPATH=. python3 bench/experiments/act_blocks_s12/blockwise_mm.py
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from act_blocks import block_rows, rel  # noqa: E402
from flux_shapes import FLUX_1024  # noqa: E402

from nvfp4_triton import fp8, quantize  # noqa: E402
from nvfp4_triton.autotune import benchmark_ms  # noqa: E402


LAYOUTS = {"row-major scales": lambda t: t, "column-major scales": lambda t: t.t().contiguous().t()}


def scale_layout():
    """The first scale layout cuBLAS accepts for 1x128 x 1x128 scaling (torch's checks differ by version)."""
    q = torch.randn(256, 256, device="cuda").to(torch.float8_e4m3fn)
    s = torch.ones(256, 2, device="cuda")
    for name, layout in LAYOUTS.items():
        try:
            torch._scaled_mm(q, q.t(), scale_a=layout(s), scale_b=layout(s.t().contiguous()), out_dtype=torch.bfloat16)
        except RuntimeError as err:
            print(f"{name}: {str(err).splitlines()[0][:200]}")
            continue
        print(f"using {name}")
        return layout
    raise SystemExit("no scale layout accepted: 1x128 scaling is not available here")


def main() -> None:
    print(torch.cuda.get_device_name(), torch.__version__)
    layout = scale_layout()
    g = torch.Generator(device="cuda").manual_seed(0)
    print(f"{'shape':34} {'M':>5} {'N':>6} {'K':>6} {'bf16':>8} {'rowwise':>8} {'1x128':>8} {'ratio':>6} "
          f"{'err row':>8} {'err blk':>8} {'outl row':>8} {'outl blk':>8}")
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
        column_blocks = layout(column.expand(k // 128, n).contiguous())

        def rowwise(a):
            q, s = fp8.quantize_rows(a)
            return torch._scaled_mm(q, w8.t(), scale_a=s, scale_b=column, out_dtype=torch.bfloat16,
                                    use_fast_accum=True)

        def blockwise(a):
            q, s = block_rows(a)
            return torch._scaled_mm(q, w8.t(), scale_a=layout(s), scale_b=column_blocks, out_dtype=torch.bfloat16)

        errors, times = [], []
        try:
            for a in (x, outliers):
                exact = a.double() @ exact_w.T
                errors += [rel(rowwise(a), exact), rel(blockwise(a), exact)]
            # GEMMs alone: the quantization is the same pass either way (one read of x).
            qr, sr = fp8.quantize_rows(x)
            qb, sb = block_rows(x)
            sb = layout(sb)
            times = [benchmark_ms(lambda: x @ w_bf16.t()),
                     benchmark_ms(lambda: torch._scaled_mm(qr, w8.t(), scale_a=sr, scale_b=column,
                                                           out_dtype=torch.bfloat16, use_fast_accum=True)),
                     benchmark_ms(lambda: torch._scaled_mm(qb, w8.t(), scale_a=sb, scale_b=column_blocks,
                                                           out_dtype=torch.bfloat16))]
        except RuntimeError as err:
            print(f"{label:34} {m:5} {n:6} {k:6} failed: {str(err).splitlines()[0][:150]}")
            continue
        print(f"{label:34} {m:5} {n:6} {k:6} {times[0]:8.4f} {times[1]:8.4f} {times[2]:8.4f} "
              f"{times[1] / times[2]:6.3f} " + " ".join(f"{e:8.2e}" for e in errors), flush=True)


if __name__ == "__main__":
    main()
