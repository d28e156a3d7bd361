"""The library's GEMV against v17 (``gemv_v17.py``) and cuBLAS BF16, one process, one card.

For each issue-5 small-M weight at M = 1, 2 and 4, every GEMV config the tuner would time
(``autotune.candidate_configs``) runs through the library's launch path: with v17's kernel and
launch, with v20's kernel (``gemv_v20.py``), and as the library is (v21). The best config per variant
is reported, as GPU time of CUDA-graph replays with L2 flushed before each
(``autotune.benchmark_ms``). Each output is checked against a float64 reference first.

    PYTHONPATH=. python3 bench/experiments/gemv_s15/ab.py [--variants v17 v20 v21] [--extra] [--out DIR]

Prints a table and writes ``gemv_ab.json`` into DIR ($OUT, else /tmp).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gemv_v17 import launch_v17  # noqa: E402
from gemv_v20 import gemv_v20_kernel  # noqa: E402
from nvfp4_triton import gemm, quantize  # noqa: E402
from nvfp4_triton.autotune import benchmark_ms, candidate_configs  # noqa: E402
from nvfp4_triton.launch import Kernel  # noqa: E402
from nvfp4_triton.tiling import GemvConfig, describe  # noqa: E402

WEIGHTS = [(18432, 3072), (9216, 3072), (12288, 3072), (3072, 12288)]
VARIANTS = {"v17": {"_launch_gemv": launch_v17}, "v20": {"_gemv_kernel": Kernel(gemv_v20_kernel)}, "v21": {}}
"""name: the ``nvfp4_triton.gemm`` attributes it replaces (v21: the library as it is)"""
EXTRA = [(8, 512, 2), (32, 512, 8), (64, 512, 8), (16, 256, 4)]
"""(block_n, block_k, warps) timed for v21 beside the tuner's GEMV configs, with and without split K"""


def time_variant(overrides: dict, x, q, bias, configs, ref) -> tuple[float, str, float]:
    """(best ms, its config, worst relative error over the configs) with ``overrides`` in place."""
    saved = {name: getattr(gemm, name) for name in overrides}
    for name, value in overrides.items():
        setattr(gemm, name, value)
    try:
        best, best_cfg, worst_err = float("inf"), "", 0.0
        for cfg in configs:
            call = lambda: gemm.w4a16_gemm(x, q.packed, q.block_scale, q.global_scale, bias, config=cfg)  # noqa: E731
            worst_err = max(worst_err, float((call().double() - ref).norm() / ref.norm()))
            ms = benchmark_ms(call)
            if ms < best:
                best, best_cfg = ms, describe(cfg)
        return best, best_cfg, worst_err
    finally:
        for name, value in saved.items():
            setattr(gemm, name, value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp")))
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--extra", action="store_true", help="also time the library's kernel on EXTRA's configs")
    args = parser.parse_args()
    print(torch.cuda.get_device_name(), torch.__version__, flush=True)
    rows = []
    for n, k in WEIGHTS:
        gen = torch.Generator(device="cuda").manual_seed(n + k)
        q = quantize(torch.randn(n, k, device="cuda", dtype=torch.bfloat16, generator=gen))
        w_bf16 = q.dequantize(torch.bfloat16)
        bias = torch.randn(n, device="cuda", dtype=torch.bfloat16, generator=gen)
        for m in (1, 2, 4):
            x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16, generator=gen)
            ref = F.linear(x.double(), q.dequantize(torch.float64), bias.double())
            configs = [c for c in candidate_configs(m, n, k, 228 * 1024) if isinstance(c, GemvConfig)]
            row = {"M": m, "N": n, "K": k, "bf16_ms": benchmark_ms(lambda: F.linear(x, w_bf16, bias))}
            for name in args.variants:
                ms, cfg, err = time_variant(VARIANTS[name], x, q, bias, configs, ref)
                if name == "v21" and args.extra:
                    extra = [GemvConfig(m, bn, bk, w, s) for bn, bk, w in EXTRA for s in (1, 2, 4)
                             if -(-k // bk) >= 2 * s]
                    more = time_variant(VARIANTS[name], x, q, bias, extra, ref)
                    row["v21_extra"] = {"ms": more[0], "config": more[1], "err": more[2]}
                    print(f"  v21 beyond the tuner's configs: {more[0] * 1e3:.1f} us ({more[1]})", flush=True)
                row.update({f"{name}_ms": ms, f"{name}_config": cfg, f"{name}_err": err,
                            f"{name}_ratio": row["bf16_ms"] / ms, f"{name}_gbps": q.nbytes / ms * 1e-6})
            rows.append(row)
            print(f"M={m} [{n}, {k}]  bf16 {row['bf16_ms'] * 1e3:6.1f} us | "
                  + " | ".join(f"{name} {row[f'{name}_ms'] * 1e3:6.1f} us {row[f'{name}_ratio']:.2f}x "
                               f"{row[f'{name}_gbps']:5.0f} GB/s ({row[f'{name}_config']}, err {row[f'{name}_err']:.1e})"
                               for name in args.variants), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gemv_ab.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
