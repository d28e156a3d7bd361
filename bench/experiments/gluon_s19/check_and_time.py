"""Session 19, for the GPU: ``pipelined_gemm`` (v31: split K summed in the kernel; v32: ModelOpt's
codes as they are) checked against float64, then timed against cuBLAS BF16, the library and
``kperm_gemm`` (the form without the ring) at issue #5's small-M points.

First a check on one small weight (two trips, fewer than the ring's slots; M = 1, 3, 11, 16; K split
and not; prepacked and natural codes; block scales constant, cycling 1, 2, 4, 0.5, the quantizer's,
and the quantizer's with every fifth block's scale zero while its codes are not). Then, for each
small-M weight and M in 1, 2, 4, 8, 16: the relative L2 error of every config and split against
``x @ dequant(W)^T`` in float64, and GPU time by ``autotune.benchmark_ms`` (CUDA-graph replays, L2
flushed before each, medians) of ``F.linear`` on the dequantized weight, the library's
``w4a16_gemm`` (tuned now if new), ``kperm_gemm`` at session 19's best config (64 rows, 4 warps,
split 4), ``pipelined_gemm`` at 64 rows and 4 warps with 2, 3 and 4 stages and K split 1, 2, 3, 4,
6 and 8 ways, and v32 (natural codes) in the config that won. Call 8 of session 19 ran v30 (split
by atomic adds) with 4-6 stages. Each row is printed and written to the JSON as soon as it is done.

    PYTHONPATH=. python3 bench/experiments/gluon_s19/check_and_time.py [--json OUT]
"""

import argparse
import json
import re
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))
sys.path.insert(0, str(HERE.parent / "gluon_s18"))
sys.path.insert(0, str(HERE))

from nvfp4_triton import quantize  # noqa: E402
from nvfp4_triton.autotune import benchmark_ms  # noqa: E402
from nvfp4_triton.gemm import w4a16_gemm  # noqa: E402
from kperm_gemm import kperm_gemm, prepack_nibbles  # noqa: E402
from pipelined_gemm import CONFIGS, pipelined_gemm  # noqa: E402
from scale_patterns import scale_patterns  # noqa: E402

SPLITS = (1, 2, 3, 4, 6, 8)
WEIGHTS = [(18432, 3072), (9216, 3072), (12288, 3072), (3072, 12288)]
TIMED = [(64, 4, 2), (64, 4, 3), (64, 4, 4)]
"""64 rows and 4 warps won every point of call 8; fewer stages let more programs share an SM."""


def rel_err(y: torch.Tensor, ref: torch.Tensor) -> float:
    return float((y.double() - ref).norm() / ref.norm())


def check() -> None:
    """Errors on a [256, 512] weight: fewer trips (2) than ring slots, ragged M, split K, scale patterns."""
    torch.manual_seed(0)
    q = quantize(torch.randn(256, 512, device="cuda", dtype=torch.bfloat16))
    bias = torch.randn(256, device="cuda", dtype=torch.bfloat16)
    for label, w in scale_patterns(q, with_zeros=True).items():
        exact = w.dequantize(torch.float64)
        codes = {False: prepack_nibbles(w.packed), True: w.packed.view(torch.int32)}
        for m in (1, 3, 11, 16):
            x = torch.randn(m, 512, device="cuda", dtype=torch.bfloat16)
            ref = x.double() @ exact.T + bias.double()
            errs = [max(rel_err(pipelined_gemm(x, codes[natural], w.block_scale, w.global_scale, bias, bn, warps,
                                               split, stages, natural), ref)
                        for bn, warps, stages in CONFIGS for split in (1, 2)) for natural in (False, True)]
            print(f"check {label:15} M={m:2}: worst error over {len(CONFIGS)} configs x split 1, 2: "
                  f"prepacked {errs[0]:.1e}, natural {errs[1]:.1e}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=Path)
    out = parser.parse_args().json
    print(torch.cuda.get_device_name(), torch.__version__, flush=True)
    check()
    rows = []
    for n, k in WEIGHTS:
        torch.manual_seed(n + k)
        q = quantize(torch.randn(n, k, device="cuda", dtype=torch.bfloat16))
        words = prepack_nibbles(q.packed)
        dense, exact = q.dequantize(torch.bfloat16), q.dequantize(torch.float64)
        kernels = {"kperm bn64w4 split4": lambda x: kperm_gemm(x, words, q.block_scale, q.global_scale, None, 64, 4, 4)}
        for bn, warps, stages in TIMED:
            for split in SPLITS:
                kernels[f"pipelined bn{bn}w{warps}s{stages} split{split}"] = (
                    lambda x, c=(bn, warps, split, stages): pipelined_gemm(x, words, q.block_scale, q.global_scale,
                                                                           None, *c))
        for m in (1, 2, 4, 8, 16):
            x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
            ref = x.double() @ exact.T
            row = {"m": m, "n": n, "k": k, "cublas_us": 1e3 * benchmark_ms(lambda: F.linear(x, dense)),
                   "library_us": 1e3 * benchmark_ms(lambda: w4a16_gemm(x, q.packed, q.block_scale, q.global_scale,
                                                                       None))}
            for name, kernel in kernels.items():
                row[name] = {"us": 1e3 * benchmark_ms(lambda: kernel(x)), "rel_err": rel_err(kernel(x), ref)}
            won = min((v["us"], key) for key, v in row.items() if key.startswith("pipelined"))[1]
            bn, warps, stages, split = (int(v) for v in re.findall(r"\d+", won.split(" ", 1)[1]))
            natural = q.packed.view(torch.int32)
            row[f"natural {won}"] = {
                "us": 1e3 * benchmark_ms(lambda: pipelined_gemm(x, natural, q.block_scale, q.global_scale, None, bn,
                                                                warps, split, stages, True)),
                "rel_err": rel_err(pipelined_gemm(x, natural, q.block_scale, q.global_scale, None, bn, warps, split,
                                                  stages, True), ref)}
            rows.append(row)
            timed = [(v["us"], key) for key, v in row.items() if isinstance(v, dict)]
            best = min(t for t in timed if t[1].startswith("pipelined"))
            worst_err = max(v["rel_err"] for v in row.values() if isinstance(v, dict))
            gbps = (n * k * 0.5625) / (best[0] * 1e-6) / 1e9
            print(f"({m:2}, {n:5}, {k:5}) cuBLAS {row['cublas_us']:5.1f} us, library {row['library_us']:5.1f} "
                  f"({row['cublas_us'] / row['library_us']:.2f}x), kperm {row['kperm bn64w4 split4']['us']:5.1f}, "
                  f"best {best[0]:5.1f} {best[1]} ({row['cublas_us'] / best[0]:.2f}x, {gbps:4.0f} GB/s), "
                  f"natural {row['natural ' + won]['us']:5.1f}; "
                  f"worst error {worst_err:.1e}", flush=True)
            if out:
                out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
