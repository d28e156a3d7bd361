"""Compile a library kernel for a GPU architecture on any machine, and say what its code does.

Triton compiles to TTGIR, PTX and a cubin without a GPU, and ships ``cuobjdump``; so a kernel's
code can be read before any GPU time is spent. Per kernel and config this prints:
- registers, local-memory stack (spills), shared memory;
- TTGIR layout conversions and shared-memory allocations (a tile passing through shared memory);
- barriers (``BAR``) and MMA instructions (``HGMMA`` = wgmma, ``HMMA`` = mma.sync) in the SASS;
- the instruction count of the innermost loop, and per weight element where the kernel streams one;
- the ten most frequent SASS opcodes.

Arguments are specialized as Triton specializes them at a launch with the given shape: pointers
16-byte aligned, integers equal to 1 made constants, multiples of 16 marked so.

    python bench/kernel_asm.py gemv --shape 1 18432 3072 --config 1 32 512 4
    python bench/kernel_asm.py fused --shape 4096 3072 3072 --config 128 128 64 8 4 4 --dump /tmp/asm
    python bench/kernel_asm.py fp8-quant --shape 4608 1 15360 --config 16384 8
    python bench/kernel_asm.py fp8-operands --shape 512 3072 12288 --config 16 512 4
    python bench/kernel_asm.py ring --shape 8 18432 3072 --config 64 4 3 2
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.experimental.gluon._runtime import GluonASTSource, GluonJITFunction
from triton.runtime.jit import mangle_type

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nvfp4_triton import wgmma  # noqa: E402
from nvfp4_triton.act_quant import row_quant_plan  # noqa: E402
from nvfp4_triton.gemm import k_slices  # noqa: E402
from nvfp4_triton.kernels._act_quant import fp8_row_quant_kernel, nvfp4_act_quant_kernel  # noqa: E402
from nvfp4_triton.kernels._dequant import nvfp4_dequant_kernel  # noqa: E402
from nvfp4_triton.kernels._fp8_operands import fp8_operands_kernel  # noqa: E402
from nvfp4_triton.kernels._w4a16_gemm import w4a16_gemm_kernel  # noqa: E402
from nvfp4_triton.kernels._w4a16_gemv import w4a16_gemv_kernel  # noqa: E402
from nvfp4_triton.kernels._w4a16_ring import TRIP, w4a16_ring_kernel  # noqa: E402
from nvfp4_triton.kernels._w4a16_wgmma import w4a16_wgmma_kernel  # noqa: E402
from nvfp4_triton.ring import columns, layouts  # noqa: E402


def _fused(m, n, k, cfg):
    bm, bn, bk, warps, stages, group_m, split_k = (cfg + [128, 128, 64, 8, 3, 8, 1][len(cfg):])
    k_per_split, split = k_slices(k, bk, split_k)
    args = dict(x_ptr="*bf16", words_ptr="*i64", scale_ptr="*u8", global_scale_ptr="*fp32", bias_ptr="*bf16",
                y_ptr="*bf16", partial_ptr="*fp32", counter_ptr="*i32", M=m, N=n, K=k, k_per_split=k_per_split,
                stride_xm=k, stride_xk=1, stride_ym=n, stride_yn=1, HAS_BIAS=True, GELU_TANH=False, DOT_F32=False,
                PACKED_MUL=True, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, GROUP_M=group_m, SPLIT_K=split)
    return w4a16_gemm_kernel, args, warps, stages, bn * bk


def _gemv(m, n, k, cfg):
    bm, bn, bk, warps, split_k = (cfg + [1, 32, 512, 4, 1][len(cfg):])
    k_per_split, split = k_slices(k, bk, split_k)
    args = dict(x_ptr="*i64", words_ptr="*i64", scale_ptr="*u8", global_scale_ptr="*fp32", bias_ptr="*bf16",
                y_ptr="*bf16", partial_ptr="*fp32", counter_ptr="*i32", M=m, N=n, K=k, blocks_per_row=k // 16,
                k_per_split=k_per_split, stride_xm=k // 4, stride_ym=n, stride_yn=1, X_BF16=True,
                HAS_BIAS=True, GELU_TANH=False, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, SPLIT_K=split)
    return w4a16_gemv_kernel, args, warps, 1, bn * bk


def _ring(m, n, k, cfg):
    bn, warps, stages, split_k = (cfg + [64, 4, 3, 1][len(cfg):])
    k_per_split, split = k_slices(k, TRIP, split_k)
    bm = columns(m)
    args = dict(words_ptr="*i32", scale_ptr="*i32", x_ptr="*bf16", global_scale_ptr="*fp32", bias_ptr="*bf16",
                y_ptr="*bf16", partial_ptr="*fp32", counter_ptr="*i32", M=m, N=n, K=k, k_per_split=k_per_split,
                stride_xm=k, stride_ym=n, stride_yn=1, HAS_BIAS=True, GELU_TANH=False, SPLIT=split, BN=bn, BM=bm,
                WARPS=warps, STAGES=stages, **layouts(bn, warps, bm))
    return w4a16_ring_kernel, args, warps, 1, bn * TRIP


def _wgmma(m, n, k, cfg):
    bm, stages = (cfg + [256, 4][len(cfg):])
    x = torch.empty(m, k, dtype=torch.bfloat16)  # on the CPU: only the descriptors' types are needed
    words = torch.empty(n, k // 8, dtype=torch.int32)
    args = dict(scale_ptr="*i32", x_desc=mangle_type(wgmma.x_descriptor(x, bm)),
                code_desc=mangle_type(wgmma.code_descriptor(words)), global_scale_ptr="*fp32", bias_ptr="*bf16",
                y_ptr="*bf16", M=m, N=n, K=k, stride_ym=n, stride_yn=1, HAS_BIAS=True, GELU_TANH=False, BM=bm,
                STAGES=stages)
    args["maxnreg"] = wgmma.REGISTERS  # a launch option, which compile_kernel takes from args
    return w4a16_wgmma_kernel, args, 8, 1, wgmma.BLOCK_N * wgmma.STEP  # the consumers' loop: one step


def _dequant(out_type):
    def spec(m, n, k, cfg):
        bn, bk, warps = (cfg + [16, 512, 4][len(cfg):])
        per_row = out_type == "*u8"
        args = dict(packed_ptr="*u8", scale_ptr="*u8", factor_ptr="*fp32", out_ptr=out_type, N=n, K=k,
                    PER_ROW=per_row, BIT_MATH=False, BLOCK_N=bn, BLOCK_K=bk)
        return nvfp4_dequant_kernel, args, warps, 1, bn * bk
    return spec


def _fp8_quant(m, n, k, cfg):
    block_k, warps = (cfg + [1 << (k - 1).bit_length(), 8][len(cfg):])
    args = dict(x_ptr="*bf16", xq_ptr="*u8", scale_ptr="*fp32", K=k, stride_xm=k, BIT_MATH=False, BLOCK_K=block_k,
                ONE_TILE=k <= block_k)
    return fp8_row_quant_kernel, args, warps, 1, block_k


def _nvfp4_quant(m, n, k, cfg):
    bm, bk, warps = (cfg + [16, 128, 4][len(cfg):])
    args = dict(x_ptr="*bf16", input_scale_ptr="*fp32", xq_ptr="*bf16", packed_ptr="*u8", scale_ptr="*u8", M=m,
                K=k, stride_xm=k, WRITE_CODES=True, BLOCK_M=bm, BLOCK_K=bk)
    return nvfp4_act_quant_kernel, args, warps, 1, bm * bk


def _fp8_operands(m, n, k, cfg):
    bn, bk, warps = (cfg + [16, 512, 4][len(cfg):])
    row_tile, one_tile, row_warps = row_quant_plan(k)
    args = dict(x_ptr="*bf16", xq_ptr="*u8", row_scale_ptr="*fp32", packed_ptr="*u8", scale_ptr="*u8",
                multiplier_ptr="*fp32", w8_ptr="*u8", M=m, N=n, K=k, stride_xm=k, BIT_MATH=False,
                ROW_TILE=row_tile, ONE_TILE=one_tile, BLOCK_N=bn, BLOCK_K=bk)
    return fp8_operands_kernel, args, max(warps, row_warps), 1, bn * bk  # the warps fp8_operands launches with


KERNELS = {"fused": _fused, "gemv": _gemv, "ring": _ring, "wgmma": _wgmma, "dequant": _dequant("*bf16"),
           "dequant-fp8": _dequant("*u8"),
           "fp8-quant": _fp8_quant, "fp8-operands": _fp8_operands, "nvfp4-quant": _nvfp4_quant}


def compile_kernel(fn, args: dict, warps: int, stages: int, arch: int, maxnreg: int | None = None):
    """Compile ``fn`` with ``args`` (pointer dtypes as strings, ints as values, constexprs by annotation);
    ``maxnreg`` (or an ``args`` entry of that name) caps registers a thread (warp-specialized kernels
    split them between partitions)."""
    args = dict(args)
    maxnreg = args.pop("maxnreg", maxnreg)
    constexpr_names = {p.name for p in fn.params if p.is_constexpr}
    unspecialized = set(fn.do_not_specialize)  # parameter names, as the library's kernels give them
    signature, constexprs, attrs = {}, {}, {}
    for index, name in enumerate(fn.arg_names):
        value = args[name]
        if name in constexpr_names:
            signature[name], constexprs[name] = "constexpr", value
        elif isinstance(value, str) and value.startswith("tensordesc"):
            signature[name] = value  # a TMA descriptor, as ``triton.runtime.jit.mangle_type`` names it
        elif isinstance(value, str):
            signature[name] = value
            attrs[(index,)] = [["tt.divisibility", 16]]
        elif value == 1 and name not in unspecialized:
            signature[name], constexprs[name] = "constexpr", 1
        else:
            signature[name] = "i32"
            if value % 16 == 0 and name not in unspecialized:
                attrs[(index,)] = [["tt.divisibility", 16]]
    source_type = GluonASTSource if isinstance(fn, GluonJITFunction) else triton.compiler.ASTSource
    source = source_type(fn=fn, signature=signature, constexprs=constexprs, attrs=attrs)
    options = {"num_warps": warps, "num_stages": stages}
    if maxnreg is not None:
        options["maxnreg"] = maxnreg
    return triton.compile(source, target=GPUTarget("cuda", arch, 32), options=options)


def _tool(name: str) -> str:
    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)


def sass_of(cubin: bytes) -> tuple[list[str], str]:
    """The SASS instruction lines of a cubin, and cuobjdump's resource-usage text."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        sass = subprocess.run([_tool("cuobjdump"), "-sass", f.name], capture_output=True, text=True, check=True).stdout
        usage = subprocess.run([_tool("cuobjdump"), "-res-usage", f.name], capture_output=True, text=True,
                               check=True).stdout
    return [line for line in sass.splitlines() if re.match(r"\s+/\*[0-9a-f]{4}\*/", line)], usage


