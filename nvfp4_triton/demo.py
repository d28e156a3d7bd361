"""Quantize one linear layer to NVFP4, run it through the Triton kernel, and report its error.

    python -m nvfp4_triton.demo [--in-features 3072] [--out-features 3072] [--tokens 16]

Runs on a CUDA GPU when there is one, otherwise on the CPU through Triton's interpreter
(switched on here, before the kernels are built).
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nvfp4_triton.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--in-features", type=int, default=3072, help="K, a multiple of 16 (default 3072)")
    parser.add_argument("--out-features", type=int, default=3072, help="N (default 3072)")
    parser.add_argument("--tokens", type=int, default=16, help="M, rows of the activation (default 16)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch

    on_gpu = torch.cuda.is_available()
    if not on_gpu:
        os.environ.setdefault("TRITON_INTERPRET", "1")
    from nvfp4_triton import NVFP4Linear

    device = torch.device("cuda" if on_gpu else "cpu")
    where = torch.cuda.get_device_name() if on_gpu else "CPU (Triton interpreter)"
    print(f"device: {where}")
    torch.manual_seed(args.seed)
    try:
        dense = torch.nn.Linear(args.in_features, args.out_features, dtype=torch.bfloat16, device=device)
        layer = NVFP4Linear.from_linear(dense)
    except ValueError as err:
        parser.error(str(err))
    print(layer)
    x = torch.randn(args.tokens, args.in_features, dtype=torch.bfloat16, device=device)

    start = time.perf_counter()
    with torch.no_grad():
        y = layer(x)
        if on_gpu:
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        exact = x.double() @ layer.nvfp4_weight.dequantize(torch.float64).T + layer.bias.double()
        bf16 = dense(x).double()
    y = y.double()
    bf16_bytes = dense.weight.numel() * dense.weight.element_size()
    print(f"weight bytes: {layer.weight_nbytes:,} NVFP4 vs {bf16_bytes:,} BF16 ({bf16_bytes / layer.weight_nbytes:.2f}x less)")
    print(f"kernel vs exact NVFP4 product (float64): rel L2 error {float((y - exact).norm() / exact.norm()):.2e}")
    print(f"NVFP4 layer vs BF16 layer (quantization error): rel L2 error {float((y - bf16).norm() / bf16.norm()):.2e}")
    print(f"first call (compile + run): {elapsed:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
