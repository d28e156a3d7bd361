"""Gluon JIT code: the small-M W4A16 GEMM on mma.sync, fed from a shared-memory ring (``RingConfig``).

For x with at most 32 rows the GEMM streams the weight. Here the weight's rows are the MMA's rows and
x's rows its columns (``y^T = W x^T``), each thread decodes its own MMA fragment in registers, and
cp.async keeps the next trips' codes, block scales and x in a shared-memory ring while the current
trip is decoded, so a program has several trips' bytes in flight without holding them in registers.

A trip is 256 wide in K. A GEMM's sum over K does not care in which order the MMA meets the K
indices, as long as both operands use the same one: the thread with ``lane % 4 == t`` takes K
``64t .. 64t + 63`` of each trip for its k-slots, in two halves of 32. So its codes are 8
neighbouring int32 words of a row (two 16-byte copies), its scales the 4 neighbouring E4M3 bytes of
blocks ``4t .. 4t + 3`` (one 4-byte copy), and only x's tile is shared between threads (swizzled by
row in 16-byte units). Codes and scales stay as ModelOpt stores them: nibbles i and i + 4 of a word,
decoded as one bf16 pair, are elements i and i + 4, and x's elements are paired the same way in
registers. bench/NOTES.md, v30-v33, has the measurements behind these choices.

Gluon is Triton's experimental lower-level language (``triton.experimental.gluon``, Triton 3.6):
Triton's interpreter does not run it, so only a GPU checks this code (tests/test_gpu.py) and the
CPU tests compile it (tests/test_compile.py).
"""

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import async_copy, mma_v2

from ._gluon_bf16 import e4m3_pair_to_bf16, scaled_pairs
from ._nvfp4_decode import nibble_pair_bits
from ._w4a16_gemm import gelu_tanh

TRIP = 256
"""K per trip: a thread's 64 of it are 8 code words and 4 scale bytes of each of its rows."""


@gluon.constexpr_function
def _as_lists(bases):
    """Layout bases as lists of lists, the form layouts come back in from shared-memory loads, so that
    layouts built here compare equal to those (launch constexprs stay hashable tuples)."""
    return [list(b) for b in bases]


@gluon.constexpr_function
def _merged(bases):
    """Bases over [r, t, w] (w < 8) as bases over [r, 8t + w]: the same words, a row's 32 as one dim."""
    return [[b[0], 8 * b[1] + b[2]] for b in bases]


@gluon.constexpr_function
def _replicated(warps):
    """Warp bases of a layout that every warp holds whole (x's tiles)."""
    return [[0, 0] for _ in range(warps.bit_length() - 1)]


@gluon.jit
def _store_output(total, n0, global_scale_ptr, bias_ptr, y_ptr, M, N, stride_ym, stride_yn,
                  HAS_BIAS: gl.constexpr, GELU_TANH: gl.constexpr, BN: gl.constexpr, BM: gl.constexpr,
                  mma: gl.constexpr):
    """``y[m, n0 + r] = act(total[r, m] * 2**7 * global_scale + bias)`` for m < M, in y's dtype."""
    rows = n0 + gl.arange(0, BN, layout=gl.SliceLayout(1, mma))
    ms = gl.arange(0, BM, layout=gl.SliceLayout(0, mma))
    out = total * (gl.load(global_scale_ptr) * 128.0)
    if HAS_BIAS:
        out = out + gl.load(bias_ptr + rows).to(gl.float32)[:, None]
    if GELU_TANH:
        out = gelu_tanh(out)
    mask = (ms < M)[None, :] & (rows < N)[:, None]
    gl.store(y_ptr + ms[None, :] * stride_ym + rows[:, None] * stride_yn, out.to(y_ptr.dtype.element_ty), mask=mask)


