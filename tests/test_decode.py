"""The E2M1 pair decoder (``kernels._nvfp4_decode.nibble_pair_bits``) against the format's table,
for every pair of codes in every position of a word, and for random words.

The fused kernel decodes bf16 pairs (``MAG_LSB`` 6) only on a GPU: its packed multiply is inline PTX,
which Triton's interpreter cannot run, so the kernel tests on the CPU take the fp16 form. Here the
decoder itself runs, through the interpreter on the CPU, for both forms.
"""

import pytest
import torch
import triton
import triton.language as tl

from nvfp4_triton.kernels._nvfp4_decode import nibble_pair_bits

E2M1 = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], dtype=torch.float64)
E2M1 = torch.cat([E2M1, -E2M1])  # codes 8-15: the sign bit set (code 8 is -0.0)


@triton.jit
def _pairs_kernel(words_ptr, out_ptr, N: tl.constexpr, MAG_LSB: tl.constexpr):
    offs = tl.arange(0, N)
    word = tl.load(words_ptr + offs).to(tl.uint32, bitcast=True)
    for i in tl.static_range(4):
        tl.store(out_ptr + i * N + offs, nibble_pair_bits(word, i, MAG_LSB).to(tl.int32, bitcast=True))


def _words(device) -> torch.Tensor:
    """1024 words: 256 with every pair of nibble positions (i, i + 4) holding one of the 256 code
    pairs, then 768 drawn at random."""
    codes = torch.arange(256, dtype=torch.int64)
    low, high = codes % 16, codes // 16
    every = sum((low << (4 * i)) | (high << (4 * i + 16)) for i in range(4))
    drawn = torch.randint(0, 2**32, (768,), generator=torch.Generator().manual_seed(5), dtype=torch.int64)
    words = torch.cat([every, drawn])
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32).to(device)


@pytest.mark.parametrize("mag_lsb, dtype, exponent", [(6, torch.bfloat16, -126), (9, torch.float16, -14)])
def test_each_nibble_pair_decodes_to_its_value(mag_lsb, dtype, exponent, device):
    """Each half of the result is the 16-bit float pattern of ``e2m1(code) * 2**exponent``, exactly,
    with the sign of -0.0 kept: nibble i in the low half, nibble i + 4 in the high one."""
    words = _words(device)
    out = torch.full((4, words.numel()), 0x5A5A5A5A, dtype=torch.int32, device=device)  # poison
    _pairs_kernel[(1,)](words, out, N=words.numel(), MAG_LSB=mag_lsb)
    unsigned = words.cpu().to(torch.int64) % 2**32
    got = out.cpu().to(torch.int64) % 2**32
    for i in range(4):
        for half, shift in ((got[i] % 2**16, 4 * i), (got[i] // 2**16, 4 * i + 16)):
            code = (unsigned >> shift) % 16
            want = (E2M1[code] * 2.0**exponent).to(dtype).view(torch.int16).to(torch.int64) % 2**16
            assert torch.equal(half, want), f"nibble {shift // 4}, MAG_LSB {mag_lsb}"
