"""W4A16 GEMM: ``y = (x @ dequant(W)^T) * global_scale (+ bias)`` with W in NVFP4, on tensor cores.

x is ``[M, K]`` bf16/fp16. W arrives as its packed E2M1 codes viewed as one int64 per 16-element
scale block (``[N, K/16]``, element 2j in the low nibble of byte j) and its E4M3 block scales
``[N, K/16]`` as uint8, both row-major. Each program computes one ``BLOCK_M x BLOCK_N`` tile of y:
per K step it decodes a ``BLOCK_N x BLOCK_K`` weight tile into x's dtype (exact) and feeds it to
``tl.dot`` with an fp32 accumulator. The tile is decoded two elements per 32-bit word. Up to 64
rows of x it is kept in the order that yields (``paired_tile``), x's tile is permuted to match,
and each program loads its next K tile by hand before decoding the current one: compiled for
sm_90 that is about half the instructions per weight element of decoding element by element in K
order (``bench/kernel_asm.py``; bench/NOTES.md, v24). Taller x tiles cost more to permute, and
more registers to load by hand, than the weight tile costs to put back in K order, so there the
weight is, and Triton pipelines the loads (v26). At 16 rows of x the product is computed as
``W @ x^T``, the weight's rows on the MMA's rows, which on sm_90 is a wgmma instead of a chain of
mma.sync (v27). The global scale is applied once, in the epilogue, followed by the bias and,
optionally, GELU (tanh approximation).

With few rows of x the weight is a stream of bytes, and a grid of output tiles can be too small
to keep every SM loading: there K is split into ``SPLIT_K`` slices. Each program writes fp32
partial sums, and the last of a tile's programs to finish adds them up and applies the epilogue
(``splitk_arrive``, ``splitk_sum``), in the same launch. On an H200 a separate sum kernel had
cost 3.6-3.8 us of a 20-35 us GEMM in graph replays; folding it in gave about 0.7 us of that back
there (bench/NOTES.md, v28).
"""

import triton
import triton.language as tl

from ._nvfp4_decode import PAIRED_TILE_EXPONENT, paired_tile, pair_order


@triton.jit
def gelu_tanh(a):
    """``0.5 a (1 + tanh(u))``, ``u = sqrt(2/pi) (a + 0.044715 a^3)``, as ``a * sigmoid(2u)``.

    The exponential only ever sees ``-|2u|``, so it cannot overflow.
    """
    z = 1.5957691216057308 * (a + 0.044715 * a * a * a)
    e = tl.exp(-tl.abs(z))
    return a * tl.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


@triton.jit
def epilogue(sums, global_scale_ptr, bias_ptr, offs_n, mask_n, HAS_BIAS: tl.constexpr, GELU_TANH: tl.constexpr):
    """``act(sums * global_scale + bias[offs_n])``, in fp32; ``offs_n`` indexes the last dimension of ``sums``."""
    out = sums * tl.load(global_scale_ptr)
    if HAS_BIAS:
        out += tl.load(bias_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)
    if GELU_TANH:
        out = gelu_tanh(out)
    return out


@triton.jit
def store_output(sums, global_scale_ptr, bias_ptr, y_ptr, offs_m, offs_n, mask_m, mask_n, stride_ym, stride_yn,
                 HAS_BIAS: tl.constexpr, GELU_TANH: tl.constexpr):
    """``y[offs_m, offs_n] = epilogue(sums)`` in y's dtype."""
    out = epilogue(sums, global_scale_ptr, bias_ptr, offs_n, mask_n, HAS_BIAS, GELU_TANH)
    y_ptrs = y_ptr + offs_m.to(tl.int64)[:, None] * stride_ym + offs_n[None, :] * stride_yn
    tl.store(y_ptrs, out.to(y_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])


@triton.jit
def splitk_store(partial_ptr, sums, offs_m, offs_n, mask, M, N):
    """This program's slice of fp32 partial sums into ``[SPLIT_K, M, N]`` at ``[offs_m, offs_n]``
    (slice ``program_id(1)``), for ``splitk_sum``."""
    rows = tl.program_id(1) * M + offs_m
    tl.store(partial_ptr + rows.to(tl.int64)[:, None] * N + offs_n[None, :], sums, mask=mask)


@triton.jit
def splitk_arrive(counter_ptr, tile, SPLIT_K: tl.constexpr):
    """Called by each of an output tile's SPLIT_K programs once its partial sums are stored: True in
    the last one to arrive, which then owns the tile's sum. That one also sets the tile's counter
    (int32, zero before the launch) back to zero for the next launch.

    The barrier puts every thread's partial stores before the atomic, whose release makes them
    visible to the program whose acquire counts after it.
    """
    tl.debug_barrier()
    last = tl.atomic_add(counter_ptr + tile, 1, sem="acq_rel") == SPLIT_K - 1
    tl.store(counter_ptr + tile, 0, mask=last)
    return last


