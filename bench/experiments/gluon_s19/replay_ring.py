"""Session 19, CPU: replay the ring kernel's arithmetic and data movement in torch, to check them
before any GPU run.

``pipelined_gemm`` with ``natural=True`` (v32; the library's ``kernels/_w4a16_ring.py`` on the
``ring-strategy`` branch is the same code) is replayed trip by trip and half by half: the int32
words each thread reads, ``pair_bits``'s bit arithmetic, the E4M3 pair conversion with its zero
mask (``cvt.rn.f16x2.e4m3x2`` as torch's exact E4M3 -> fp16 cast), the scale selection by word, the
bf16 products, then the kernel's own join / permute / reshape index lists into the MMA's A and B
tiles, multiplied in float64. The result must equal ``x @ dequant(W)^T`` to float64 rounding: the
products are exact in bf16, so only the order of the sums differs. The weight has zero block
scales with nonzero codes in some blocks, as ``check_and_time.py``'s check has.

What it cannot check: that the PTX instructions do what their documentation says, the layouts'
register assignments (the GPU run checks both), and cp.async/barrier ordering.

    python bench/experiments/gluon_s19/replay_ring.py
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from nvfp4_triton import NVFP4Weight, quantize  # noqa: E402


def pair_bits(word: torch.Tensor, i: int) -> torch.Tensor:
    """As the kernel's: nibbles i and i + 4 of uint32 words (int64 here) -> bf16x2 patterns worth e2m1 * 2**-126."""
    magnitude_mask = (0x7 << 6) * 0x10001
    if 4 * i >= 6:
        magnitude = (word >> (4 * i - 6)) & magnitude_mask
    else:
        magnitude = (word << (6 - 4 * i)) & magnitude_mask
    return (((word << (12 - 4 * i)) & 0x80008000) | magnitude) & 0xFFFFFFFF


def e4m3_pair_to_bf16(two: torch.Tensor) -> torch.Tensor:
    """As the kernel's inline PTX: two E4M3 bytes (low 16 bits) -> bf16x2 patterns worth e4m3 * 2**119, zero as zero."""
    bytes_ = torch.stack((two & 0xFF, (two >> 8) & 0xFF), -1).to(torch.uint8)
    f16 = bytes_.view(torch.float8_e4m3fn).to(torch.float16).view(torch.int16).to(torch.int64) & 0xFFFF
    f16 = f16[..., 0] | (f16[..., 1] << 16)
    nonzero = ((f16 & 0xFFFF) != 0).to(torch.int64) * 0xFFFF | ((f16 >> 16) != 0).to(torch.int64) * 0xFFFF0000
    return ((f16 >> 3) & 0x0FFF0FFF) + (0x73807380 & nonzero)


def bf16_value(pattern: torch.Tensor) -> torch.Tensor:
    """16-bit bf16 patterns (int64) -> float64 values."""
    return (pattern.to(torch.int32) << 16).view(torch.float32).to(torch.float64)


def scaled(pairs: torch.Tensor, scale2: torch.Tensor) -> torch.Tensor:
    """fma.rn.bf16x2(pairs, scale2, -0.0): the products, exact in bf16, as bf16x2 patterns."""
    out = []
    for shift in (0, 16):
        product = bf16_value((pairs >> shift) & 0xFFFF) * bf16_value((scale2 >> shift) & 0xFFFF)
        bits = product.to(torch.float32).view(torch.int32).to(torch.int64)
        assert bool((bits & 0xFFFF == 0).all()), "a product is not exact in bf16"
        out.append(((bits >> 16) & 0xFFFF) << shift)
    return out[0] | out[1]


def replay(x: torch.Tensor, weight: NVFP4Weight) -> torch.Tensor:
    """The kernel's y for x ``[M, K]`` (M <= 16), in float64, from its own steps."""
    m, k = x.shape
    n = weight.shape[0]
    words_all = weight.packed.view(torch.int32).to(torch.int64) & 0xFFFFFFFF  # [N, K/8]
    scale_words = weight.block_scale.view(torch.uint8).view(torch.int32).to(torch.int64) & 0xFFFFFFFF  # [N, K/64]
    acc = torch.zeros(n, m, dtype=torch.float64)
    for trip in range(k // 256):
        t = torch.arange(4)
        scale_word = scale_words[:, trip * 4 + t]  # [N, 4 (t)]: blocks 4t .. 4t + 3 of the trip
        for h in range(2):
            w_index = trip * 32 + 8 * t[:, None] + 4 * h + torch.arange(4)[None, :]  # [t, w]
            words = words_all[:, w_index]  # [N, 4 (t), 4 (w)]
            two = e4m3_pair_to_bf16((scale_word >> (16 * h)) & 0xFFFF)  # [N, 4]
            first = ((two & 0xFFFF) | (two << 16)) & 0xFFFFFFFF
            second = ((two >> 16) | (two & 0xFFFF0000)) & 0xFFFFFFFF
            scale2 = torch.where(torch.arange(4)[None, None, :] < 2, first[:, :, None], second[:, :, None])
            p = [scaled(pair_bits(words, i), scale2) for i in range(4)]
            pairs = torch.stack((torch.stack((p[0], p[1]), -1), torch.stack((p[2], p[3]), -1)), -1)  # [n, t, w, b, a]
            low, high = bf16_value(pairs & 0xFFFF), bf16_value(pairs >> 16)
            a_tile = torch.stack((low, high), -1).permute(0, 2, 4, 3, 1, 5).reshape(n, 128)
            cols = trip * 256 + 64 * t[:, None] + 32 * h + torch.arange(32)[None, :]  # [t, j]
            x_half = x.to(torch.float64)[:, cols].reshape(m, 128)  # [m, 32t + j]
            b_tile = x_half.reshape(m, 4, 4, 2, 2, 2).permute(2, 4, 5, 1, 3, 0).reshape(128, m)
            acc += a_tile @ b_tile
    return (acc * 128.0 * weight.global_scale.double()).T


def main() -> None:
    torch.manual_seed(0)
    for n, k, m in ((64, 256, 1), (128, 512, 5), (192, 1024, 16)):
        q = quantize(torch.randn(n, k, dtype=torch.bfloat16) * 3)
        scales = q.block_scale.clone()
        scales.view(torch.uint8)[:, 3::7] = 0
        w = NVFP4Weight(q.packed, scales, q.global_scale, q.shape)
        x = torch.randn(m, k, dtype=torch.bfloat16)
        ref = x.double() @ w.dequantize(torch.float64).T
        err = float((replay(x, w) - ref).norm() / ref.norm())
        print(f"N {n}, K {k}, M {m}: relative error of the replay against x @ dequant(W)^T: {err:.1e}")
        assert err < 1e-12, "the kernel's steps do not compute the product"
    print("the ring kernel's steps compute the product")


if __name__ == "__main__":
    main()
