"""Session 19: ``kperm_gemm`` with several K trips in flight through shared memory (Gluon, cp.async,
mma.sync; for the GPU).

Session 19's first GPU run of ``kperm_gemm`` (bench/RESULTS.md) measured 1.1 TB/s at best, far
under the instruction bound of its SASS: each warp waits for its loads once a 128-wide trip, and a
program makes only a few trips. Here the codes, the E4M3 scales and x's tile of the next
``STAGES - 1`` trips are copied into a shared-memory ring by cp.async while the current trip is
decoded, so each program keeps several trips' bytes in flight without holding them in registers.

A trip is 256 wide in K. The thread with ``lane % 4 == t`` covers K ``64t .. 64t + 63`` of it, in
two halves of 32 (``h``), each half exactly a ``kperm_gemm`` tile for that thread: so its codes
are 8 neighbouring words of a row (two 16-byte copies), its scales the 4 neighbouring E4M3 bytes
of blocks ``4t .. 4t + 3`` (one 4-byte copy), and nothing but x's tile is shared between threads.
The codes keep ``kperm_gemm.prepack_nibbles``'s order; scales and x are read as they are. The
ring's codes are unswizzled (each thread reads back what it copied; 8 wavefronts a read against 4
at best), x's tile is swizzled in 16-byte units by row (4 wavefronts, the least).

K can be split over programs (v31, after v30's first run): each slice stores its fp32 sums, takes
a ticket from its column strip's counter, and the last to arrive sums the slices and writes y, as
the library's fused kernel does since v28. (v30 added the slices atomically into a zeroed fp32
output and cast it afterwards: two more kernels, which made every split slower than none at
K = 3072; session 19, call 8.)

Needs K a multiple of 256 and N of BN. ``python pipelined_gemm.py`` compiles it for sm_90 on the
CPU machine; ``check_and_time.py`` here runs it on the GPU. NOT RUN on a GPU before that.
"""

import sys
from pathlib import Path

import torch
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import async_copy, mma_v2

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "gluon_s17"))
sys.path.insert(0, str(HERE.parent / "gluon_s18"))

from kperm_gemm import a_tile, layout_constexprs  # noqa: E402
from registers_gemm import store_output  # noqa: E402

TRIP = 256
"""K per trip: a thread's 64 of it are two ``kperm_gemm`` tiles' worth and 4 scale bytes."""


@gluon.jit
def e4m3_pair_to_bf16(two):
    """16-bit pairs of E4M3 scales (uint32, low half used) -> bf16x2 patterns worth ``e4m3 * 2**119``.

    ``cvt.rn.f16x2.e4m3x2`` is exact; each fp16 pattern's exponent and mantissa then move to bf16's
    fields (value ``e4m3 * 2**-112``) and the exponent is rebiased by 231 where the half is not
    zero (``kperm_gemm``'s form rebiased zero too, to 2**104, wrong where a block's scale is zero
    and its codes are not). Scales are non-negative; NaN is not handled."""
    return gl.inline_asm_elementwise(
        "{ .reg .b16 lo; .reg .b32 h, m, z; cvt.u16.u32 lo, $1; cvt.rn.f16x2.e4m3x2 h, lo; mov.b32 z, 0; "
        "set.ne.u32.f16x2 m, h, z; shr.b32 h, h, 3; and.b32 h, h, 0x0FFF0FFF; and.b32 m, m, 0x73807380; "
        "add.u32 $0, h, m; }", "=r,r", [two], dtype=gl.uint32, is_pure=True, pack=1)


@gluon.constexpr_function
def as_lists(bases):
    """Layout bases as lists of lists: the form layouts come back in from shared-memory loads, so
    that layouts built here compare equal to those (launch constexprs stay hashable tuples)."""
    return [list(b) for b in bases]


