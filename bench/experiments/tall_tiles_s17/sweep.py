"""Session 17, one process: the library's fused kernel at M >= 32 against the kernel at 7a7d69c
(``head_fused.py``: pair order and the hand-loaded next tile at every M), two-pass and cuBLAS
BF16; with ``--small``, at the issue-5 small-M points, against the same kernel with its dot
operands swapped (``swapped.py``: W x^T, the weight's rows on the MMA's rows; wgmma on sm_90).
Every config is checked against a float64 reference before it is timed
(``autotune.benchmark_ms``: CUDA-graph replays, L2 flushed before each). Writes
``$OUT/sweep.json`` (``small.json``) and prints the best per kernel and shape.

Which library code each call ran: bench/experiments/tall_tiles_s17/README.md.

    PYTHONPATH=. python3 bench/experiments/tall_tiles_s17/sweep.py [--quick | --small] [--shapes I ...]
"""

import argparse
import json
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gemm import environment, warm_up_gpu  # noqa: E402
from nvfp4_triton import gemm, quantize  # noqa: E402
from nvfp4_triton.autotune import (_MID_M, benchmark_ms, candidate_configs, device_shared_memory,  # noqa: E402
                                   m_bucket, shared_memory_estimate)
from nvfp4_triton.launch import cdiv  # noqa: E402
from nvfp4_triton.tiling import GemvConfig, TileConfig, TwoPassConfig, describe  # noqa: E402
from head_fused import w4a16_gemm_kernel as head_kernel  # noqa: E402
from swapped import w4a16_gemm_kernel as swapped_kernel  # noqa: E402
from two_ahead import w4a16_gemm_kernel as two_ahead_kernel  # noqa: E402

SHAPES = [(512, 3072, 3072), (512, 12288, 3072), (512, 3072, 12288), (4096, 3072, 3072), (4096, 12288, 3072),
          (4608, 3072, 15360), (32, 3072, 3072), (64, 3072, 3072)]

SMALL = [(m, n, k) for m in (1, 4, 8, 16) for n, k in [(18432, 3072), (9216, 3072), (12288, 3072), (3072, 12288)]]
"""Issue 5's small-M points (M = 2 left out for time)."""
SMALL_TILES = [(64, 64, 4), (64, 128, 4), (128, 128, 4), (128, 128, 8), (64, 256, 4), (128, 64, 4)]
"""(block_n, block_k, warps) at 16 rows of x: the tuner's three (autotune._SMALL_M), and three whose
swapped form compiles without spills (bench/kernel_asm.py)."""

SWEEP_512 = [(bm, bn, bk, w, s, split) for bm, bn, bk, w, s, splits in [
    (128, 128, 64, 8, 3, (1, 2)), (128, 128, 64, 4, 3, (1, 2)), (128, 64, 64, 4, 3, (1, 2, 4)),
    (128, 64, 128, 4, 3, (1, 2)), (64, 128, 64, 4, 3, (1, 2)), (256, 64, 64, 8, 3, (1, 2, 4)),
    (256, 128, 64, 8, 3, (1, 2)), (128, 256, 64, 8, 3, (1, 2)), (64, 64, 128, 4, 4, (1, 2)),
    (128, 128, 128, 8, 2, (1, 2)), (128, 128, 64, 8, 4, (1,)), (128, 128, 64, 8, 1, (1, 2))] for split in splits]
SWEEP_LARGE = [(128, 128, 64, 8, 3, 1), (128, 128, 64, 8, 4, 1), (256, 128, 64, 8, 3, 1), (128, 256, 64, 8, 3, 1),
               (128, 128, 128, 8, 3, 1), (256, 64, 64, 8, 3, 1), (128, 128, 64, 4, 3, 1), (128, 128, 64, 8, 1, 1)]


def _launch(kernel, x, q, bias, cfg, y, partial, **extra):
    """``kernel`` launched as ``gemm._launch_w4a16`` launches the fused kernel (split K: into
    ``partial``, then the library's sum kernel)."""
    m, k = x.shape
    n = q.packed.shape[0]
    k_per_split, split = gemm.k_slices(k, cfg.block_k, cfg.split_k)
    out = y if split == 1 else partial[:split]
    kernel[(cdiv(m, cfg.block_m) * cdiv(n, cfg.block_n), split)](
        x, q.packed.view(torch.int64), q.block_scale.view(torch.uint8), q.global_scale, bias, out, m, n, k,
        k_per_split, x.stride(0), x.stride(1), y.stride(0), y.stride(1), HAS_BIAS=split == 1, GELU_TANH=False,
        DOT_F32=False, PACKED_MUL=True, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k,
        GROUP_M=cfg.group_m, SPLIT_K=split, num_warps=cfg.num_warps, num_stages=cfg.num_stages, **extra)
    if split > 1:
        gemm._reduce_kernel((cdiv(m * n, 1024),), out, q.global_scale, bias, y, m, n, y.stride(0), y.stride(1),
                            HAS_BIAS=True, GELU_TANH=False, SPLIT_K=split, BLOCK=1024, num_warps=4)
    return y


def head(x, q, bias, cfg, y, partial):
    """7a7d69c's fused kernel."""
    return _launch(head_kernel, x, q, bias, cfg, y, partial)


def swapped(x, q, bias, cfg, y, partial):
    """``swapped.py``'s kernel."""
    return _launch(swapped_kernel, x, q, bias, cfg, y, partial, NUM_STAGES=cfg.num_stages)