@gluon.jit
def w4a16_ring_kernel(words_ptr, scale_ptr, x_ptr, global_scale_ptr, bias_ptr, y_ptr, partial_ptr, counter_ptr,
                      M, N, K, k_per_split, stride_xm, stride_ym, stride_yn,
                      HAS_BIAS: gl.constexpr, GELU_TANH: gl.constexpr, SPLIT: gl.constexpr, BN: gl.constexpr,
                      BM: gl.constexpr, WARPS: gl.constexpr, STAGES: gl.constexpr,
                      WORD_REGS: gl.constexpr, TRIP_WORD_REGS: gl.constexpr, WARP_BASES: gl.constexpr,
                      X_REGS: gl.constexpr, X_TRIP_REGS: gl.constexpr):
    """One program: BN weight rows (16 a warp and repetition) against x's M <= BM (8, 16 or 32) rows, over K
    slice ``program_id(1)`` (``k_per_split`` wide, whole trips) of SPLIT. Split, each slice stores its
    fp32 sums in ``partial_ptr`` (``[SPLIT, M, N]``) and the last of a column strip to take a ticket
    from ``counter_ptr`` (int32 a strip, zero between launches) adds them and writes y.

    Needs N a multiple of BN, K of 256, x 16-byte aligned with unit K stride and a row stride Triton
    has specialized as a multiple of 16. The layout bases come from ``ring.layouts``."""
    mma: gl.constexpr = gl.NVMMADistributedLayout(version=[2, 0], warps_per_cta=[WARPS, 1], instr_shape=[16, 8])
    a_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=mma, k_width=2)
    b_layout: gl.constexpr = gl.DotOperandLayout(operand_index=1, parent=mma, k_width=2)
    lanes: gl.constexpr = [[0, 1, 0], [0, 2, 0], [1, 0, 0], [2, 0, 0], [4, 0, 0]]
    # A trip's words [BN, 32]: the thread (g, t) copies and reads words 8t .. 8t + 7 of rows g, g + 8. A
    # row's 128 bytes are swizzled by the row in 16-byte units, so rows g and g + 1 use other banks.
    trip_words: gl.constexpr = gl.DistributedLinearLayout(
        reg_bases=_merged(TRIP_WORD_REGS), lane_bases=_merged(lanes), warp_bases=_merged(WARP_BASES),
        block_bases=[], shape=[BN, 32])
    # A half's words [BN, 4, 4], and the thread's scale word of each row [BN, 4 (t)].
    half_words: gl.constexpr = gl.DistributedLinearLayout(
        reg_bases=_as_lists(WORD_REGS), lane_bases=lanes, warp_bases=_as_lists(WARP_BASES), block_bases=[],
        shape=[BN, 4, 4])
    scale_layout: gl.constexpr = gl.SliceLayout(2, half_words)
    # x's trip, kept as [4 BM, 64] (row 4m + t: K 64t .. 64t + 63 of x's row m), as the MMA reads it:
    # the thread (g, t) takes row 4g + t (and 4(g + 8) + t), so the lanes of a warp read 32 rows, each
    # 128 bytes swizzled by its row, and no two lanes of a 16-byte load's phase share a bank.
    # One half of it [BM, 128] (K 32t .. 32t + 31 of the half); every warp holds the same x.
    x_warps: gl.constexpr = _replicated(WARPS)
    x_trip: gl.constexpr = gl.DistributedLinearLayout(
        reg_bases=_as_lists(X_TRIP_REGS), lane_bases=[[1, 0], [2, 0], [4, 0], [8, 0], [16, 0]],
        warp_bases=x_warps, block_bases=[], shape=[4 * BM, 64])
    x_half: gl.constexpr = gl.DistributedLinearLayout(
        reg_bases=_as_lists(X_REGS), lane_bases=[[0, 32], [0, 64], [1, 0], [2, 0], [4, 0]],
        warp_bases=x_warps, block_bases=[], shape=[BM, 128])
    x_copy: gl.constexpr = gl.BlockedLayout(size_per_thread=[1, 8], threads_per_warp=[4, 8],
                                            warps_per_cta=[WARPS, 1], order=[1, 0])
    # The rings, a slot a trip; layouts are per slot (one rank less than the ring).
    word_ring = gl.allocate_shared_memory(gl.uint32, [STAGES, BN, 32], gl.SwizzledSharedLayout(
        vec=4, per_phase=1, max_phase=8, order=[1, 0]))
    scale_ring = gl.allocate_shared_memory(gl.uint32, [STAGES, BN, 4], gl.SwizzledSharedLayout(
        vec=1, per_phase=1, max_phase=1, order=[1, 0]))
    x_ring = gl.allocate_shared_memory(gl.bfloat16, [STAGES, 4 * BM, 64], gl.SwizzledSharedLayout(
        vec=8, per_phase=1, max_phase=8, order=[1, 0]))

    n0 = gl.program_id(0) * BN
    rows = n0 + gl.arange(0, BN, layout=gl.SliceLayout(1, trip_words))
    row_words = gl.arange(0, 32, layout=gl.SliceLayout(0, trip_words))
    word_src = words_ptr + rows[:, None] * ((K // 256) * 32) + row_words[None, :]
    rows = n0 + gl.arange(0, BN, layout=gl.SliceLayout(1, scale_layout))
    ts = gl.arange(0, 4, layout=gl.SliceLayout(0, scale_layout))
    scale_src = scale_ptr + rows[:, None] * ((K // 256) * 4) + ts[None, :]
    x_rows = gl.arange(0, 4 * BM, layout=gl.SliceLayout(1, x_copy))  # 4m + t
    x_cols = gl.arange(0, 64, layout=gl.SliceLayout(0, x_copy))
    x_src = x_ptr + ((x_rows // 4) * stride_xm + (x_rows % 4) * 64)[:, None] + x_cols[None, :]
    x_mask = (x_rows < 4 * M)[:, None] & (x_cols >= 0)[None, :]
    first_block = (gl.arange(0, 4, layout=gl.SliceLayout(0, gl.SliceLayout(1, half_words))) < 2)[None, None, :]

    k_start = gl.program_id(1) * k_per_split
    first_trip = k_start // 256
    trips = (gl.minimum(K, k_start + k_per_split) - k_start) // 256
    for s in gl.static_range(STAGES - 1):  # the ring's first trips; past the slice, its last trip again
        trip = first_trip + gl.minimum(s, trips - 1)
        async_copy.async_copy_global_to_shared(word_ring.index(s), word_src + trip * 32)
        async_copy.async_copy_global_to_shared(scale_ring.index(s), scale_src + trip * 4)
        async_copy.async_copy_global_to_shared(x_ring.index(s), x_src + trip * 256, mask=x_mask)
        async_copy.commit_group()

    acc = gl.zeros([BN, BM], gl.float32, layout=mma)
    for i in range(trips):
        async_copy.wait_group(STAGES - 2)  # this thread's copies of trip i have landed
        gl.thread_barrier()  # everyone's have; everyone is done with trip i - 1's slot
        ahead = i + STAGES - 1
        trip = first_trip + gl.minimum(ahead, trips - 1)
        slot = ahead % STAGES
        async_copy.async_copy_global_to_shared(word_ring.index(slot), word_src + trip * 32)
        async_copy.async_copy_global_to_shared(scale_ring.index(slot), scale_src + trip * 4)
        async_copy.async_copy_global_to_shared(x_ring.index(slot), x_src + trip * 256, mask=x_mask)
        async_copy.commit_group()

        slot = i % STAGES
        scale_word = scale_ring.index(slot).load(scale_layout)  # blocks 4t .. 4t + 3 of each row
        x_both = gl.permute(gl.reshape(x_ring.index(slot).load(x_trip), [BM, 4, 2, 32]), [0, 1, 3, 2])
        x_low, x_high = gl.split(x_both)  # [m, t, j] for h = 0, 1: K 64t + 32h + j
        words_both = gl.permute(gl.reshape(word_ring.index(slot).load(trip_words), [BN, 4, 2, 4]), [0, 1, 3, 2])
        words_low, words_high = gl.split(words_both)  # [n, t, w] for h = 0, 1: word 8t + 4h + w of the row
        for h in gl.static_range(2):
            words = gl.convert_layout(words_low if h == 0 else words_high, half_words, assert_trivial=True)
            two = e4m3_pair_to_bf16((scale_word >> (16 * h)) & 0xFFFF)  # blocks 4t + 2h, 4t + 2h + 1
            scale2 = gl.where(first_block, ((two & 0xFFFF) | (two << 16))[:, :, None],
                              ((two >> 16) | (two & 0xFFFF0000))[:, :, None])
            p0 = scaled_pairs(nibble_pair_bits(words, 0, 6), scale2)  # MAG_LSB 6: bf16 patterns
            p1 = scaled_pairs(nibble_pair_bits(words, 1, 6), scale2)
            p2 = scaled_pairs(nibble_pair_bits(words, 2, 6), scale2)
            p3 = scaled_pairs(nibble_pair_bits(words, 3, 6), scale2)
            pairs = gl.join(gl.join(p0, p1), gl.join(p2, p3))
            # pairs [n, t, w, b, a]: elements i = 2a + b and i + 4 of word w, K 32t + 8w + 2a + b (+ 4)
            low = (pairs & 0xFFFF).to(gl.uint16).to(gl.bfloat16, bitcast=True)
            high = (pairs >> 16).to(gl.uint16).to(gl.bfloat16, bitcast=True)
            w = gl.permute(gl.join(low, high), [0, 2, 4, 3, 1, 5])  # [n, w, a, b, t, s]: k-slot 32w + 16a + 8b + 2t + s
            w = gl.convert_layout(gl.reshape(w, [BN, 128]), a_layout, assert_trivial=True)
            x = x_low if h == 0 else x_high
            x = gl.convert_layout(gl.reshape(x, [BM, 128]), x_half, assert_trivial=True)
            x = gl.permute(gl.reshape(x, [BM, 4, 4, 2, 2, 2]), [2, 4, 5, 1, 3, 0])  # [w, a, b, t, s, m]
            x = gl.convert_layout(gl.reshape(x, [128, BM]), b_layout)  # pairs (i, i + 4): moves within a thread
            acc = mma_v2(w, x, acc)
    async_copy.wait_group(0)

    if SPLIT == 1:
        _store_output(acc, n0, global_scale_ptr, bias_ptr, y_ptr, M, N, stride_ym, stride_yn, HAS_BIAS, GELU_TANH,
                      BN, BM, mma)
    else:
        # This slice's sums; the barrier puts every thread's stores before the ticket, whose release
        # hands them to the last slice's acquire. That one reads them from L2 (L1 is not coherent
        # with other SMs' stores) and sets the counter back to zero.
        ms = gl.arange(0, BM, layout=gl.SliceLayout(0, mma))
        out_rows = n0 + gl.arange(0, BN, layout=gl.SliceLayout(1, mma))
        offsets = ms[None, :] * N + out_rows[:, None]
        mask = (ms < M)[None, :] & (out_rows < N)[:, None]
        gl.store(partial_ptr + gl.program_id(1) * (M * N) + offsets, acc, mask=mask)
        gl.thread_barrier()
        if gl.atomic_add(counter_ptr + gl.program_id(0), 1, sem="acq_rel") == SPLIT - 1:
            total = gl.zeros([BN, BM], gl.float32, layout=mma)
            for s in gl.static_range(SPLIT):
                total += gl.load(partial_ptr + s * (M * N) + offsets, mask=mask, other=0.0, cache_modifier=".cg")
            gl.store(counter_ptr + gl.program_id(0), 0)
            _store_output(total, n0, global_scale_ptr, bias_ptr, y_ptr, M, N, stride_ym, stride_yn, HAS_BIAS,
                          GELU_TANH, BN, BM, mma)
