"""Gluon JIT code: the W4A16 GEMM on Hopper's wgmma, the weight decoded in registers as the MMA's A
operand (``WgmmaConfig``).

For M in the hundreds and up, two-pass writes and rereads a bf16 copy of the weight, which at
M = 512 costs a third of cuBLAS's time, and cannot hide under cuBLAS, which fills the SMs
(bench/NOTES.md, v37-v38). Here the weight never leaves registers: the MMA computes
``y^T = W x^T`` with 64 weight rows a warpgroup as its M, x's BM rows as its N (read by wgmma from a
cp.async ring in shared memory) and K in steps of 64 (four k16 MMAs), and the decode of step i + 1
runs while step i's MMA runs.

A's fragment gives the thread (g, t) of a warp, in each 16-K block, the element pairs (2t, 2t + 1)
and (2t + 8, 2t + 9) of rows g and g + 8: byte t of each of the block's two int32 code words (element
2j in the low nibble of byte j, as ModelOpt stores it). Each thread loads its rows' words and keeps
byte t. ptxas serializes a wgmma whose register operand is written while it runs (C7513), so three
steps make a trip and A lives in three register sets, and each wait leaves the MMA just issued
running: the decode then runs beside it even where ptxas places it after the wait (bench/NOTES.md,
v39).

Gluon is Triton's experimental lower-level language (``triton.experimental.gluon``, Triton 3.6):
Triton's interpreter does not run it, so only a GPU checks this code (tests/test_gpu.py) and the
CPU tests compile it (tests/test_compile.py).
"""

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import async_copy
from triton.experimental.gluon.language.nvidia.hopper import fence_async_shared, warpgroup_mma, warpgroup_mma_wait

from ._gluon_bf16 import e4m3_pair_to_bf16, scaled_pairs
from ._w4a16_gemm import gelu_tanh

BLOCK_N = gl.constexpr(64)
"""Weight rows a program: one warpgroup, 16 rows a warp."""
STEP = gl.constexpr(64)
"""K a step: 8 int32 code words and one int32 of 4 E4M3 scales a row."""


@gluon.jit
def _byte_pairs(byte):
    """A code byte (bits 0-7 of a uint32) -> bf16x2 patterns worth ``e2m1 * 2**-126``, its low nibble in
    the low half: the nibbles moved 16 bits apart, then one multiply writes a copy that places the
    signs (bits 15, 31) and one that places the magnitudes (from bits 6, 22); they do not overlap."""
    alone = (byte * 0x1001) & 0x000F000F
    return (alone * ((1 << 12) + (1 << 6))) & 0x81C081C0


