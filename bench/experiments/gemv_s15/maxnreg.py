"""The library's GEMV with its registers capped (Triton's ``maxnreg``), so that more programs share
an SM and the grid takes fewer waves: at 1x16x512 it uses 80 registers, 6 programs an SM, and
(1, 18432, 3072)'s 1152 programs make 1.45 waves (Nsight Compute, session 15). Capped at 56, 9
programs fit and the grid is one wave, at the cost of spills (43 local loads and stores in the
SASS, read on the CPU machine).

    PYTHONPATH=. python3 bench/experiments/gemv_s15/maxnreg.py

Prints, per shape and cap, the GPU time of CUDA-graph replays with L2 flushed before each
(``autotune.benchmark_ms``), the ratio to cuBLAS BF16 and the error against float64.
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
import triton

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from nvfp4_triton import quantize  # noqa: E402
from nvfp4_triton.autotune import benchmark_ms  # noqa: E402
from nvfp4_triton.kernels._w4a16_gemv import w4a16_gemv_kernel  # noqa: E402

CASES = [(1, 18432, 3072, 1), (2, 18432, 3072, 2), (4, 18432, 3072, 4), (1, 9216, 3072, 1), (1, 12288, 3072, 1)]
"""(M, N, K, BLOCK_M), all at BLOCK_N 16, BLOCK_K 512, 4 warps, K unsplit"""
CAPS = (None, 72, 64, 56)


def gemv(x, words, scale_bits, global_scale, bias, y, block_m: int, cap: int | None) -> torch.Tensor:
    m, k = x.shape
    n = words.shape[0]
    options = {} if cap is None else {"maxnreg": cap}
    w4a16_gemv_kernel[(triton.cdiv(n, 16), 1)](
        x.view(torch.int64), words, scale_bits, global_scale, bias, y, m, n, k, k // 16, k, k // 4, y.stride(0), 1,
        X_BF16=True, HAS_BIAS=True, GELU_TANH=False, BLOCK_M=block_m, BLOCK_N=16, BLOCK_K=512, SPLIT_K=1,
        num_warps=4, **options)
    return y


def main() -> int:
    print(torch.cuda.get_device_name(), torch.__version__, triton.__version__, flush=True)
    for m, n, k, block_m in CASES:
        gen = torch.Generator(device="cuda").manual_seed(n + k + m)
        q = quantize(torch.randn(n, k, device="cuda", dtype=torch.bfloat16, generator=gen))
        x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16, generator=gen)
        bias = torch.randn(n, device="cuda", dtype=torch.bfloat16, generator=gen)
        w_bf16 = q.dequantize(torch.bfloat16)
        ref = F.linear(x.double(), q.dequantize(torch.float64), bias.double())
        y = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
        words, scale_bits = q.packed.view(torch.int64), q.block_scale.view(torch.uint8)
        bf16_ms = benchmark_ms(lambda: F.linear(x, w_bf16, bias))
        for cap in CAPS:
            call = lambda: gemv(x, words, scale_bits, q.global_scale, bias, y, block_m, cap)  # noqa: E731
            err = float((call().double() - ref).norm() / ref.norm())
            ms = benchmark_ms(call)
            print(f"M={m} [{n}, {k}] {block_m}x16x512 maxnreg {cap}: {ms * 1e3:6.1f} us, "
                  f"{bf16_ms / ms:.2f}x of cuBLAS ({bf16_ms * 1e3:.1f} us), err {err:.1e}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
