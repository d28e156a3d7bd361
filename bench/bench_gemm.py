"""Time nvfp4_linear's strategies and modes against cuBLAS BF16 (F.linear on the dequantized weight).

    python bench/bench_gemm.py [--shapes flux|small|all] [--modes two_pass w4a16 fp8 ...] [--parts]
                               [--cold flush|rotate] [--json PATH]

Columns: forced two-pass, tuned W4A16 ("ours", with the strategy the tuner chose, its rate in the
regime's unit (weight GB/s at M <= 16, TFLOP/s above) and that rate's % of the measured ceiling),
activation="fp8" (tuned), FP8 two-pass with full-precision accumulation, FP8-resident weights, and
W4A4 emulation; each with its error against exact NVFP4 x BF16.

Configs are autotuned on first use (into the usual cache); NVFP4_TRITON_AUTOTUNE=0 times the
default config instead.

Both sides get the same bf16 activation and bias, and are timed as the tuner times candidates
(``nvfp4_triton.autotune.benchmark_ms``): each call is captured in a CUDA graph and the replay
timed by ``triton.testing.do_bench`` (median), which clears the L2 cache before every replay, so
weights are read from HBM as in a real forward and host overhead is left out: this is GPU time.
The clearing writes 256 MB, so each call starts with L2 full of dirty lines. ``--cold rotate``
times instead a CUDA graph of calls on copies of the weight that together exceed L2 four times,
with no clearing (``autotune.rotating_ms``): a chain of distinct layers. On an H200 (session 22)
rotation took 4-10 us off every small-M call, cuBLAS's and ours alike (small-M geometric mean of
the ratio 1.719 flushed, 1.681 rotated), and reading an 18432 x 3072 NVFP4 weight alone went from
15.7 to 9.5 us.
The W4A16 column is also timed eagerly (``w4a16_eager``), host overhead included. Ratios above 1
mean NVFP4 is faster. Each shape is also
checked against the float64 product with the dequantized weight before it is timed.

``--parts`` also times the FP8 modes' pieces alone: the weight's E4M3 dequantization (per call
in ``activation="fp8"`` only), the per-token activation quantizer, and cuBLAS's FP8 GEMM on
inputs already quantized; and the ratios the GEMM alone would reach, the ceiling of both modes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import triton
from triton.testing import do_bench

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flux_shapes import SHAPE_SETS  # noqa: E402

from nvfp4_triton import __version__, fp8, gemm, nvfp4_linear, quantize  # noqa: E402
from nvfp4_triton.act_quant import quantize_rows_fp8  # noqa: E402
from nvfp4_triton.autotune import autotune_enabled, benchmark_ms, rotating_ms, rotation_copies  # noqa: E402
from nvfp4_triton.module import FP8Linear, NVFP4Linear  # noqa: E402
from nvfp4_triton.scratch import scratch_bytes  # noqa: E402
from nvfp4_triton.tiling import Fp8Config, TwoPassConfig, describe  # noqa: E402
from nvfp4_triton.weight import NVFP4Weight  # noqa: E402


def environment() -> dict:
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        driver = "unknown"
    props = torch.cuda.get_device_properties(0)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "gpu": props.name,
        "sms": props.multi_processor_count,
        "capability": f"{props.major}.{props.minor}",
        "driver": driver,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": triton.__version__,
        "nvfp4_triton": __version__,
        "python": platform.python_version(),
    }


def warm_up_gpu(seconds: float = 2.0) -> None:
    """Keep the tensor cores busy for a while so that clocks have left idle before the first row."""
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(10):
            a @ a
        torch.cuda.synchronize()


MODES = ("two_pass", "w4a16", "fp8", "fp8_exact_accum", "resident", "w4a4")
"""Columns besides cuBLAS BF16: forced two-pass, tuned W4A16 ("ours"), activation="fp8" (tuned),
FP8 two-pass with full-precision accumulation, FP8-resident weights, W4A4 emulation."""


def measure_ceilings() -> dict:
    """The two roofline numbers of this card, measured: dense BF16 TFLOP/s and device-to-device copy GB/s."""
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    mm_ms = do_bench(lambda: a @ a, warmup=25, rep=200, return_mode="median")
    src = torch.empty(2**30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    copy_ms = do_bench(lambda: dst.copy_(src), warmup=25, rep=200, return_mode="median")
    return {"bf16_tflops": 2 * 8192**3 / mm_ms * 1e-9, "copy_gbps": 2 * 2**30 / copy_ms * 1e-6}


def _calls(x: torch.Tensor, q, bias: torch.Tensor, modes: tuple[str, ...]) -> dict:
    """One call per column on weight ``q``: "bf16" (cuBLAS on its dequantized weight) and each mode."""
    w_bf16 = q.dequantize(torch.bfloat16)
    calls = {"bf16": lambda: F.linear(x, w_bf16, bias)}
    if {"fp8", "fp8_exact_accum"} & set(modes):
        scales = fp8.weight_scales(q)
    if "resident" in modes:
        resident = FP8Linear.from_nvfp4(NVFP4Linear.from_weight(q, bias))
    input_scale = (x.float().abs().amax() / 2688).reshape(())
    by_mode = {
        "two_pass": lambda: gemm.w4a16_gemm(x, q.packed, q.block_scale, q.global_scale, bias, config=TwoPassConfig()),
        "w4a16": lambda: nvfp4_linear(x, q, bias),
        "fp8": lambda: nvfp4_linear(x, q, bias, activation="fp8", fp8_scales=scales),
        "fp8_exact_accum": lambda: gemm.w4a8_gemm(x, q.packed, q.block_scale, q.global_scale, *scales, bias,
                                                  config=Fp8Config(fast_accum=False)),
        "resident": lambda: resident(x),
        "w4a4": lambda: nvfp4_linear(x, q, bias, activation="nvfp4", input_scale=input_scale),
    }
    calls.update({mode: by_mode[mode] for mode in modes})
    return calls


def bench_shape(label: str, m: int, n: int, k: int, modes: tuple[str, ...], ceilings: dict, parts: bool,
                cold: str = "flush") -> dict:
    gen = torch.Generator(device="cuda").manual_seed(m * 7 + n * 3 + k)
    w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16, generator=gen)
    q = quantize(w)
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16, generator=gen)
    bias = torch.randn(n, device="cuda", dtype=torch.bfloat16, generator=gen)
    copies = [q]
    if cold == "rotate":
        copies += [NVFP4Weight(q.packed.clone(), q.block_scale.clone(), q.global_scale.clone(), q.shape)
                   for _ in range(rotation_copies(q.nbytes, q.device) - 1)]
    sets = [_calls(x, qi, bias, modes) for qi in copies]
    calls = sets[0]

    def gpu_ms(column: str) -> float:
        if cold == "rotate":
            return rotating_ms([s[column] for s in sets])
        return benchmark_ms(calls[column])

    ref = F.linear(x.double(), q.dequantize(torch.float64), bias.double())
    row = {"label": label, "M": m, "N": n, "K": k, "weight_sets": len(sets)}
    row["bf16_ms"] = gpu_ms("bf16")
    flops = 2.0 * m * n * k
    for mode in modes:
        try:
            out = calls[mode]()
        except RuntimeError as err:  # a forced config cuBLAS cannot run
            print(f"  {label} {mode}: {str(err).splitlines()[0][:100]}", flush=True)
            row.update({f"{mode}_err": math.nan, f"{mode}_ms": math.nan, f"{mode}_ratio": math.nan})
            continue
        row[f"{mode}_err"] = float((out.double() - ref).norm() / ref.norm())
        t = gpu_ms(mode)
        row[f"{mode}_ms"] = t
        row[f"{mode}_ratio"] = row["bf16_ms"] / t
        if mode == "w4a16":
            row["w4a16_eager_ms"] = do_bench(calls[mode], warmup=25, rep=100, return_mode="median")
    del ref
    if parts:
        row["fp8_parts_ms"] = time_fp8_parts(x, q, bias, fp8.weight_scales(q))
    key = gemm.tuning_key(x.device, x.dtype, m, n, k, True)
    suffix = "" if autotune_enabled() else " (default config)"
    if "w4a16" in modes:
        row["strategy"] = describe(gemm.tuner.lookup(key)) + suffix
        t = row["w4a16_ms"]
        row["tflops"] = flops / t * 1e-9
        row["weight_gbps"] = q.nbytes / t * 1e-6
        # % of the regime's ceiling: tensor-core bound at large M, weight streaming at small M.
        row["pct_ceiling"] = 100 * (row["weight_gbps"] / ceilings["copy_gbps"] if m <= 16
                                    else row["tflops"] / ceilings["bf16_tflops"])
    if "fp8" in modes:
        row["fp8_strategy"] = describe(gemm.fp8_tuner.lookup(key)) + suffix
    return row


def time_fp8_parts(x: torch.Tensor, q, bias: torch.Tensor, scales: tuple[torch.Tensor, torch.Tensor]) -> dict:
    """GPU ms of each piece of the FP8 paths alone, with the library's default dequantize tile."""
    multipliers, column_scale = scales
    w8 = fp8.dequantize_to_fp8(q.packed, q.block_scale, multipliers)
    xq, row_scale = quantize_rows_fp8(x)
    fast = x.shape[0] >= gemm.FAST_ACCUM_MIN_M
    return {
        "dequant": benchmark_ms(lambda: gemm.dequantize_into(w8, q.packed, q.scale_bits, multipliers, Fp8Config())),
        "quant": benchmark_ms(lambda: quantize_rows_fp8(x)),
        "mm": benchmark_ms(lambda: torch._scaled_mm(xq, w8.t(), scale_a=row_scale, scale_b=column_scale, bias=bias,
                                                    out_dtype=x.dtype, use_fast_accum=fast)),
    }


