"""Prepared for the next GPU session: the one-sweep FP8 activation quantizer against the library's.

For each FLUX activation shape the fp8 mode quantizes (M rows of K), prints both kernels' time
(L2 flushed, CUDA-graph replays), their GB/s (2 bytes read + 1 written + the scale, per element)
against a measured copy, and checks that they agree bit for bit. About a minute.

    PYTHONPATH=. python3 bench/experiments/fp8_quant_s5/time_quant.py
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import torch  # noqa: E402
import triton  # noqa: E402

from nvfp4_triton.act_quant import quantize_rows_fp8  # noqa: E402
from nvfp4_triton.autotune import benchmark_ms  # noqa: E402
from one_sweep import fp8_row_quant_one_sweep_kernel  # noqa: E402

# (M, K, calls per FLUX step at 1024x1024) of the activations activation="fp8" quantizes
SHAPES = [(4096, 3072, 5 * 19), (512, 3072, 5 * 19), (4096, 12288, 19), (512, 12288, 19), (4608, 3072, 4 * 38),
          (4608, 15360, 38)]


def main():
    dev = torch.device("cuda")
    print(torch.cuda.get_device_name(), torch.__version__, triton.__version__, flush=True)
    big = torch.empty(2**28, dtype=torch.uint8, device=dev)
    copy_gbps = 2 * big.numel() / benchmark_ms(lambda: big.clone()) / 1e6
    print(f"copy {copy_gbps:.0f} GB/s (read + write)", flush=True)
    rows, total = [], {"library": 0.0, "one sweep": 0.0}
    for m, k, calls in SHAPES:
        x = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
        ref_q, ref_s = quantize_rows_fp8(x)
        q = torch.empty(m, k, dtype=torch.uint8, device=dev)
        s = torch.empty(m, 1, dtype=torch.float32, device=dev)
        block_k = 1 << (k - 1).bit_length()
        gbytes = (3 * m * k + 4 * m) / 1e9
        row = dict(M=m, K=k, calls=calls, library_us=benchmark_ms(lambda: quantize_rows_fp8(x)) * 1e3)
        line = f"M={m:5} K={k:6} library {row['library_us']:6.1f} us {gbytes / row['library_us'] * 1e6:5.0f} GB/s"
        for warps in (4, 8, 16):
            def run(warps=warps):
                fp8_row_quant_one_sweep_kernel[(m,)](x, q, s, k, x.stride(0), BIT_MATH=False, BLOCK_K=block_k,
                                                     num_warps=warps)
            run()
            same = torch.equal(q, ref_q.view(torch.uint8)) and torch.equal(s, ref_s)
            us = benchmark_ms(run) * 1e3
            row[f"one_sweep_w{warps}_us"] = us
            line += f" | w{warps} {us:6.1f} us {gbytes / us * 1e6:5.0f} GB/s{'' if same else ' DIFFERS'}"
        best = min(v for key, v in row.items() if key.startswith("one_sweep"))
        total["library"] += calls * row["library_us"] / 1e3
        total["one sweep"] += calls * best / 1e3
        print(line, flush=True)
        rows.append(row)
    print(f"per FLUX step: library {total['library']:.2f} ms, one sweep (best warps per shape) {total['one sweep']:.2f} ms")
    json.dump(dict(copy_gbps=copy_gbps, rows=rows, per_step_ms=total),
              open(os.path.join(os.environ.get("OUT", "/tmp"), "fp8_quant.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
