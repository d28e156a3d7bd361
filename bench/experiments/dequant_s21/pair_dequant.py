"""For the GPU (session 21, v37): the two-pass dequantization with the pair decoder.

The library's ``nvfp4_dequant_kernel`` decodes one nibble at a time (``unpack_block``: fp16 bit
placement, two fp16 multiplies, then fp32): 824 SASS instructions for a 16 x 512 tile with 4 warps,
12.9 an element (sm_90, compiled on the CPU). At (3072, 3072) it moves 24 MB in 10.8 us, 53% of
the copy bandwidth; at 12288 x 3072, 96 MB in 30.7 us, 74% (session 21, call 2). Here the codes
are read as one int64 per scale block and decoded two at a time (``paired_tile``, as the fused
kernel does: exact ``e2m1 * e4m3 * 2**-7`` in bf16), then widened, multiplied by the global scale
in fp32 and rounded once: the same value as the library's, bit for bit.

Prediction (before the run): fewer than half the instructions an element; 10.8 -> ~7.5 us at
(3072, 3072) and 30.7 -> ~26 us at the 37.7M-element weights (85% of copy), so two-pass at M = 512
from 0.67-0.75x to 0.71-0.85x of cuBLAS.

    PYTHONPATH=. python3 bench/experiments/dequant_s21/pair_dequant.py [--json OUT]
"""

import argparse
import json
import sys
from pathlib import Path

import torch
import triton
import triton.language as tl

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from nvfp4_triton import quantize  # noqa: E402
from nvfp4_triton.gemm import _word_view, dequantize_into  # noqa: E402
from nvfp4_triton.kernels._nvfp4_decode import PAIRED_TILE_EXPONENT, paired_tile  # noqa: E402
from nvfp4_triton.tiling import TwoPassConfig  # noqa: E402

WEIGHTS = [(3072, 3072), (12288, 3072), (3072, 12288), (3072, 15360), (18432, 3072)]
TILES = [(16, 512, 4), (32, 256, 4), (8, 1024, 4), (32, 512, 8), (64, 256, 8), (16, 256, 4)]


@triton.jit
def pair_dequant_kernel(words_ptr, scale_ptr, factor_ptr, out_ptr, N, K,
                        PACKED_MUL: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """``out[n, k] = e2m1 * e4m3 * factor`` for one [BLOCK_N, BLOCK_K] tile; codes as int64 words, 16 a word."""
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_b = tl.program_id(1) * (BLOCK_K // 16) + tl.arange(0, BLOCK_K // 16)
    offs_k = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    rows = offs_n.to(tl.int64)[:, None]
    mask = (offs_n[:, None] < N) & (offs_b[None, :] < K // 16)
    words = tl.load(words_ptr + rows * (K // 16) + offs_b[None, :], mask=mask, other=0)
    raw_scale = tl.load(scale_ptr + rows * (K // 16) + offs_b[None, :], mask=mask, other=0)
    w = paired_tile(words, raw_scale, tl.bfloat16, PACKED_MUL, False, BLOCK_N, BLOCK_K).to(tl.float32)
    w = w * (tl.load(factor_ptr) * 2.0 ** -PAIRED_TILE_EXPONENT)
    tl.store(out_ptr + rows * K + offs_k[None, :], w.to(out_ptr.dtype.element_ty),
             mask=(offs_n[:, None] < N) & (offs_k[None, :] < K))


def pair_dequant(out, q, tile, packed_mul=True):
    bn, bk, warps = tile
    n, k = out.shape
    pair_dequant_kernel[(triton.cdiv(n, bn), triton.cdiv(k, bk))](
        _word_view(q.packed, torch.int64), q.scale_bits, q.global_scale, out, n, k,
        PACKED_MUL=packed_mul, BLOCK_N=bn, BLOCK_K=bk, num_warps=warps)


def main() -> None:
    from nvfp4_triton.autotune import benchmark_ms
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    for n, k in WEIGHTS:
        torch.manual_seed(0)
        q = quantize(torch.randn(n, k, device="cuda", dtype=torch.bfloat16))
        ref = torch.empty(n, k, device="cuda", dtype=torch.bfloat16)
        out = torch.empty_like(ref)
        dequantize_into(ref, q.packed, q.scale_bits, q.global_scale, TwoPassConfig(16, 512, 4))
        row = {"n": n, "k": k, "bytes": n * k * 2 + n * k // 2 + n * k // 16}
        for tile in TILES:
            name = "x".join(map(str, tile[:2])) + f" w{tile[2]}"
            row[f"library {name} us"] = 1e3 * benchmark_ms(
                lambda: dequantize_into(ref, q.packed, q.scale_bits, q.global_scale, TwoPassConfig(*tile)))
            out.fill_(float("nan"))
            pair_dequant(out, q, tile)
            row[f"pairs {name} equal"] = bool(torch.equal(out.view(torch.int16), ref.view(torch.int16)))
            row[f"pairs {name} us"] = 1e3 * benchmark_ms(lambda: pair_dequant(out, q, tile))
        rows.append(row)
        best = {v: min((row[f"{v} {t} us"], t) for t in ("x".join(map(str, c[:2])) + f" w{c[2]}" for c in TILES))
                for v in ("library", "pairs")}
        print(f"({n}, {k}): " + "; ".join(f"{v} best {us:.1f} us ({t}, {row['bytes'] / us / 1e3:.0f} GB/s)"
                                          for v, (us, t) in best.items())
              + f"; all equal: {all(v for key, v in row.items() if key.endswith('equal'))}", flush=True)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
