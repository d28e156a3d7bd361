"""Is per-1x128-block FP8 activation scaling more accurate than per-token? (issue #7's choice)

CPU only, plain torch: quantizes activations to E4M3 per token (the library's ``fp8.quantize_rows``)
and per 1x128 block (the same formula over each 128 columns), and reports the relative L2 error of
x itself and of the W4A8 product against the exact NVFP4 x BF16 product, for three kinds of
activations: Gaussian, Gaussian with a few outlier channels (x100), and heavy-tailed (Student t,
3 degrees of freedom).

    PYTHONPATH=. python bench/experiments/act_blocks_s12/act_blocks.py
"""
import torch

from nvfp4_triton import fp8, quantize

E4M3_MAX = 448.0


def block_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-1x128 E4M3 activations: ``(q [M, K], scale [M, K/128])``, the formula of ``fp8.quantize_rows`` per block."""
    m, k = x.shape
    xb = x.float().reshape(m, k // 128, 128)
    scale = xb.abs().amax(dim=-1, keepdim=True) / E4M3_MAX
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    q = (xb * (1.0 / scale)).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)
    return q.reshape(m, k), scale.reshape(m, k // 128)


def quantize_blocks(x: torch.Tensor) -> torch.Tensor:
    """``block_rows(x)`` dequantized."""
    q, scale = block_rows(x)
    return (q.float().reshape(*scale.shape, 128) * scale[..., None]).reshape(x.shape)


def quantize_tokens(x: torch.Tensor) -> torch.Tensor:
    q, scale = fp8.quantize_rows(x)
    return q.float() * scale


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def main() -> None:
    g = torch.Generator().manual_seed(0)
    m, n, k = 512, 1024, 3072
    w = quantize(torch.randn(n, k, generator=g))
    multipliers, column = fp8.weight_scales(w)
    w8 = fp8.dequantize_to_fp8(w.packed, w.block_scale, multipliers).double() * column.double().reshape(-1, 1)
    exact_w = w.dequantize(torch.float64)
    gauss = torch.randn(m, k, generator=g)
    outliers = gauss.clone()
    outliers[:, torch.randperm(k, generator=g)[:8]] *= 100.0
    heavy = torch.distributions.StudentT(3.0).sample((m, k))
    print(f"{'activations':24} {'x: per token':>13} {'x: 1x128':>10} {'GEMM: per token':>16} {'GEMM: 1x128':>12}")
    for name, x in (("gaussian", gauss), ("8 outlier channels x100", outliers), ("student t, 3 dof", heavy)):
        x = x.to(torch.bfloat16)
        exact = x.double() @ exact_w.T
        tok, blk = quantize_tokens(x), quantize_blocks(x)
        print(f"{name:24} {rel(tok, x.float()):13.2e} {rel(blk, x.float()):10.2e} "
              f"{rel(tok.double() @ w8.T, exact):16.2e} {rel(blk.double() @ w8.T, exact):12.2e}")


if __name__ == "__main__":
    main()
