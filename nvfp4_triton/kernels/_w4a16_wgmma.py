"""Gluon JIT code: the W4A16 GEMM on Hopper's wgmma, warp-specialized (``WgmmaConfig``).

At M in the hundreds two-pass writes and rereads a bf16 copy of the weight, which at M = 512 costs a
third of cuBLAS's time and cannot hide under cuBLAS (bench/NOTES.md, v37-v38). Decoding the weight
inside the MMA warps left them waiting on their own loads and decode (v39-v42). Here each kind of
work has warps of its own:
- a loader warp brings x's tile and the weight's codes of each K step into a ring slot by TMA, as
  soon as the consumer has released the slot;
- two producer warpgroups, one the even steps and one the odd, decode the codes (ModelOpt's layout
  as stored, element 2j in the low nibble of byte j) with their E4M3 block scales into a bf16 A tile
  in shared memory. The decode sets the pace, and with one producer warp a scheduler its chain of
  dependent instructions was left exposed (bench/NOTES.md, v47-v48);
- two consumer warpgroups, each on half of x's tile, only issue wgmma on A and x's tile and release
  each slot when the MMA after it has been issued and its own is done. Split in two, each sum takes
  half the registers, which is what makes room for the second producer.
The MMAs compute ``y^T = W x^T``: 64 weight rows as their M, half of x's BM rows each as their N, K
in steps of 64.

Gluon is Triton's experimental lower-level language (``triton.experimental.gluon``, Triton 3.6):
Triton's interpreter does not run it, so only a GPU checks this code (tests/test_gpu.py) and the
CPU tests compile it (tests/test_compile.py).
"""

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (fence_async_shared, mbarrier, tma, warpgroup_mma,
                                                              warpgroup_mma_wait)

from ._gluon_bf16 import e4m3_pair_to_bf16, scaled_pairs
from ._w4a16_gemm import gelu_tanh

BLOCK_N = gl.constexpr(64)
"""Weight rows a program: the MMA rows of each consumer warpgroup."""
STEP = gl.constexpr(64)
"""K a step: 8 int32 code words and one int32 of 4 E4M3 scales a row."""
PRODUCER_REGISTERS = gl.constexpr(88)
"""Registers a producer thread keeps (the loader's warp keeps 24, the consumers the rest of
``maxnreg``'s share); on an H200, 80-120 made little difference (bench/NOTES.md, v43, v48)."""


@gluon.jit
def _pairs_of_byte(words, j: gl.constexpr, scale2):
    """Byte j of each code word -> its elements 2j (low half) and 2j + 1 as bf16 patterns times the
    block scale: the nibbles moved 16 bits apart, then one multiply writes a copy that places the
    signs (bits 15, 31) and one that places the magnitudes (from bits 6, 22); they do not overlap."""
    alone = (((words >> (8 * j)) & 0xFF) * 0x1001) & 0x000F000F
    return scaled_pairs((alone * ((1 << 12) + (1 << 6))) & 0x81C081C0, scale2)


@gluon.jit
def _as_bf16(pairs):
    """uint32 pairs -> [.., 2] bf16, the low half first."""
    low = (pairs & 0xFFFF).to(gl.uint16).to(gl.bfloat16, bitcast=True)
    return gl.join(low, (pairs >> 16).to(gl.uint16).to(gl.bfloat16, bitcast=True))


