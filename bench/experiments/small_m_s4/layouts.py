"""Prepared for the next GPU session: do the layout fixes found in the SASS pay on the GPU?

1. GEMV: the library kernel (36 barriers per K step) against ``gemv13.py`` (none), at M = 1, 2.
2. Dequantize to bf16: the library kernel against the same kernel with its packed-code offsets
   capped at 4-byte contiguity, which lets the output tile keep its layout up to the store
   (SASS: 7 barriers -> 1). The variant is built from the library's source, not copied.
Prints ratios to cuBLAS bf16 (GEMV) and GB/s (dequantize); GPU time, L2 flushed.
"""
import inspect
import os
import sys
import textwrap

sys.path.insert(0, os.path.dirname(__file__))
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import triton  # noqa: E402

from gemv13 import gemv13_kernel  # noqa: E402
from nvfp4_triton import quantize  # noqa: E402
from nvfp4_triton.autotune import benchmark_ms  # noqa: E402
from nvfp4_triton.kernels import _dequant  # noqa: E402
from nvfp4_triton.kernels._w4a16_gemv import w4a16_gemv_kernel  # noqa: E402


def hinted_dequant():
    """The library dequantize kernel with ``offs_kh`` capped at 4-byte contiguity for 2-byte outputs."""
    source = textwrap.dedent(inspect.getsource(_dequant.nvfp4_dequant_kernel.fn))
    line = "    offs_kh = k0 // 2 + tl.arange(0, BLOCK_K // 2)\n"
    assert line in source
    source = source.replace(line, line + "    if out_ptr.dtype.element_ty != tl.uint8:\n"
                                         "        offs_kh = tl.max_contiguous(offs_kh, 4)\n")
    source = source.replace("def nvfp4_dequant_kernel(", "def hinted_dequant_kernel(").split("\n", 1)[1]
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "hinted_dequant.py")
    with open(path, "w") as f:  # Triton's JIT reads a kernel's source from its file
        f.write("import triton\nimport triton.language as tl\n"
                "from nvfp4_triton.kernels._dequant import to_e4m3_bits, unpack_block\n\n\n@triton.jit\n" + source)
    sys.path.insert(0, os.path.dirname(path))
    return __import__("hinted_dequant").hinted_dequant_kernel


def main():
    dev = torch.device("cuda")
    print(torch.cuda.get_device_name(), torch.__version__, triton.__version__, flush=True)
    hinted = hinted_dequant()
    for n, k in [(18432, 3072), (9216, 3072), (12288, 3072), (3072, 12288)]:
        q = quantize(torch.randn(n, k, device=dev))
        wb = q.dequantize(torch.bfloat16)
        sb = q.block_scale.view(torch.uint8)
        words = q.packed.view(torch.int64)
        ref_w = q.dequantize(torch.float32).to(torch.bfloat16)
        for m in (1, 2):
            x = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
            ref = x.double() @ q.dequantize(torch.float64).T
            cublas = benchmark_ms(lambda: F.linear(x, wb))
            line = f"{n:6} {k:6} M={m} cuBLAS {cublas * 1e3:6.1f} us"
            for name, kern in (("library", w4a16_gemv_kernel), ("gemv13", gemv13_kernel)):
                best = None
                for bn, bk, w in [(16, 512, 4), (32, 512, 4), (32, 256, 4), (64, 256, 4), (64, 512, 8)]:
                    y = torch.full((m, n), float("nan"), device=dev, dtype=torch.bfloat16)
                    grid = (triton.cdiv(n, bn),)

                    def run(kern=kern, bn=bn, bk=bk, w=w, y=y, grid=grid):
                        kern[grid](x, words, sb, q.global_scale, y, y, m, n, k, k // 16, x.stride(0), 1, y.stride(0), 1,
                                   HAS_BIAS=False, GELU_TANH=False, BLOCK_M=m if name == "library" else 1,
                                   BLOCK_N=bn, BLOCK_K=bk, num_warps=w)
                    run()
                    err = ((y.double() - ref).norm() / ref.norm()).item()
                    if not err < 1e-2:
                        print(f"  {name} {bn}x{bk}w{w}: WRONG, rel err {err:.2e}", flush=True)
                        continue
                    ms = benchmark_ms(run)
                    best = min(best or (ms, ""), (ms, f"{bn}x{bk}w{w}"))
                line += f" | {name} {cublas / best[0]:.2f}x {best[1]}"
            print(line, flush=True)
        out = torch.empty(n, k, device=dev, dtype=torch.bfloat16)
        line = f"{n:6} {k:6} dequantize bf16"
        for name, kern in (("library", _dequant.nvfp4_dequant_kernel), ("hinted", hinted)):
            for bn, bk in [(16, 512), (32, 256)]:
                grid = (triton.cdiv(n, bn), triton.cdiv(k, bk))

                def run(kern=kern, grid=grid, bn=bn, bk=bk):
                    kern[grid](q.packed, sb, q.global_scale, out, n, k, PER_ROW=False, BIT_MATH=False,
                               BLOCK_N=bn, BLOCK_K=bk, num_warps=4)
                run()
                assert torch.equal(out, ref_w), name
                ms = benchmark_ms(run)
                gbps = (q.packed.numel() + sb.numel() + out.numel() * 2) / ms / 1e6
                line += f" | {name} {bn}x{bk} {ms * 1e3:5.1f} us {gbps:5.0f} GB/s"
        print(line, flush=True)


if __name__ == "__main__":
    main()
