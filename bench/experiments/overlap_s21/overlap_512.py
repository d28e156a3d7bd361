"""For the GPU (session 21): can two-pass at M = 512 hide its dequantization under cuBLAS?

At M = 512 two-pass takes 1.35-1.5x cuBLAS's time (0.667-0.739x, session 19): the dequantization
writes the whole bf16 weight before the GEMM starts. cuBLAS at (512, 3072, K) has few output tiles
(96 at 128 x 128 against 132 SMs), so it may leave SMs to a kernel on another stream.

Measured per shape, in one process, as CUDA-graph replays after an L2 flush (``benchmark_ms``):
- ``cublas``: F.linear on the dense bf16 weight; ``dequant``: the dequantization alone;
  ``two_pass``: both, one after the other (the library's strategy);
- ``concurrent``: cuBLAS on one stream while another dequantizes a second weight of the same size.
  Near max(cublas, dequant) means the two share the GPU; near their sum means they do not.
- ``kC`` (C = 2, 3, 4): K in C chunks, each dequantized into its own slice of the scratch on a side
  stream while the main stream multiplies the previous chunk (``y += x_c W_c^T``, bf16 accumulation);
  ``kC-serial``: the same launches on one stream (what the L2 alone gives: a chunk's bf16 weight is
  small enough to stay in L2 for its GEMM); ``kC-fp32``: overlapped, partial sums kept in fp32.
Errors: relative L2 against float64 (bf16 accumulation of C partial sums rounds C times).

Prediction (written before the run): concurrent at 1.1-1.3x of cublas at M = 512 (the dequant's
memory traffic slows cuBLAS's loads); k4 at 0.80-0.85x of cuBLAS at M = 512 (against ~0.7 for
two_pass); at M = 4096 no gain (cuBLAS fills the SMs).

    PYTHONPATH=. python3 bench/experiments/overlap_s21/overlap_512.py [--json OUT]
"""

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from nvfp4_triton import quantize  # noqa: E402
from nvfp4_triton.autotune import benchmark_ms  # noqa: E402
from nvfp4_triton.gemm import dequantize_into  # noqa: E402
from nvfp4_triton.tiling import TwoPassConfig  # noqa: E402

SHAPES = [(512, 3072, 3072), (512, 12288, 3072), (512, 3072, 12288), (4096, 3072, 3072), (4096, 12288, 3072)]
CHUNKS = (2, 3, 4)
DEQUANT = TwoPassConfig(16, 512, 4)


def chunked(x, q, chunks: int, side: torch.cuda.Stream | None, fp32: bool = False):
    """``x @ W^T`` with K in ``chunks`` pieces; dequantization on ``side`` if given, else in line; the
    partial sums in fp32 (cuBLAS's ``out_dtype``, one rounding to bf16 at the end) with ``fp32``."""
    n, k = q.out_features, q.in_features
    kc = k // chunks
    parts = [(q.packed[:, c * kc // 2:(c + 1) * kc // 2].contiguous(),
              q.scale_bits[:, c * kc // 16:(c + 1) * kc // 16].contiguous()) for c in range(chunks)]
    dense = torch.empty(chunks, n, kc, device=x.device, dtype=torch.bfloat16)
    y = torch.empty(x.shape[0], n, device=x.device, dtype=torch.float32 if fp32 else torch.bfloat16)
    events = [torch.cuda.Event() for _ in range(chunks)] if side is not None else []

    def dequant(c: int) -> None:
        dequantize_into(dense[c], parts[c][0], parts[c][1], q.global_scale, DEQUANT)

    def call() -> torch.Tensor:
        main = torch.cuda.current_stream() if side is not None else None
        if side is not None:
            side.wait_stream(main)
            with torch.cuda.stream(side):
                for c in range(chunks):
                    dequant(c)
                    events[c].record(side)
        for c in range(chunks):
            if side is None:
                dequant(c)
            else:
                main.wait_event(events[c])
            xc, wc = x[:, c * kc:(c + 1) * kc], dense[c].t()
            if fp32:
                if c == 0:
                    torch.mm(xc, wc, out_dtype=torch.float32, out=y)
                else:
                    torch.addmm(y, xc, wc, out_dtype=torch.float32, out=y)
            elif c == 0:
                torch.mm(xc, wc, out=y)
            else:
                y.addmm_(xc, wc)
        if side is not None:
            main.wait_stream(side)
        return y.to(torch.bfloat16) if fp32 else y
    return call


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    side = torch.cuda.Stream()
    rows = []
    for m, n, k in SHAPES:
        torch.manual_seed(0)
        q = quantize(torch.randn(n, k, device="cuda", dtype=torch.bfloat16))
        other = quantize(torch.randn(n, k, device="cuda", dtype=torch.bfloat16))
        x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        ref = x.double() @ q.dequantize(torch.float64).T
        dense = q.dequantize(torch.bfloat16)
        scratch = torch.empty(n, k, device="cuda", dtype=torch.bfloat16)
        scratch2 = torch.empty(n, k, device="cuda", dtype=torch.bfloat16)

        def deq():
            dequantize_into(scratch, q.packed, q.scale_bits, q.global_scale, DEQUANT)

        def two_pass():
            deq()
            return F.linear(x, scratch)

        def concurrent():
            main_stream = torch.cuda.current_stream()
            side.wait_stream(main_stream)
            with torch.cuda.stream(side):
                dequantize_into(scratch2, other.packed, other.scale_bits, other.global_scale, DEQUANT)
            y = F.linear(x, dense)
            main_stream.wait_stream(side)
            return y

        calls = {"cublas": lambda: F.linear(x, dense), "dequant": deq, "two_pass": two_pass, "concurrent": concurrent}
        for c in CHUNKS:
            calls[f"k{c}"] = chunked(x, q, c, side)
            calls[f"k{c}-serial"] = chunked(x, q, c, None)
            calls[f"k{c}-fp32"] = chunked(x, q, c, side, fp32=True)
        row = {"m": m, "n": n, "k": k}
        for name, call in calls.items():
            try:
                out = call()
            except RuntimeError as err:  # out_dtype is new in torch
                print(f"{name}: {err}", flush=True)
                continue
            if name not in ("dequant", "concurrent"):
                torch.cuda.synchronize()
                row[f"{name} err"] = float((out.double() - ref).norm() / ref.norm())
            row[f"{name} us"] = 1e3 * benchmark_ms(call)
        rows.append(row)
        base = row["cublas us"]
        print(f"({m}, {n}, {k}) cuBLAS {base:.1f} us, dequant {row['dequant us']:.1f}, concurrent "
              f"{row['concurrent us']:.1f}; ratios: "
              + ", ".join(f"{name} {base / row[name + ' us']:.3f}" for name in calls
                          if name not in ("cublas", "dequant", "concurrent") and name + " us" in row)
              + "; errors " + ", ".join(f"{name} {row[name + ' err']:.2e}" for name in calls if name + " err" in row),
              flush=True)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
