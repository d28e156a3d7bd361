"""Session 16's fused kernel as first timed (v24a, calls 2-5): each thread's decoded block stored as
16 contiguous elements. Kept for the same-process A/B in ``ab.py --v24a``."""

import triton
import triton.language as tl

from nvfp4_triton.kernels._nvfp4_decode import e4m3_to_f16, nibble_pair_bits
from nvfp4_triton.kernels._w4a16_gemm import epilogue


@triton.jit
def _halves(bits, DT: tl.constexpr):
    """The two 16-bit float patterns in each uint32 of ``bits``, as two ``DT`` tensors (low, high)."""
    low = (bits & 0xFFFF).to(tl.uint16).to(DT, bitcast=True)
    high = (bits >> 16).to(tl.uint16).to(DT, bitcast=True)
    return low, high


@triton.jit
def paired_tile(words, raw_scale, DT: tl.constexpr, PACKED_MUL: tl.constexpr,
                BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """Codes as one int64 per scale block ``[BLOCK_N, BLOCK_K/16]`` and their E4M3 scale bytes ->
    ``e2m1 * e4m3 * 2**-7`` in ``DT`` (bf16 or fp16), exact, ``[BLOCK_N, BLOCK_K]`` in *pair order*.

    Pair order puts a block's elements as 0 4 1 5 2 6 3 7 8 12 9 13 10 14 11 15: each uint32 of
    :func:`nibble_pair_bits` is then two neighbouring elements of the tile, so the decoded pairs
    are stored as they are, with no re-pairing. The other dot operand must be permuted the same
    way (:func:`pair_order`). With ``PACKED_MUL`` the block scale is applied to both elements of
    a pair by one ``mul.rn.{bf16,f16}x2`` (inline PTX); the 2**-7 keeps every scale and product
    inside ``DT``'s range. Without it (Triton's interpreter, which has no inline assembly and
    multiplies bf16 wrongly), the pairs are decoded as fp16 and scaled in fp32.
    """
    BF16: tl.constexpr = DT == tl.bfloat16
    # Decoded: e2m1 * 2**-126 (bf16) or 2**-14 (fp16); the scale's factor makes the product 2**-7.
    scale = e4m3_to_f16(raw_scale).to(tl.float32)[:, :, None] * (2.0 ** 119 if BF16 and PACKED_MUL else 128.0)
    low = (words & 0xFFFFFFFF).to(tl.uint32)  # elements 0-7 of each block
    high = (words >> 32).to(tl.uint32)  # elements 8-15
    MAG_LSB: tl.constexpr = 6 if BF16 and PACKED_MUL else 9
    # Pair words j = 4h + i (nibbles i and i + 4 of half h), along a new last axis in that order.
    by_i0 = tl.join(nibble_pair_bits(low, 0, MAG_LSB), nibble_pair_bits(high, 0, MAG_LSB))
    by_i1 = tl.join(nibble_pair_bits(low, 1, MAG_LSB), nibble_pair_bits(high, 1, MAG_LSB))
    by_i2 = tl.join(nibble_pair_bits(low, 2, MAG_LSB), nibble_pair_bits(high, 2, MAG_LSB))
    by_i3 = tl.join(nibble_pair_bits(low, 3, MAG_LSB), nibble_pair_bits(high, 3, MAG_LSB))
    pairs = tl.reshape(tl.join(tl.join(by_i0, by_i2), tl.join(by_i1, by_i3)), (BLOCK_N, BLOCK_K // 16, 8))
    if PACKED_MUL:
        scale_bits = scale.to(DT).to(tl.uint16, bitcast=True).to(tl.uint32)
        op: tl.constexpr = "mul.rn.bf16x2 $0, $1, $2;" if BF16 else "mul.rn.f16x2 $0, $1, $2;"
        pairs = tl.inline_asm_elementwise(op, "=r,r,r", [pairs, scale_bits | (scale_bits << 16)], dtype=tl.uint32,
                                          is_pure=True, pack=1)
        first, second = _halves(pairs, DT)
    else:
        first, second = _halves(pairs, tl.float16)
        first, second = (first.to(tl.float32) * scale).to(DT), (second.to(tl.float32) * scale).to(DT)
    return tl.reshape(tl.join(first, second), (BLOCK_N, BLOCK_K))


@triton.jit
def pair_order(x, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr):
    """x's tile ``[BLOCK_M, BLOCK_K]`` with each 16-element block in :func:`paired_tile`'s pair order."""
    by_half = tl.reshape(x, (BLOCK_M, BLOCK_K // 16, 2, 2, 4))  # element 8h + 4s + i at [.., h, s, i]
    return tl.reshape(tl.permute(by_half, (0, 1, 2, 4, 3)), (BLOCK_M, BLOCK_K))


@triton.jit
def _load_tile(x_rows, w_rows, s_rows, k0, mask_m, mask_n, K, stride_xk, wanted, BLOCK_K: tl.constexpr):
    """The K tile from column ``k0``: x ``[BLOCK_M, BLOCK_K]``, the codes as int64 words and the
    scale bytes ``[BLOCK_N, BLOCK_K / 16]``; all zero where ``wanted`` is false or past K."""
    kx = k0 + tl.arange(0, BLOCK_K)
    x = tl.load(x_rows + kx[None, :] * stride_xk, mask=mask_m[:, None] & ((kx < K) & wanted)[None, :], other=0.0)
    blk = k0 // 16 + tl.arange(0, BLOCK_K // 16)
    mask_w = mask_n[:, None] & ((blk < K // 16) & wanted)[None, :]
    words = tl.load(w_rows + blk[None, :], mask=mask_w, other=0)
    raw_scale = tl.load(s_rows + blk[None, :], mask=mask_w, other=0)
    return x, words, raw_scale


@triton.jit(do_not_specialize=["M"])
def w4a16_gemm_kernel(
    x_ptr, words_ptr, scale_ptr, global_scale_ptr, bias_ptr, y_ptr,
    M, N, K, k_per_split,
    stride_xm, stride_xk, stride_ym, stride_yn,
    HAS_BIAS: tl.constexpr,
    GELU_TANH: tl.constexpr,
    DOT_F32: tl.constexpr,
    PACKED_MUL: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr, SPLIT_K: tl.constexpr,
):
    """One output tile per program, over ``k_per_split`` columns of K (a multiple of BLOCK_K);
    grid (tiles, SPLIT_K). Programs are ordered in GROUP_M-row bands for L2 reuse of W.

    With ``SPLIT_K > 1``, ``y_ptr`` is a contiguous fp32 ``[SPLIT_K, M, N]`` of partial sums,
    without global scale, bias or GELU. DOT_F32 upcasts both dot operands to fp32: Triton's
    interpreter multiplies bf16 operands wrongly, so launchers set it there and nowhere else;
    PACKED_MUL: see ``paired_tile``. M is not specialized, so one binary serves every batch
    size of a tuned key.
    """
    pid = tl.program_id(0)
    num_m = tl.cdiv(M, BLOCK_M)
    num_n = tl.cdiv(N, BLOCK_N)
    band = GROUP_M * num_n
    first_m = (pid // band) * GROUP_M
    rows_in_band = min(num_m - first_m, GROUP_M)
    pid_m = first_m + (pid % band) % rows_in_band
    pid_n = (pid % band) // rows_in_band

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_m = offs_m < M
    mask_n = offs_n < N
    blocks_per_row = K // 16

    x_rows = x_ptr + offs_m.to(tl.int64)[:, None] * stride_xm
    w_rows = words_ptr + offs_n.to(tl.int64)[:, None] * blocks_per_row
    s_rows = scale_ptr + offs_n.to(tl.int64)[:, None] * blocks_per_row
    k_start = tl.program_id(1) * k_per_split
    k_end = tl.minimum(K, k_start + k_per_split)

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    tile = _load_tile(x_rows, w_rows, s_rows, k_start, mask_m, mask_n, K, stride_xk, True, BLOCK_K)
    for k0 in range(k_start, k_end, BLOCK_K):
        # The next tile's loads go out before this tile is decoded and stream in meanwhile; the
        # barrier keeps the compiler from sinking them to the end of the loop.
        x, words, raw_scale = tile
        tile = _load_tile(x_rows, w_rows, s_rows, k0 + BLOCK_K, mask_m, mask_n, K, stride_xk, k0 + BLOCK_K < k_end,
                          BLOCK_K)
        tl.debug_barrier()
        w = paired_tile(words, raw_scale, x_ptr.dtype.element_ty, PACKED_MUL, BLOCK_N, BLOCK_K)
        x = pair_order(x, BLOCK_M, BLOCK_K)
        if DOT_F32:
            acc = tl.dot(x.to(tl.float32), tl.trans(w.to(tl.float32)), acc)
        else:
            acc = tl.dot(x, tl.trans(w), acc)

    acc = acc * 128.0  # paired_tile's 2**-7
    mask_y = mask_m[:, None] & mask_n[None, :]
    if SPLIT_K == 1:
        out = epilogue(acc, global_scale_ptr, bias_ptr, offs_n, mask_n, HAS_BIAS, GELU_TANH)
        y_ptrs = y_ptr + offs_m.to(tl.int64)[:, None] * stride_ym + offs_n[None, :] * stride_yn
        tl.store(y_ptrs, out.to(y_ptr.dtype.element_ty), mask=mask_y)
    else:
        rows = tl.program_id(1) * M + offs_m
        tl.store(y_ptr + rows.to(tl.int64)[:, None] * N + offs_n[None, :], acc, mask=mask_y)