def two_ahead(x, q, bias, cfg, y, partial):
    """``two_ahead.py``'s kernel."""
    return _launch(two_ahead_kernel, x, q, bias, cfg, y, partial)


def configs(m, quick, small, stages, two_ahead=False):
    if small:
        tiles = SMALL_TILES if stages == 1 and not two_ahead else [(64, 128, 4), (128, 128, 4), (64, 64, 4)]
        for (bn, bk, w), split in ((t, s) for t in tiles for s in (1, 2, 4, 8)):
            yield TileConfig(16, bn, bk, num_warps=w, num_stages=stages, split_k=split)
        return
    if m <= 64:
        raw = [(m, bn, bk, w, s, 1) for bn, bk, w, s in _MID_M]
    else:
        raw = SWEEP_512 if m == 512 else SWEEP_LARGE
        if quick:
            raw = raw[:6]
    for bm, bn, bk, w, s, split in raw:
        cfg = TileConfig(bm, bn, bk, num_warps=w, num_stages=s, split_k=split)
        if shared_memory_estimate(cfg) <= 227 * 1024:
            yield cfg


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-head", action="store_true", help="leave 7a7d69c's kernel out")
    parser.add_argument("--shapes", type=int, nargs="*", help="indices into SHAPES (or SMALL with --small)")
    parser.add_argument("--small", action="store_true",
                        help="SMALL: the library's fused kernel and GEMV against the swapped kernel")
    parser.add_argument("--two-ahead", action="store_true",
                        help="with --small: two_ahead.py's kernel too, and the swapped kernel left out")
    parser.add_argument("--stages", type=int, default=1,
                        help="with --small: pipeline stages of both kernels; above 1, swapped.py drops its "
                             "hand-loaded next tile for Triton's pipelining")
    opts = parser.parse_args()
    out_dir = Path(os.environ.get("OUT", "."))
    print(environment(), flush=True)
    warm_up_gpu()
    rows = []
    shapes = SMALL if opts.small else SHAPES
    for index in opts.shapes if opts.shapes is not None else range(len(shapes)):
        m, n, k = shapes[index]
        g = torch.Generator(device="cuda").manual_seed(m * 7 + n * 3 + k)
        q = quantize(torch.randn(n, k, device="cuda", dtype=torch.bfloat16, generator=g))
        x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16, generator=g)
        bias = torch.randn(n, device="cuda", dtype=torch.bfloat16, generator=g)
        w = q.dequantize(torch.bfloat16)
        ref = F.linear(x.double(), q.dequantize(torch.float64), bias.double())
        y = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
        partial = torch.empty(8, m, n, device="cuda", dtype=torch.float32)
        row = {"M": m, "N": n, "K": k, "bf16_ms": benchmark_ms(lambda: F.linear(x, w, bias)), "runs": []}

        def run(kind, cfg, fn):
            y.fill_(float("nan"))
            try:
                fn()
            except Exception as err:  # out of resources and the like: record, go on
                print(f"  FAILED {kind} {describe(cfg)}: {str(err).splitlines()[0][:120]}", flush=True)
                return
            err = float((y.double() - ref).norm() / ref.norm())
            ms = benchmark_ms(fn) if err < 1e-2 else None
            if ms is None:
                print(f"  WRONG {kind} {describe(cfg)}: {err:.3e}", flush=True)
            row["runs"].append({"kind": kind, "config": describe(cfg), "err": err, "ms": ms})

        run("two_pass", TwoPassConfig(),
            lambda: gemm.w4a16_gemm(x, q.packed, q.block_scale, q.global_scale, bias, TwoPassConfig(), out=y))
        for cfg in configs(m, opts.quick, opts.small, opts.stages, opts.two_ahead):
            run("new", cfg, lambda: gemm.w4a16_gemm(x, q.packed, q.block_scale, q.global_scale, bias, cfg, out=y))
            if opts.small and opts.two_ahead:
                run("two_ahead", cfg, lambda: two_ahead(x, q, bias, cfg, y, partial))
            elif opts.small:
                run("swapped", cfg, lambda: swapped(x, q, bias, cfg, y, partial))
            elif not opts.no_head:
                run("head", cfg, lambda: head(x, q, bias, cfg, y, partial))
        if opts.small and m <= 4 and opts.stages == 1:
            for cfg in candidate_configs(m_bucket(m), n, k, device_shared_memory(0)):
                if isinstance(cfg, GemvConfig):
                    run("gemv", cfg,
                        lambda: gemm.w4a16_gemm(x, q.packed, q.block_scale, q.global_scale, bias, cfg, out=y))
        line = f"({m}, {n}, {k}) bf16 {row['bf16_ms'] * 1e3:7.1f} us"
        for kind in ("two_pass", "head", "gemv", "new", "swapped", "two_ahead"):
            timed = sorted((r for r in row["runs"] if r["kind"] == kind and r["ms"]), key=lambda r: r["ms"])
            if timed:
                best = timed[0]
                line += f" | {kind} {best['ms'] * 1e3:7.1f} us ({row['bf16_ms'] / best['ms']:.3f}x, {best['config']})"
        print(line, flush=True)
        for r in sorted((r for r in row["runs"] if r["kind"] in ("new", "swapped", "two_ahead") and r["ms"]),
                        key=lambda r: r["ms"])[:4]:
            print(f"    {r['kind']} {r['ms'] * 1e3:7.1f} us {row['bf16_ms'] / r['ms']:.3f}x {r['config']}", flush=True)
        rows.append(row)
        (out_dir / ("small.json" if opts.small else "sweep.json")).write_text(json.dumps({"env": environment(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