def _print_parts(rows: list[dict]) -> None:
    print("FP8 pieces alone (GPU ms): dequant = weight to E4M3 (activation='fp8' only), quant = x per token, "
          "mm = cuBLAS FP8 GEMM; 'mm only' = bf16 ms / mm ms, the ceiling of both FP8 modes")
    print(f"{'shape':34} {'M':>5} {'N':>6} {'K':>6} {'bf16':>8} {'dequant':>8} {'quant':>8} {'mm':>8} {'mm only':>8}")
    for r in rows:
        p = r["fp8_parts_ms"]
        print(f"{r['label']:34} {r['M']:5} {r['N']:6} {r['K']:6} {r['bf16_ms']:8.4f} {p['dequant']:8.4f} "
              f"{p['quant']:8.4f} {p['mm']:8.4f} {r['bf16_ms'] / p['mm']:8.3f}", flush=True)


def _median(values: list[float]) -> float:
    kept = sorted(v for v in values if not math.isnan(v))
    return kept[len(kept) // 2] if kept else math.nan


def _print_row(r: dict, modes: tuple[str, ...]) -> None:
    cols = " ".join(f"{r[f'{mode}_ms']:8.4f} {r[f'{mode}_ratio']:6.3f}" for mode in modes)
    extra = ""
    if "strategy" in r:  # W4A16's rate in its regime's unit: weight GB/s at small M, TFLOP/s above
        rate = f"{r['weight_gbps']:6.0f} GB/s" if r["M"] <= 16 else f"{r['tflops']:6.0f} TF/s"
        extra = f" {r['w4a16_eager_ms']:8.4f} {rate} {r['pct_ceiling']:5.1f}%  {r['strategy']}"
    print(f"{r['label']:34} {r['M']:5} {r['N']:6} {r['K']:6} {r['bf16_ms']:8.4f} {cols}{extra}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", choices=sorted(SHAPE_SETS), default="flux")
    parser.add_argument("--json", type=Path, help="write environment and rows to this JSON file")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="columns to time")
    parser.add_argument("--parts", action="store_true", help="also time the FP8 modes' pieces alone")
    parser.add_argument("--cold", choices=("flush", "rotate"), default="flush",
                        help="how weights are kept out of L2: flush it before each call (the tuner's harness), "
                             "or cycle through copies of the weight that together exceed it (see the docstring)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.error("needs a CUDA GPU: timings under Triton's interpreter mean nothing")

    modes = tuple(args.modes)
    env = environment()
    print(" ".join(f"{k}={v}" for k, v in env.items()), flush=True)
    warm_up_gpu()
    ceilings = measure_ceilings()
    print(f"weights kept out of L2 by: {args.cold}", flush=True)
    print(f"ceilings: dense BF16 {ceilings['bf16_tflops']:.0f} TFLOP/s, copy {ceilings['copy_gbps']:.0f} GB/s", flush=True)
    rows = []
    mode_cols = " ".join(f"{mode + ' ms':>8} {'ratio':>6}" for mode in modes)
    print(f"{'shape':34} {'M':>5} {'N':>6} {'K':>6} {'bf16 ms':>8} {mode_cols} {'eager ms':>8} {'W4A16 rate':>11} "
          "% ceil  W4A16 strategy")
    for label, m, n, k, _ in SHAPE_SETS[args.shapes]:
        r = bench_shape(label, m, n, k, modes, ceilings, args.parts, args.cold)
        rows.append(r)
        _print_row(r, modes)
    print("relative L2 error vs exact NVFP4 x BF16 (median over shapes): " + ", ".join(
        f"{mode} {_median([r[f'{mode}_err'] for r in rows]):.2e}" for mode in modes))
    for regime, keep in (("M >= 4096", lambda r: r["M"] >= 4096), ("M = 512", lambda r: r["M"] == 512),
                         ("M <= 16", lambda r: r["M"] <= 16)):
        sel = [r for r in rows if keep(r)]
        if sel:
            print(f"geometric mean ratio, {regime}: " + ", ".join(
                f"{mode} {float(torch.tensor([r[f'{mode}_ratio'] for r in sel]).log().nanmean().exp()):.3f}"
                for mode in modes))
    if args.parts:
        _print_parts(rows)
    print(f"two-pass scratch held: {scratch_bytes() / 2**20:.0f} MiB")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"environment": env, "ceilings": ceilings, "shapes": args.shapes,
                                         "cold": args.cold, "modes": list(modes), "rows": rows}, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