@gluon.jit
def _loader(x_desc, code_desc, x_ring, code_ring, x_ready, code_ready, empty, K, n0, m0, STAGES: gl.constexpr):
    """One warp: step i's x tile and codes by TMA into slot i % STAGES, once the consumer has released it."""
    for i in range(K // STEP):
        slot = i % STAGES
        mbarrier.wait(empty.index(slot), ((i // STAGES) & 1) ^ 1)  # a fresh barrier passes phase 1 at once
        mbarrier.expect(x_ready.index(slot), x_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(x_desc, [m0, i * STEP], x_ready.index(slot), x_ring.index(slot))
        mbarrier.expect(code_ready.index(slot), code_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(code_desc, [n0, i * (STEP // 8)], code_ready.index(slot),
                                        code_ring.index(slot))


@gluon.jit
def _producer(scale_ptr, code_ring, a_ring, code_ready, a_ready, K, n0, STAGES: gl.constexpr, FIRST: gl.constexpr):
    """A warpgroup, steps FIRST, FIRST + 2, ..: once step i's codes have landed, decode them into its A
    slot and signal it ready. A thread takes 16 bytes of a row's step (blocks 2c and 2c + 1). The
    scales, 4 bytes a row a step (under TMA's 16-byte box), are loaded from global memory one of its
    steps ahead."""
    code_layout: gl.constexpr = gl.BlockedLayout([1, 4], [16, 2], [4, 1], [1, 0])  # [BLOCK_N, 8] words
    rows = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(1, code_layout))
    words_of_step = gl.arange(0, 8, layout=gl.SliceLayout(0, code_layout))
    # Word w holds elements 8w .. 8w + 7 of the step, in block w // 2, whose scale is byte w // 2.
    half_shift = 16 * (words_of_step // 4)[None, :]
    high_block = (((words_of_step // 2) % 2) == 1)[None, :]
    scale_src = scale_ptr + (n0 + rows) * (K // 64)
    steps = K // STEP
    scale_next = gl.load(scale_src + gl.minimum(FIRST, steps - 1))
    for i in range(FIRST, steps, 2):
        scale_word = scale_next.to(gl.uint32, bitcast=True)
        scale_next = gl.load(scale_src + gl.minimum(i + 2, steps - 1))
        slot = i % STAGES
        mbarrier.wait(code_ready.index(slot), (i // STAGES) & 1)
        words = code_ring.index(slot).load(code_layout).to(gl.uint32, bitcast=True)
        two = e4m3_pair_to_bf16((scale_word[:, None] >> half_shift) & 0xFFFF)  # blocks 2c, 2c + 1
        scale2 = gl.where(high_block, (two >> 16) | (two & 0xFFFF0000), (two & 0xFFFF) | (two << 16))
        e01 = gl.join(_as_bf16(_pairs_of_byte(words, 0, scale2)), _as_bf16(_pairs_of_byte(words, 1, scale2)))
        e23 = gl.join(_as_bf16(_pairs_of_byte(words, 2, scale2)), _as_bf16(_pairs_of_byte(words, 3, scale2)))
        # [n, word, s, j0, j1] -> K 8 word + 2 (2 j1 + j0) + s
        a_ring.index(slot).store(gl.reshape(gl.permute(gl.join(e01, e23), [0, 1, 4, 3, 2]), [BLOCK_N, STEP]))
        # The stores are generic-proxy writes that wgmma reads through the async proxy; the fence also
        # orders this step's code loads before the TMA that refills the slot.
        fence_async_shared()
        mbarrier.arrive(a_ready.index(slot), count=1)


@gluon.constexpr_function
def _sum_layout(bm):
    """The consumers' sum ``[64, BM]``: two warpgroups side by side, BM / 2 of x's rows each."""
    return gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 2], instr_shape=[16, bm // 2, 16])


@gluon.jit
def _consumer(x_ring, a_ring, x_ready, a_ready, empty, K, BM: gl.constexpr, STAGES: gl.constexpr):
    """Two warpgroups: wgmma on each slot once x and A are in; slot i - 1 is released once step i's MMA
    is issued and i - 1's is done. Returns the sum, ``(x W^T)^T`` over all of K (a 1-tuple)."""
    acc = gl.zeros([BLOCK_N, BM], gl.float32, layout=_sum_layout(BM))
    for i in range(K // STEP):
        slot = i % STAGES
        phase = (i // STAGES) & 1
        mbarrier.wait(x_ready.index(slot), phase)
        mbarrier.wait(a_ready.index(slot), phase)
        acc = warpgroup_mma(a_ring.index(slot), x_ring.index(slot).permute((1, 0)), acc, is_async=True)
        acc = warpgroup_mma_wait(1, deps=[acc])
        mbarrier.arrive(empty.index((i + STAGES - 1) % STAGES), count=1, pred=i > 0)
    return (warpgroup_mma_wait(0, deps=[acc]),)


@gluon.jit
def w4a16_wgmma_kernel(scale_ptr, x_desc, code_desc, global_scale_ptr, bias_ptr, y_ptr, M, N, K, stride_ym,
                       stride_yn, HAS_BIAS: gl.constexpr, GELU_TANH: gl.constexpr, BM: gl.constexpr,
                       STAGES: gl.constexpr):
    """Program (n, m): weight rows ``64 n ..`` against x's rows ``BM m ..``, all of K; ``y[m, n] =
    act(x[m] . w[n] * global_scale + bias[n])`` in y's dtype.

    ``x_desc``: TMA descriptor of x, [BM, 64] bf16 tiles (rows past M read as zeros). ``code_desc``:
    of the codes as int32 words ``[N, K / 8]``, [64, 8] tiles. ``scale_ptr``: the E4M3 scales as int32
    words ``[N, K / 64]``. Needs N a multiple of 64 and K of 64. Launched with 8 warps (the consumers),
    plus the producers' 4 each and the loader's one (a warpgroup's worth of registers)."""
    x_ring = gl.allocate_shared_memory(gl.bfloat16, [STAGES, BM, STEP], x_desc.layout)
    code_ring = gl.allocate_shared_memory(gl.int32, [STAGES, BLOCK_N, STEP // 8], code_desc.layout)
    a_ring = gl.allocate_shared_memory(gl.bfloat16, [STAGES, BLOCK_N, STEP], x_desc.layout)
    x_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    code_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    a_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    for s in gl.static_range(STAGES):
        mbarrier.init(x_ready.index(s), count=1)
        mbarrier.init(code_ready.index(s), count=1)
        mbarrier.init(a_ready.index(s), count=1)
        mbarrier.init(empty.index(s), count=1)

    n0 = gl.program_id(0) * BLOCK_N
    m0 = gl.program_id(1) * BM
    acc, = gl.warp_specialize([
        (_consumer, (x_ring, a_ring, x_ready, a_ready, empty, K, BM, STAGES)),
        (_loader, (x_desc, code_desc, x_ring, code_ring, x_ready, code_ready, empty, K, n0, m0, STAGES)),
        (_producer, (scale_ptr, code_ring, a_ring, code_ready, a_ready, K, n0, STAGES, 0)),
        (_producer, (scale_ptr, code_ring, a_ring, code_ready, a_ready, K, n0, STAGES, 1)),
    ], [1, 4, 4], [24, PRODUCER_REGISTERS, PRODUCER_REGISTERS])

    out_rows = n0 + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(1, _sum_layout(BM)))
    ms = m0 + gl.arange(0, BM, layout=gl.SliceLayout(0, _sum_layout(BM)))
    out = acc * (gl.load(global_scale_ptr) * 128.0)  # the decode left out 2**-7
    if HAS_BIAS:
        out = out + gl.load(bias_ptr + out_rows).to(gl.float32)[:, None]
    if GELU_TANH:
        out = gelu_tanh(out)
    gl.store(y_ptr + ms[None, :] * stride_ym + out_rows[:, None] * stride_yn, out.to(y_ptr.dtype.element_ty),
             mask=(ms < M)[None, :] & (out_rows < N)[:, None])
