"""Session 16 A/B, one process: the fused kernel with paired decoding and split K (v24, the library
now) against session 15's fused kernel (``old_fused.py``), the library's GEMV and cuBLAS BF16,
on the issue-5 small-M shapes and two large-M ones. Every config is checked against a float64
reference before it is timed. Writes ``$OUT/ab.json`` (every timing) and prints the best per kernel.

    PYTHONPATH=. python3 bench/experiments/mma_s16/ab.py [--quick]
"""

import argparse
import itertools
import json
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench_gemm import environment, warm_up_gpu  # noqa: E402
from nvfp4_triton import gemm, quantize  # noqa: E402
from nvfp4_triton.autotune import benchmark_ms, candidate_configs, device_shared_memory, m_bucket  # noqa: E402
from nvfp4_triton.launch import cdiv  # noqa: E402
from nvfp4_triton.tiling import GemvConfig, TileConfig, describe  # noqa: E402
from gemv_k0 import w4a16_gemv_kernel as gemv_k0_kernel  # noqa: E402
from fused_v24a import w4a16_gemm_kernel as v24a_kernel  # noqa: E402
from old_fused import w4a16_gemm_kernel as old_kernel  # noqa: E402

WEIGHTS = [(18432, 3072), (9216, 3072), (12288, 3072), (3072, 12288)]