@triton.jit
def splitk_sum(partial_ptr, offs_m, offs_n, mask, M, N, SPLIT_K: tl.constexpr):
    """Sum over the SPLIT_K slices of the fp32 partial sums ``[SPLIT_K, M, N]`` at ``[offs_m, offs_n]``,
    read from L2 (``.cg``): this SM's L1 is not kept coherent with the other programs' writes."""
    total = tl.zeros((offs_m.shape[0], offs_n.shape[0]), dtype=tl.float32)
    for s in tl.static_range(SPLIT_K):
        rows = s * M + offs_m
        total += tl.load(partial_ptr + rows.to(tl.int64)[:, None] * N + offs_n[None, :], mask=mask, other=0.0,
                         cache_modifier=".cg")
    return total


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


@triton.jit
def _accumulate(acc, x, words, raw_scale, DT: tl.constexpr, DOT_F32: tl.constexpr, PACKED_MUL: tl.constexpr,
                TALL: tl.constexpr, SWAP: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                BLOCK_K: tl.constexpr):
    """``acc + x @ W^T`` for one K tile, or with ``SWAP`` ``acc + W @ x^T``; the weight decoded in
    pair order and x permuted to match, or for a ``TALL`` x tile the weight put back in K order."""
    w = paired_tile(words, raw_scale, DT, PACKED_MUL, not TALL, BLOCK_N, BLOCK_K)
    if not TALL:
        x = pair_order(x, BLOCK_M, BLOCK_K)
    if DOT_F32:
        x, w = x.to(tl.float32), w.to(tl.float32)
    if SWAP:
        acc = tl.dot(w, tl.trans(x), acc)
    else:
        acc = tl.dot(x, tl.trans(w), acc)
    return acc


@triton.jit(do_not_specialize=["M"])
def w4a16_gemm_kernel(
    x_ptr, words_ptr, scale_ptr, global_scale_ptr, bias_ptr, y_ptr, partial_ptr, counter_ptr,
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

    With ``SPLIT_K > 1``, ``partial_ptr`` is a contiguous fp32 ``[SPLIT_K, M, N]`` for the partial
    sums and ``counter_ptr`` an int32 per output tile, all zero (``splitk_arrive``); with one slice
    neither is read. DOT_F32 upcasts both dot operands to fp32: Triton's interpreter multiplies
    bf16 operands wrongly, so launchers set it there and nowhere else. PACKED_MUL: see
    ``paired_tile``. M is not specialized, so one binary serves every batch size of a tuned key.
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

    DT: tl.constexpr = x_ptr.dtype.element_ty
    TALL: tl.constexpr = BLOCK_M > 64
    SWAP: tl.constexpr = BLOCK_M == 16
    if SWAP:
        acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    if TALL:  # Triton pipelines these loads (the launch's num_stages)
        for k0 in range(k_start, k_end, BLOCK_K):
            x, words, raw_scale = _load_tile(x_rows, w_rows, s_rows, k0, mask_m, mask_n, K, stride_xk, True, BLOCK_K)
            acc = _accumulate(acc, x, words, raw_scale, DT, DOT_F32, PACKED_MUL, TALL, SWAP, BLOCK_M, BLOCK_N,
                              BLOCK_K)
    else:
        tile = _load_tile(x_rows, w_rows, s_rows, k_start, mask_m, mask_n, K, stride_xk, True, BLOCK_K)
        for k0 in range(k_start, k_end, BLOCK_K):
            # The next tile's loads go out before this tile is decoded and stream in meanwhile; the
            # barrier keeps the compiler from sinking them to the end of the loop.
            x, words, raw_scale = tile
            tile = _load_tile(x_rows, w_rows, s_rows, k0 + BLOCK_K, mask_m, mask_n, K, stride_xk,
                              k0 + BLOCK_K < k_end, BLOCK_K)
            tl.debug_barrier()
            acc = _accumulate(acc, x, words, raw_scale, DT, DOT_F32, PACKED_MUL, TALL, SWAP, BLOCK_M, BLOCK_N,
                              BLOCK_K)
    if SWAP:
        acc = tl.trans(acc)

    acc = acc * 2.0 ** -PAIRED_TILE_EXPONENT
    if SPLIT_K == 1:
        store_output(acc, global_scale_ptr, bias_ptr, y_ptr, offs_m, offs_n, mask_m, mask_n, stride_ym, stride_yn,
                     HAS_BIAS, GELU_TANH)
    else:
        mask_y = mask_m[:, None] & mask_n[None, :]
        splitk_store(partial_ptr, acc, offs_m, offs_n, mask_y, M, N)
        if splitk_arrive(counter_ptr, pid, SPLIT_K):
            store_output(splitk_sum(partial_ptr, offs_m, offs_n, mask_y, M, N, SPLIT_K), global_scale_ptr, bias_ptr,
                         y_ptr, offs_m, offs_n, mask_m, mask_n, stride_ym, stride_yn, HAS_BIAS, GELU_TANH)