@gluon.jit
def _raw_step(word_src, scale_src, step, steps):
    """Step ``step``'s code words and scale words as uint32; zeros past the last step (an A of zeros)."""
    words = gl.load(word_src + step * (STEP // 8), mask=step < steps, other=0).to(gl.uint32, bitcast=True)
    return words, gl.load(scale_src + step, mask=step < steps, other=0).to(gl.uint32, bitcast=True)


@gluon.jit
def _decoded_step(words, scale_word, byte_shift, block_shift, a_layout: gl.constexpr):
    """A step's A operand [64, 64] (bf16, ``e2m1 * e4m3 * 2**-7``) from its code words [n, t, block, half]
    (each thread keeps byte t) and its rows' scale words (block b's scale in byte b)."""
    # Blocks 2j and 2j + 1 convert together (the same input for both, which the compiler merges).
    two = e4m3_pair_to_bf16((scale_word[:, None, None, None] >> (block_shift & 16)) & 0xFFFF)
    scale2 = gl.where((block_shift & 8) == 0, (two & 0xFFFF) | (two << 16), (two >> 16) | (two & 0xFFFF0000))
    pairs = scaled_pairs(_byte_pairs((words >> byte_shift) & 0xFF), scale2)
    low = (pairs & 0xFFFF).to(gl.uint16).to(gl.bfloat16, bitcast=True)
    high = (pairs >> 16).to(gl.uint16).to(gl.bfloat16, bitcast=True)
    # [n, t, block, half, s] -> K 16 block + 8 half + 2t + s
    w = gl.permute(gl.join(low, high), [0, 2, 3, 1, 4])
    return gl.convert_layout(gl.reshape(w, [BLOCK_N, STEP]), a_layout, assert_trivial=True)


@gluon.jit
def _step(acc, prev, cur, words, scale_word, i, steps, x_ring, x_src, x_mask, word_src, scale_src, byte_shift,
          block_shift, a_layout: gl.constexpr, STAGES: gl.constexpr):
    """Step i: its MMA on A ``cur`` and x's slot, issued while step i - 1's (on ``prev``) may still run;
    step i + 1's A decoded from its words (loaded a step ago) into registers of its own; step i + 2's
    words loaded; then a wait that retires step i - 1's MMA and leaves step i's running.
    Returns the sum, step i's and step i + 1's A, and step i + 2's words."""
    async_copy.wait_group(STAGES - 3)  # this thread's copies of step i have landed
    gl.thread_barrier()  # everyone's have, and every warp's MMA of step i - 2 is done
    ahead = i + STAGES - 2  # into step i - 2's slot
    async_copy.async_copy_global_to_shared(x_ring.index(ahead % STAGES),
                                           x_src + gl.minimum(ahead, steps - 1) * STEP, mask=x_mask)
    async_copy.commit_group()
    fence_async_shared()  # the copies are generic-proxy writes; wgmma reads through the async proxy
    token = warpgroup_mma(cur, x_ring.index(i % STAGES).permute((1, 0)), acc, is_async=True)
    words_later, scale_later = _raw_step(word_src, scale_src, i + 2, steps)
    following = _decoded_step(words, scale_word, byte_shift, block_shift, a_layout)
    acc, prev, cur = warpgroup_mma_wait(1, deps=[token, prev, cur])
    return acc, cur, following, words_later, scale_later


@gluon.jit
def w4a16_wgmma_kernel(words_ptr, scale_ptr, x_ptr, global_scale_ptr, bias_ptr, y_ptr, M, N, K, stride_xm,
                       stride_ym, stride_yn, HAS_BIAS: gl.constexpr, GELU_TANH: gl.constexpr, BM: gl.constexpr,
                       STAGES: gl.constexpr):
    """Program (n, m): weight rows ``64 n ..`` against x's rows ``BM m ..``, all of K; ``y[m, n] =
    act(x[m] . w[n] * global_scale + bias[n])`` in y's dtype.

    Needs N a multiple of 64, K of 64, x 16-byte aligned with unit K stride and a row stride Triton
    has specialized as a multiple of 16, STAGES >= 3 (one slot for the MMA in flight, one for the
    step before it, one being filled)."""
    mma: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BM, 16])
    a_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=mma, k_width=2)
    # A step's code words of a thread's rows, [n, t, block, half]: word 2 block + half of the row, the
    # same for the four t of a quad (each keeps byte t).
    words_layout: gl.constexpr = gl.DistributedLinearLayout(
        reg_bases=[[0, 0, 0, 1], [0, 0, 1, 0], [0, 0, 2, 0], [8, 0, 0, 0]],
        lane_bases=[[0, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [2, 0, 0, 0], [4, 0, 0, 0]],
        warp_bases=[[16, 0, 0, 0], [32, 0, 0, 0]], block_bases=[], shape=[BLOCK_N, 4, 4, 2])
    row_layout: gl.constexpr = gl.SliceLayout(1, gl.SliceLayout(2, gl.SliceLayout(3, words_layout)))
    x_copy: gl.constexpr = gl.BlockedLayout(size_per_thread=[1, 8], threads_per_warp=[4, 8], warps_per_cta=[4, 1],
                                            order=[1, 0])
    x_ring = gl.allocate_shared_memory(gl.bfloat16, [STAGES, BM, STEP], gl.NVMMASharedLayout(
        swizzle_byte_width=128, element_bitwidth=16, rank=2))

    n0 = gl.program_id(0) * BLOCK_N
    m0 = gl.program_id(1) * BM
    rows = n0 + gl.arange(0, BLOCK_N, layout=row_layout)
    ts = gl.arange(0, 4, layout=gl.SliceLayout(0, gl.SliceLayout(2, gl.SliceLayout(3, words_layout))))
    blocks = gl.arange(0, 4, layout=gl.SliceLayout(0, gl.SliceLayout(1, gl.SliceLayout(3, words_layout))))
    halves = gl.arange(0, 2, layout=gl.SliceLayout(0, gl.SliceLayout(1, gl.SliceLayout(2, words_layout))))
    word_src = words_ptr + (rows[:, None, None, None] * (K // 8) + 0 * ts[None, :, None, None]
                            + 2 * blocks[None, None, :, None] + halves[None, None, None, :])
    byte_shift = 8 * ts[None, :, None, None]
    block_shift = 8 * blocks[None, None, :, None]
    scale_src = scale_ptr + rows * (K // 64)
    x_rows = gl.arange(0, BM, layout=gl.SliceLayout(1, x_copy))
    x_cols = gl.arange(0, STEP, layout=gl.SliceLayout(0, x_copy))
    x_src = x_ptr + (m0 + x_rows)[:, None] * stride_xm + x_cols[None, :]
    x_mask = ((m0 + x_rows) < M)[:, None] & (x_cols >= 0)[None, :]

    steps = K // STEP
    for s in gl.static_range(STAGES - 2):
        async_copy.async_copy_global_to_shared(x_ring.index(s), x_src + gl.minimum(s, steps - 1) * STEP, mask=x_mask)
        async_copy.commit_group()
    words, scale_word = _raw_step(word_src, scale_src, 0, steps)
    cur = _decoded_step(words, scale_word, byte_shift, block_shift, a_layout)
    prev = cur  # kept alive by the first wait, which has no MMA before it to retire
    words, scale_word = _raw_step(word_src, scale_src, 1, steps)

    acc = gl.zeros([BLOCK_N, BM], gl.float32, layout=mma)
    # Three steps a trip (see the module docstring); the steps past the last have an A of zeros.
    for i in range(0, steps, 3):
        acc, prev, cur, words, scale_word = _step(acc, prev, cur, words, scale_word, i, steps, x_ring, x_src,
                                                  x_mask, word_src, scale_src, byte_shift, block_shift, a_layout,
                                                  STAGES)
        acc, prev, cur, words, scale_word = _step(acc, prev, cur, words, scale_word, i + 1, steps, x_ring, x_src,
                                                  x_mask, word_src, scale_src, byte_shift, block_shift, a_layout,
                                                  STAGES)
        acc, prev, cur, words, scale_word = _step(acc, prev, cur, words, scale_word, i + 2, steps, x_ring, x_src,
                                                  x_mask, word_src, scale_src, byte_shift, block_shift, a_layout,
                                                  STAGES)
    acc = warpgroup_mma_wait(0, deps=[acc])
    async_copy.wait_group(0)

    out_rows = n0 + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(1, mma))
    ms = m0 + gl.arange(0, BM, layout=gl.SliceLayout(0, mma))
    out = acc * (gl.load(global_scale_ptr) * 128.0)
    if HAS_BIAS:
        out = out + gl.load(bias_ptr + out_rows).to(gl.float32)[:, None]
    if GELU_TANH:
        out = gelu_tanh(out)
    gl.store(y_ptr + ms[None, :] * stride_ym + out_rows[:, None] * stride_yn, out.to(y_ptr.dtype.element_ty),
             mask=(ms < M)[None, :] & (out_rows < N)[:, None])
