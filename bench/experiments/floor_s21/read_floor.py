"""For the GPU (written in session 21, not yet run): the fastest time a kernel that only reads a
small-M weight can take in our harness, the floor under issue #5's small-M ratios.

Small-M times do not scale with the weight's bytes. A straight line through session 21's times at
9216 and 18432 rows (K = 3072, call 5) crosses zero bytes at about 8 us for our GEMV (M = 1), 10 us
for the ring kernel (M = 2) and 13 us for cuBLAS (M = 1), against about 4.4 us for the
dequantization kernel (call 4, 3072 and 18432 rows). If every kernel in ``benchmark_ms`` (a CUDA-graph
replay after an L2 flush that leaves 256 MB of dirty lines) pays a fixed cost of that size, then 3x at
(1, 18432, 3072) (13.7 us against 41) sits next to the floor. This measures that floor for each
small-M weight, in the same harness, in one process:

- ``empty``: a Triton kernel that does nothing (one program): the launch and the harness alone;
- ``read``: a Triton kernel that reads the weight's codes and scales once, in 16-byte loads, and
  writes one word a program (so the loads are not dead): the floor for any W4A16 GEMM on it;
- ``copy``: ``torch``'s copy of the codes into another buffer (read + write);
- ``cublas``: ``F.linear`` at M = 1 on the bf16 weight, the issue's baseline.

Prediction: ``empty`` 2-4 us; ``read`` 6-8 us above ``empty`` at 18432 x 3072 (31.9 MB at 4-4.5 TB/s)
plus any cost of evicting dirty lines. If ``read`` at 18432 x 3072 is above 13.7 us, 3x is out of
reach in this harness whatever the kernel.

Session 22 (the first run, before this addition): empty 2.8 us; read 15.6 us at 18432 x 3072
(2.0 TB/s), 10.7-12.4 us at the others; cuBLAS / read 2.50-2.64x. So 3x is out of reach in this
harness. Added then: the same reads and cuBLAS through ``rotating_ms`` (no flush, copies cycled),
to see whether the flush's dirty lines make the fixed cost.

    PYTHONPATH=. python3 bench/experiments/floor_s21/read_floor.py [--json OUT]
"""

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from nvfp4_triton import quantize  # noqa: E402

WEIGHTS = [(18432, 3072), (9216, 3072), (12288, 3072), (3072, 12288)]
BLOCKS = (2048, 8192)  # int64 words a program


@triton.jit
def empty_kernel(out_ptr):
    """Nothing (``out_ptr`` is never written): the fixed cost of one launch in the harness."""
    pass


@triton.jit
def read_kernel(words_ptr, n_words, out_ptr, BLOCK: tl.constexpr):
    """XOR of BLOCK int64 words per program, written out so that the loads stay."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    words = tl.load(words_ptr + offs, mask=offs < n_words, other=0)
    tl.store(out_ptr + tl.program_id(0), tl.reduce(words, 0, _xor))


@triton.jit
def _xor(a, b):
    return a ^ b


def main() -> None:
    from nvfp4_triton.autotune import benchmark_ms, rotating_ms, rotation_copies
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sink = torch.empty(1, dtype=torch.int64, device="cuda")
    rows = [{"empty_us": 1e3 * benchmark_ms(lambda: empty_kernel[(1,)](sink))}]
    print(f"empty kernel: {rows[0]['empty_us']:.1f} us", flush=True)
    for n, k in WEIGHTS:
        torch.manual_seed(0)
        q = quantize(torch.randn(n, k, device="cuda", dtype=torch.bfloat16))
        # Codes and scales in one buffer, as one read of the weight's bytes.
        flat = torch.cat([q.packed.view(-1), q.scale_bits.view(-1)])
        flat = torch.cat([flat, flat.new_zeros(-flat.numel() % 8)]).view(torch.int64)
        dense = q.dequantize(torch.bfloat16)
        x = torch.randn(1, k, device="cuda", dtype=torch.bfloat16)
        copy = torch.empty_like(flat)
        row = {"n": n, "k": k, "bytes": flat.numel() * 8,
               "cublas_us": 1e3 * benchmark_ms(lambda: F.linear(x, dense)),
               "copy_us": 1e3 * benchmark_ms(lambda: copy.copy_(flat))}
        for block in BLOCKS:
            grid = (triton.cdiv(flat.numel(), block),)
            out = torch.empty(grid[0], dtype=torch.int64, device="cuda")
            row[f"read {block} us"] = 1e3 * benchmark_ms(lambda: read_kernel[grid](flat, flat.numel(), out, BLOCK=block))
        rows.append(row)
        read = min(row[f"read {b} us"] for b in BLOCKS)
        print(f"{n} x {k} ({row['bytes'] / 1e6:.1f} MB): read {read:.1f} us ({row['bytes'] / read / 1e3:.0f} GB/s), "
              f"copy {row['copy_us']:.1f} us, cuBLAS M = 1 {row['cublas_us']:.1f} us; "
              f"cuBLAS / read = {row['cublas_us'] / read:.2f}x", flush=True)
        # Session 22: the same reads with no flush, cycling through copies that together exceed L2
        # four times (``rotating_ms``): whether the flush's dirty lines are the fixed cost.
        sets = rotation_copies(row["bytes"], flat.device)
        flats = [flat] + [flat.clone() for _ in range(sets - 1)]
        denses = [dense] + [dense.clone() for _ in range(sets - 1)]
        block = min(BLOCKS, key=lambda b: row[f"read {b} us"])
        grid = (triton.cdiv(flat.numel(), block),)
        out = torch.empty(grid[0], dtype=torch.int64, device="cuda")
        row["sets"] = sets
        row["read_rotate_us"] = 1e3 * rotating_ms(
            [lambda f=f: read_kernel[grid](f, f.numel(), out, BLOCK=block) for f in flats])
        row["cublas_rotate_us"] = 1e3 * rotating_ms([lambda d=d: F.linear(x, d) for d in denses])
        print(f"    rotating {sets} copies, no flush: read {row['read_rotate_us']:.1f} us "
              f"({row['bytes'] / row['read_rotate_us'] / 1e3:.0f} GB/s), cuBLAS M = 1 {row['cublas_rotate_us']:.1f} us; "
              f"cuBLAS / read = {row['cublas_rotate_us'] / row['read_rotate_us']:.2f}x", flush=True)
        del flats, denses
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