@gluon.jit
def pipelined_gemm_kernel(words_ptr, scale_ptr, x_ptr, global_scale_ptr, bias_ptr, y_ptr, partial_ptr, counter_ptr,
                          M, N, K, k_per_split, stride_xm, HAS_BIAS: gl.constexpr, SPLIT: gl.constexpr,
                          NATURAL: gl.constexpr, BN: gl.constexpr,
                          BM: gl.constexpr, WARPS: gl.constexpr, STAGES: gl.constexpr,
                          WORD_REGS: gl.constexpr, TRIP_WORD_REGS: gl.constexpr, WARP_BASES: gl.constexpr,
                          X_REGS: gl.constexpr, X_TRIP_REGS: gl.constexpr, X_WARP_BASES: gl.constexpr):
    """One program: BN weight rows against all of x's rows (BM = 8 or 16 >= M), over K slice
    ``program_id(1)`` (``k_per_split`` wide, a multiple of 256) of SPLIT; split, the slices meet in
    ``partial_ptr`` (fp32 ``[SPLIT, BM, N]``) and ``counter_ptr`` (int32 a column strip, zero between calls).
    NATURAL (v32): the words are ModelOpt's own, so nibbles i and i + 4 (a decoded pair) are elements i
    and i + 4; x's elements are paired the same way in registers (no prepack)."""
    TRIP: gl.constexpr = 256
    mma: gl.constexpr = gl.NVMMADistributedLayout(version=[2, 0], warps_per_cta=[WARPS, 1], instr_shape=[16, 8])
    a_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=mma, k_width=2)
    b_layout: gl.constexpr = gl.DotOperandLayout(operand_index=1, parent=mma, k_width=2)
    # A trip's words [BN, 4 (t), 8]: the thread (g, t) copies and reads words 8t .. 8t + 7 of rows g, g + 8.
    trip_words: gl.constexpr = gl.DistributedLinearLayout(
        reg_bases=as_lists(TRIP_WORD_REGS), lane_bases=[[0, 1, 0], [0, 2, 0], [1, 0, 0], [2, 0, 0], [4, 0, 0]],
        warp_bases=as_lists(WARP_BASES), block_bases=[], shape=[BN, 4, 8])
    # A half's words [BN, 4, 4] (kperm_gemm's layout), and the thread's scale word [BN, 4 (t)].
    half_words: gl.constexpr = gl.DistributedLinearLayout(
        reg_bases=as_lists(WORD_REGS), lane_bases=[[0, 1, 0], [0, 2, 0], [1, 0, 0], [2, 0, 0], [4, 0, 0]],
        warp_bases=as_lists(WARP_BASES), block_bases=[], shape=[BN, 4, 4])
    scale_layout: gl.constexpr = gl.SliceLayout(2, half_words)
    # x's trip [BM, 256] as the MMA reads it: the thread (g, t) holds K 64t .. 64t + 63 of row g (and g + 8).
    x_trip: gl.constexpr = gl.DistributedLinearLayout(
        reg_bases=as_lists(X_TRIP_REGS), lane_bases=[[0, 64], [0, 128], [1, 0], [2, 0], [4, 0]],
        warp_bases=as_lists(X_WARP_BASES), block_bases=[], shape=[BM, TRIP])
    # kperm_gemm's x layout for one half [BM, 128]: K 32t .. 32t + 31 of the half.
    x_half: gl.constexpr = gl.DistributedLinearLayout(
        reg_bases=as_lists(X_REGS), lane_bases=[[0, 32], [0, 64], [1, 0], [2, 0], [4, 0]],
        warp_bases=as_lists(X_WARP_BASES), block_bases=[], shape=[BM, 128])
    # x copied cooperatively, 16 bytes a thread and copy; a warp a row.
    x_copy: gl.constexpr = gl.BlockedLayout(size_per_thread=[1, 8], threads_per_warp=[1, 32],
                                            warps_per_cta=[WARPS, 1], order=[1, 0])
    # The rings: one slot a trip in flight. Layouts are per slot (one rank less than the ring).
    plain_3d: gl.constexpr = gl.SwizzledSharedLayout(vec=1, per_phase=1, max_phase=1, order=[2, 1, 0])
    plain_2d: gl.constexpr = gl.SwizzledSharedLayout(vec=1, per_phase=1, max_phase=1, order=[1, 0])
    x_swizzle: gl.constexpr = gl.SwizzledSharedLayout(vec=8, per_phase=1, max_phase=8, order=[1, 0])
    word_ring = gl.allocate_shared_memory(gl.uint32, [STAGES, BN, 4, 8], plain_3d)
    scale_ring = gl.allocate_shared_memory(gl.uint32, [STAGES, BN, 4], plain_2d)
    x_ring = gl.allocate_shared_memory(gl.bfloat16, [STAGES, BM, TRIP], x_swizzle)

    n0 = gl.program_id(0) * BN
    trip_rows: gl.constexpr = gl.SliceLayout(2, trip_words)
    rows = n0 + gl.arange(0, BN, layout=gl.SliceLayout(1, trip_rows))
    ts = gl.arange(0, 4, layout=gl.SliceLayout(0, trip_rows))
    ws = gl.arange(0, 8, layout=gl.SliceLayout(0, gl.SliceLayout(1, trip_words)))
    word_src = words_ptr + (rows[:, None] * ((K // TRIP) * 32) + 8 * ts[None, :])[:, :, None] + ws[None, None, :]
    rows = n0 + gl.arange(0, BN, layout=gl.SliceLayout(1, scale_layout))
    ts = gl.arange(0, 4, layout=gl.SliceLayout(0, scale_layout))
    scale_src = scale_ptr + rows[:, None] * ((K // TRIP) * 4) + ts[None, :]
    x_rows = gl.arange(0, BM, layout=gl.SliceLayout(1, x_copy))
    x_cols = gl.arange(0, TRIP, layout=gl.SliceLayout(0, x_copy))
    x_src = x_ptr + x_rows[:, None] * stride_xm + x_cols[None, :]
    x_mask = (x_rows < M)[:, None] & (x_cols >= 0)[None, :]
    half_ws = gl.arange(0, 4, layout=gl.SliceLayout(0, gl.SliceLayout(1, half_words)))
    first_block = (half_ws < 2)[None, None, :]

    k_start = gl.program_id(1) * k_per_split
    first_trip = k_start // TRIP
    trips = (gl.minimum(K, k_start + k_per_split) - k_start) // TRIP
    for s in gl.static_range(STAGES - 1):  # the ring's first trips; past the slice, its last trip again
        trip = first_trip + gl.minimum(s, trips - 1)
        async_copy.async_copy_global_to_shared(word_ring.index(s), word_src + trip * 32)
        async_copy.async_copy_global_to_shared(scale_ring.index(s), scale_src + trip * 4)
        async_copy.async_copy_global_to_shared(x_ring.index(s), x_src + trip * TRIP, mask=x_mask)
        async_copy.commit_group()

    acc = gl.zeros([BN, BM], gl.float32, layout=mma)
    for i in range(trips):
        async_copy.wait_group(STAGES - 2)  # trip i has landed (this thread's copies)
        gl.thread_barrier()  # everyone's copies of trip i visible; everyone done with trip i - 1's slot
        ahead = i + STAGES - 1
        trip = first_trip + gl.minimum(ahead, trips - 1)
        slot = ahead % STAGES
        async_copy.async_copy_global_to_shared(word_ring.index(slot), word_src + trip * 32)
        async_copy.async_copy_global_to_shared(scale_ring.index(slot), scale_src + trip * 4)
        async_copy.async_copy_global_to_shared(x_ring.index(slot), x_src + trip * TRIP, mask=x_mask)
        async_copy.commit_group()

        slot = i % STAGES
        scale_word = scale_ring.index(slot).load(scale_layout)  # blocks 4t .. 4t + 3 of each row
        x_both = x_ring.index(slot).load(x_trip)
        x_both = gl.permute(gl.reshape(x_both, [BM, 4, 2, 32]), [0, 1, 3, 2])  # [m, t, j, h]
        x_low, x_high = gl.split(x_both)
        for h in gl.static_range(2):
            words = word_ring.index(slot).slice(4 * h, 4, dim=2).load(half_words)
            two = e4m3_pair_to_bf16((scale_word >> (16 * h)) & 0xFFFF)  # blocks 4t + 2h, 4t + 2h + 1
            w = a_tile(words, two, first_block, BN, a_layout)
            x = x_low if h == 0 else x_high
            x = gl.convert_layout(gl.reshape(x, [BM, 128]), x_half, assert_trivial=True)
            if NATURAL:  # [m, t, w, s, a, b]: K 32t + 8w + 4s + 2a + b, paired as the codes are
                x = gl.permute(gl.reshape(x, [BM, 4, 4, 2, 2, 2]), [2, 4, 5, 1, 3, 0])
                x = gl.convert_layout(gl.reshape(x, [128, BM]), b_layout)  # moves within each thread
            else:  # [m, t, w, a, b, s]: K 32t + 8w + 4a + 2b + s
                x = gl.permute(gl.reshape(x, [BM, 4, 4, 2, 2, 2]), [2, 3, 4, 1, 5, 0])
                x = gl.convert_layout(gl.reshape(x, [128, BM]), b_layout, assert_trivial=True)
            acc = mma_v2(w, x, acc)
    async_copy.wait_group(0)
    if SPLIT == 1:
        store_output(acc, n0, global_scale_ptr, bias_ptr, y_ptr, M, N, HAS_BIAS, BN, BM, mma)
    else:
        sum_slices(acc, n0, partial_ptr, counter_ptr, global_scale_ptr, bias_ptr, y_ptr, M, N, HAS_BIAS, BN, BM,
                   mma, SPLIT)


@gluon.jit
def sum_slices(acc, n0, partial_ptr, counter_ptr, global_scale_ptr, bias_ptr, y_ptr, M, N, HAS_BIAS: gl.constexpr,
               BN: gl.constexpr, BM: gl.constexpr, mma: gl.constexpr, SPLIT: gl.constexpr):
    """Store this slice's sums; the column strip's last slice to arrive adds all SPLIT of them (read
    from L2: L1 is not coherent with other SMs' stores), writes y and sets the counter back to zero.
    The barrier puts every thread's stores before the ticket, whose release hands them to the
    last slice's acquire."""
    offsets = (gl.arange(0, BM, layout=gl.SliceLayout(0, mma))[None, :] * N
               + (n0 + gl.arange(0, BN, layout=gl.SliceLayout(1, mma)))[:, None])
    gl.store(partial_ptr + gl.program_id(1) * (BM * N) + offsets, acc)
    gl.thread_barrier()
    ticket = gl.atomic_add(counter_ptr + gl.program_id(0), 1, sem="acq_rel")
    if ticket == SPLIT - 1:
        total = gl.zeros([BN, BM], gl.float32, layout=mma)
        for s in gl.static_range(SPLIT):
            total += gl.load(partial_ptr + s * (BM * N) + offsets, cache_modifier=".cg")
        gl.store(counter_ptr + gl.program_id(0), 0)
        store_output(total, n0, global_scale_ptr, bias_ptr, y_ptr, M, N, HAS_BIAS, BN, BM, mma)


def constexprs(bn: int, warps: int, bm: int, stages: int) -> dict:
    """``kperm_gemm``'s layout bases for a half, the same for a whole trip (a thread's 8 words; its
    64 neighbouring K of x), and the ring's depth."""
    base = layout_constexprs(bn, warps, bm)
    words, x = base["WORD_REGS"], base["X_REGS"]
    return {**base, "STAGES": stages, "TRIP_WORD_REGS": words[:2] + ((0, 0, 4),) + words[2:],
            "X_TRIP_REGS": x[:5] + ((0, 32),) + x[5:]}


_workspaces: dict = {}
"""(device, split, BM, N, BN) -> (fp32 partial sums, int32 counters): made once, before any graph capture."""


def workspace(device: torch.device, split: int, bm: int, n: int, bn: int) -> tuple[torch.Tensor, torch.Tensor]:
    key = (device, split, bm, n, bn)
    if key not in _workspaces:
        _workspaces[key] = (torch.empty(split, bm, n, dtype=torch.float32, device=device),
                            torch.zeros(n // bn, dtype=torch.int32, device=device))
    return _workspaces[key]


def pipelined_gemm(x: torch.Tensor, words: torch.Tensor, block_scale: torch.Tensor, global_scale: torch.Tensor,
                   bias: torch.Tensor | None, bn: int = 64, warps: int = 4, split: int = 1,
                   stages: int = 4, natural: bool = False) -> torch.Tensor:
    """Launch on ``prepack_nibbles`` words (``natural``: ModelOpt's packed codes viewed as int32) and the
    checkpoint's E4M3 scales; x ``[M, K]`` bf16, M <= 16, K a multiple of 256. ``split`` slices K
    (rounded to whole trips; fewer slices if K has too few)."""
    m, k = x.shape
    n = words.shape[0]
    if m > 16 or n % bn or k % TRIP or x.stride(1) != 1 or x.stride(0) % 8:
        raise ValueError(f"pipelined_gemm: needs M <= 16, N % {bn} == 0, K % {TRIP} == 0 and 16-byte rows of x")
    trips = k // TRIP
    k_per_split = -(-trips // split) * TRIP
    split = -(-k // k_per_split)
    bm = 8 if m <= 8 else 16
    partial, counter = workspace(x.device, split, bm, n, bn) if split > 1 else (x, x)
    y = torch.empty(m, n, dtype=x.dtype, device=x.device)
    pipelined_gemm_kernel[(n // bn, split)](
        words.view(torch.uint32), block_scale.view(torch.uint32), x, global_scale, bias if bias is not None else x,
        y, partial, counter, m, n, k, k_per_split, x.stride(0), HAS_BIAS=bias is not None, SPLIT=split,
        NATURAL=natural, BN=bn,
        WARPS=warps, **constexprs(bn, warps, bm, stages), num_warps=warps)
    return y


CONFIGS = ((64, 4, 2), (64, 4, 3), (64, 4, 4), (64, 4, 6), (128, 4, 4), (128, 8, 4))
"""(BN, warps, stages) compiled and timed."""


def main() -> None:
    """Compile every config for sm_90 (split form) and print its size; natural codes at 64 rows, 4 warps."""
    sys.path.insert(0, str(HERE.parent / "gluon_s17"))
    from compile_probe import report
    forms = [(False, bm, *c) for bm in (8, 16) for c in CONFIGS]
    forms += [(True, bm, 64, 4, stages) for bm in (8, 16) for stages in (2, 3, 4)]
    for natural, bm, bn, warps, stages in forms:
        c = {"HAS_BIAS": True, "SPLIT": 2, "NATURAL": natural, "BN": bn, "WARPS": warps,
             **constexprs(bn, warps, bm, stages)}
        signature = {"words_ptr": "*u32", "scale_ptr": "*u32", "x_ptr": "*bf16", "global_scale_ptr": "*fp32",
                     "bias_ptr": "*bf16", "y_ptr": "*bf16", "partial_ptr": "*fp32", "counter_ptr": "*i32",
                     "M": "i32", "N": "i32", "K": "i32", "k_per_split": "i32", "stride_xm": "i32",
                     **dict.fromkeys(c, "constexpr")}
        label = f"{'natural codes, ' if natural else ''}BM {bm}, BN {bn}, {warps} warps, {stages} stages"
        report(label, pipelined_gemm_kernel, signature, c, warps, bn * TRIP)


if __name__ == "__main__":
    main()