def _opcode(line: str) -> str:
    words = line.split("*/", 1)[1].split()
    return (words[1] if words[0].startswith("@") else words[0]).split(".")[0].rstrip(";")


def innermost_loop(lines: list[str]) -> int:
    """Instructions in the largest loop that holds no other loop (0 if none): the K loop. A loop is
    a backward branch's span. (The shortest span would do for one loop nest; a split kernel's
    last program also loops over M to sum the slices, after the K loop.)"""
    spans = []
    for line in lines:
        here = int(re.match(r"\s+/\*([0-9a-f]{4})\*/", line).group(1), 16)
        target = re.search(r"BRA\s+0x([0-9a-f]+)", line)
        if target and int(target.group(1), 16) < here:
            spans.append((int(target.group(1), 16), here))
    innermost = [(start, end) for start, end in spans
                 if not any((s, e) != (start, end) and start <= s and e <= end for s, e in spans)]
    return max(((end - start) // 16 + 1 for start, end in innermost), default=0)


def describe(kernel: str, shape: tuple[int, int, int], cfg: list[int], arch: int, dump: Path | None) -> None:
    fn, args, warps, stages, tile_elements = KERNELS[kernel](*shape, cfg)
    compiled = compile_kernel(fn, args, warps, stages, arch)
    lines, usage = sass_of(compiled.asm["cubin"])
    regs = re.search(r"REG:(\d+)", usage).group(1)
    stack = re.search(r"STACK:(\d+)", usage).group(1)
    ops = collections.Counter(_opcode(line) for line in lines)
    ttgir = compiled.asm["ttgir"]
    loop = innermost_loop(lines)
    per_thread = tile_elements / (32 * warps)
    label = " ".join(f"{k}={v}" for k, v in args.items() if k.isupper() and k.startswith(("BLOCK", "GROUP")))
    print(f"{kernel} M,N,K={shape} {label} warps={warps} stages={stages} sm_{arch}")
    print(f"  registers {regs}, stack {stack} B, shared {compiled.metadata.shared} B")
    print(f"  TTGIR: {ttgir.count('ttg.convert_layout')} layout conversions, {ttgir.count('ttg.local_alloc')} "
          f"shared allocations; SASS: {ops['BAR']} BAR, {ops['HGMMA']} HGMMA, {ops['HMMA']} HMMA, "
          f"{len(lines)} instructions")
    if loop:
        print(f"  innermost loop: {loop} instructions per thread per trip, "
              f"{loop / per_thread:.2f} per weight element of the tile")
    print("  top opcodes:", ", ".join(f"{op} {count}" for op, count in ops.most_common(10)))
    if dump:
        dump.mkdir(parents=True, exist_ok=True)
        for ext in ("ttgir", "ptx"):
            (dump / f"{kernel}.{ext}").write_text(compiled.asm[ext])
        (dump / f"{kernel}.sass").write_text("\n".join(lines))
        print(f"  wrote {dump}/{kernel}.{{ttgir,ptx,sass}}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("kernel", choices=sorted(KERNELS))
    parser.add_argument("--shape", type=int, nargs=3, default=[1, 18432, 3072], metavar=("M", "N", "K"))
    parser.add_argument("--config", type=int, nargs="*", default=[],
                        help="fused: BM BN BK warps stages group_m split_k; gemv: BM BN BK warps split_k; "
                             "nvfp4-quant: BM BK warps; dequant, "
                             "fp8-operands: BN BK warps; fp8-quant: BLOCK_K warps")
    parser.add_argument("--arch", type=int, default=90, help="compute capability as an integer (90 = Hopper)")
    parser.add_argument("--dump", type=Path, help="write the TTGIR, PTX and SASS into this folder")
    opts = parser.parse_args(argv)
    describe(opts.kernel, tuple(opts.shape), opts.config, opts.arch, opts.dump)
    return 0


if __name__ == "__main__":
    sys.exit(main())
