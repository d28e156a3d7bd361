"""Prepared for the next GPU session: the swapped-operand fused GEMM against cuBLAS bf16 and the
library's tuned W4A16 at the FLUX shapes with M >= 512. GPU time, L2 flushed; about 3 minutes."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import triton  # noqa: E402

from flux_shapes import FLUX_1024  # noqa: E402
from nvfp4_triton import quantize  # noqa: E402
from nvfp4_triton.autotune import benchmark_ms, m_bucket  # noqa: E402
from nvfp4_triton.gemm import tuner, w4a16_gemm  # noqa: E402
from nvfp4_triton.tiling import describe  # noqa: E402
from swapped import swapped_gemm_kernel  # noqa: E402

CONFIGS = [(128, 128, 64, 8, 3), (128, 256, 64, 8, 3), (64, 256, 64, 4, 3), (128, 128, 128, 8, 3),
           (256, 128, 64, 8, 3), (64, 128, 64, 4, 4), (128, 64, 64, 4, 4)]  # BN, BM, BK, warps, stages


def main():
    dev = torch.device("cuda")
    print(torch.cuda.get_device_name(), torch.__version__, triton.__version__, flush=True)
    rows = []
    for label, m, n, k, _ in FLUX_1024:
        if m < 512:
            continue
        q = quantize(torch.randn(n, k, device=dev))
        x = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
        wb = q.dequantize(torch.bfloat16)
        ref = F.linear(x.float(), q.dequantize(torch.float32))
        cublas = benchmark_ms(lambda: F.linear(x, wb))
        ours = benchmark_ms(lambda: w4a16_gemm(x, q.packed, q.block_scale, q.global_scale, None))
        chosen = describe(tuner.lookup((x.device.index, x.dtype, m_bucket(m), n, k, False)))
        best = (float("inf"), None)
        for bn, bm, bk, w, s in CONFIGS:
            y = torch.full((m, n), float("nan"), device=dev, dtype=torch.bfloat16)
            grid = (triton.cdiv(m, bm) * triton.cdiv(n, bn),)

            def run(y=y, grid=grid, bn=bn, bm=bm, bk=bk, w=w, s=s):
                swapped_gemm_kernel[grid](x, q.packed, q.block_scale.view(torch.uint8), q.global_scale, y, y,
                                          m, n, k, x.stride(0), 1, y.stride(0), 1, HAS_BIAS=False, GELU_TANH=False,
                                          DOT_F32=False, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, GROUP_N=8,
                                          num_warps=w, num_stages=s)
            try:
                run()
                err = ((y.float() - ref).norm() / ref.norm()).item()
                if not err < 1e-2:
                    print(f"  {label} {bn}x{bm}x{bk}: WRONG, rel err {err:.2e}", flush=True)
                    continue
                best = min(best, (benchmark_ms(run), f"{bn}x{bm}x{bk} w{w} s{s}"))
            except triton.runtime.errors.OutOfResources as e:
                print(f"  {label} {bn}x{bm}x{bk}: {e}", flush=True)
        print(f"{label:34} M={m:5} N={n:6} K={k:6} cuBLAS {cublas:.4f} ms | library {cublas / ours:.3f}x ({chosen}) | "
              f"swapped {cublas / best[0]:.3f}x ({best[1]})", flush=True)
        rows.append(dict(label=label, M=m, N=n, K=k, cublas_ms=cublas, library_ms=ours, library=chosen,
                         swapped_ms=best[0], swapped=best[1]))
    json.dump(rows, open(os.path.join(os.environ.get("OUT", "/tmp"), "swapped.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