def old_fused(x, q, bias, cfg, y):
    m, k = x.shape
    n = q.packed.shape[0]
    old_kernel[(cdiv(m, cfg.block_m) * cdiv(n, cfg.block_n),)](
        x, q.packed, q.block_scale.view(torch.uint8), q.global_scale, bias, y, m, n, k,
        x.stride(0), x.stride(1), y.stride(0), y.stride(1), HAS_BIAS=True, GELU_TANH=False, DOT_F32=False,
        BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k, GROUP_M=cfg.group_m,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    return y


TILES = [(64, 64, 4), (64, 128, 4), (128, 128, 4), (256, 64, 4), (64, 64, 8), (64, 128, 8), (128, 64, 8),
         (128, 128, 8), (256, 64, 8), (256, 128, 8)]
"""(block_n, block_k, warps) of the new kernel with no spills at BLOCK_M = 16 (bench/kernel_asm.py)."""
TOP = [(64, 64, 4), (64, 128, 4), (128, 128, 4)]  # the tuner's M <= 16 tiles (autotune._SMALL_M)


def v24a(x, q, bias, cfg, y, partial):
    """The fused kernel as first timed this session, launched as ``gemm._launch_w4a16`` launches the
    library's (split K: into ``partial``, then the library's sum kernel)."""
    m, k = x.shape
    n = q.packed.shape[0]
    k_per_split, split = gemm.k_slices(k, cfg.block_k, cfg.split_k)
    out = y if split == 1 else partial[:split]
    v24a_kernel[(cdiv(m, cfg.block_m) * cdiv(n, cfg.block_n), split)](
        x, q.packed.view(torch.int64), q.block_scale.view(torch.uint8), q.global_scale, bias, out, m, n, k,
        k_per_split, x.stride(0), x.stride(1), y.stride(0), y.stride(1), HAS_BIAS=split == 1, GELU_TANH=False,
        DOT_F32=False, PACKED_MUL=True, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k,
        GROUP_M=cfg.group_m, SPLIT_K=split, num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    if split > 1:
        gemm._reduce_kernel((cdiv(m * n, 1024),), out, q.global_scale, bias, y, m, n, y.stride(0), y.stride(1),
                            HAS_BIAS=True, GELU_TANH=False, SPLIT_K=split, BLOCK=1024, num_warps=4)
    return y


def gemv_k0(x, q, bias, cfg, y):
    """The GEMV variant, launched as ``gemm._launch_w4a16`` launches the library's (no split: the
    variant is timed at the unsplit configs)."""
    m, k = x.shape
    n = q.packed.shape[0]
    gemv_k0_kernel[(cdiv(n, cfg.block_n), 1)](
        x.view(torch.int64), q.packed.view(torch.int64), q.block_scale.view(torch.uint8), q.global_scale, bias, y,
        m, n, k, k // 16, k, x.stride(0) // 4, y.stride(0), y.stride(1), X_BF16=True, HAS_BIAS=True,
        GELU_TANH=False, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k, SPLIT_K=1,
        num_warps=cfg.num_warps)
    return y


def new_configs(m, k, quick):
    if m > 16:
        return None
    tiles = TILES if quick else [(bn, bk, 4) for bn in (32, 64, 128) for bk in (128, 256)]
    for (bn, bk, warps), stages, split in itertools.product(tiles, (1,) if quick else (1, 3), (1, 2, 4, 8)):
        if cdiv(k, bk) >= 2 * split:
            yield TileConfig(16, bn, bk, num_warps=warps, num_stages=stages, split_k=split)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="the new kernel's TILES, one stage count (else call 1's 4-warp grid)")
    parser.add_argument("--skip-old", action="store_true", help="leave session 15's fused kernel out")
    parser.add_argument("--small-only", action="store_true", help="M <= 16 only")
    parser.add_argument("--gemv-k0", action="store_true", help="also the GEMV variant of gemv_k0.py")
    parser.add_argument("--no-new", action="store_true", help="leave the new fused kernel's grid out")
    parser.add_argument("--top", action="store_true", help="the new kernel at the tuner's M <= 16 tiles only")
    parser.add_argument("--v24a", action="store_true", help="also fused_v24a.py at the new kernel's configs")
    opts = parser.parse_args()
    out_dir = Path(os.environ.get("OUT", "."))
    env = environment()
    print(env, flush=True)
    warm_up_gpu()
    shapes = [(m, n, k) for m in (1, 2, 4, 8, 16) for n, k in WEIGHTS] + ([] if opts.small_only else [(512, 3072, 3072), (4096, 3072, 3072)])
    shared = device_shared_memory(0)
    rows = []
    for m, n, k in shapes:
        g = torch.Generator(device="cuda").manual_seed(m * 7 + n * 3 + k)
        q = quantize(torch.randn(n, k, device="cuda", dtype=torch.bfloat16, generator=g))
        x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16, generator=g)
        bias = torch.randn(n, device="cuda", dtype=torch.bfloat16, generator=g)
        w = q.dequantize(torch.bfloat16)
        ref = F.linear(x.double(), q.dequantize(torch.float64), bias.double())
        y = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
        row = {"M": m, "N": n, "K": k, "bf16_ms": benchmark_ms(lambda: F.linear(x, w, bias)), "runs": []}

        def run(kind, cfg, fn):
            fn()
            err = float((y.double() - ref).norm() / ref.norm())
            if not err < 1e-2:
                print(f"  WRONG {kind} {describe(cfg)}: {err:.3e}", flush=True)
                row["runs"].append({"kind": kind, "config": describe(cfg), "err": err, "ms": None})
                return
            ms = benchmark_ms(fn)
            row["runs"].append({"kind": kind, "config": describe(cfg), "err": err, "ms": ms})

        cands = candidate_configs(m_bucket(m), n, k, shared)
        for cfg in cands:
            if isinstance(cfg, GemvConfig):
                run("gemv", cfg, lambda: gemm.w4a16_gemm(x, q.packed, q.block_scale, q.global_scale, bias, cfg, out=y))
                if opts.gemv_k0 and cfg.split_k == 1:
                    run("gemv_k0", cfg, lambda: gemv_k0(x, q, bias, cfg, y))
            else:
                if not opts.skip_old:
                    run("old_fused", cfg, lambda: old_fused(x, q, bias, cfg, y))
                if m > 16:
                    run("new_fused", cfg,
                        lambda: gemm.w4a16_gemm(x, q.packed, q.block_scale, q.global_scale, bias, cfg, out=y))
        partial = torch.empty(8, m, n, device="cuda", dtype=torch.float32)
        for cfg in () if opts.no_new else new_configs(m, k, opts.quick) or ():
            if opts.top and (cfg.block_n, cfg.block_k, cfg.num_warps) not in TOP:
                continue
            run("new_fused", cfg, lambda: gemm.w4a16_gemm(x, q.packed, q.block_scale, q.global_scale, bias, cfg, out=y))
            if opts.v24a:
                run("v24a", cfg, lambda: v24a(x, q, bias, cfg, y, partial))
        line = f"({m}, {n}, {k}) bf16 {row['bf16_ms'] * 1e3:7.1f} us"
        for kind in ("old_fused", "gemv", "gemv_k0", "v24a", "new_fused"):
            timed = [r for r in row["runs"] if r["kind"] == kind and r["ms"]]
            if timed:
                best = min(timed, key=lambda r: r["ms"])
                row[f"{kind}_best"] = best
                line += f" | {kind} {best['ms'] * 1e3:7.1f} us {row['bf16_ms'] / best['ms']:5.2f}x [{best['config']}]"
        unsplit = [r for r in row["runs"] if r["kind"] == "new_fused" and r["ms"] and "split" not in r["config"]]
        if unsplit and m <= 16:
            line += f" | unsplit {row['bf16_ms'] / min(r['ms'] for r in unsplit):5.2f}x"
        if row["runs"]:
            line += f" | max err {max(r['err'] for r in row['runs']):.2e}"
        print(line, flush=True)
        rows.append(row)
    (out_dir / "ab.json").write_text(json.dumps({"environment": env, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
