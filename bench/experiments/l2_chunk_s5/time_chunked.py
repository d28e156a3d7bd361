"""Does two-pass get faster when the dense weight never leaves L2?

Two-pass writes the whole bf16 weight to HBM, then cuBLAS reads it back. Here the weight is
dequantized ``chunk`` output rows at a time into a buffer small enough to stay in the H200's
50 MB L2, and each chunk's GEMM runs straight after, writing its columns of y. Prints, per FLUX
shape with M >= 512, the ratio to cuBLAS bf16 of the library's tuned strategy and of each chunk
size. GPU time (CUDA-graph replays), L2 flushed before each call.
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import triton  # noqa: E402

from flux_shapes import FLUX_1024  # noqa: E402
from nvfp4_triton import quantize  # noqa: E402
from nvfp4_triton.autotune import benchmark_ms, m_bucket  # noqa: E402
from nvfp4_triton.gemm import dequantize_into, tuner, w4a16_gemm  # noqa: E402
from nvfp4_triton.tiling import TwoPassConfig, describe  # noqa: E402

CHUNKS = (512, 768, 1024, 1536, 2048, 3072, 4096, 6144)


def chunked(x, q, buf, chunk, cfg, y):
    n = q.packed.shape[0]
    scale = q.block_scale.view(torch.uint8)
    for n0 in range(0, n, chunk):
        n1 = min(n, n0 + chunk)
        w = buf[: n1 - n0]
        dequantize_into(w, q.packed[n0:n1], scale[n0:n1], q.global_scale, cfg)
        torch.mm(x, w.t(), out=y[:, n0:n1])
    return y


def main():
    dev = torch.device("cuda")
    print(torch.cuda.get_device_name(), torch.__version__, triton.__version__, flush=True)
    rows = []
    cfg = TwoPassConfig()
    for label, m, n, k, calls in FLUX_1024:
        if m < 512:
            continue
        q = quantize(torch.randn(n, k, device=dev))
        x = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
        wb = q.dequantize(torch.bfloat16)
        ref = F.linear(x, wb)
        cublas = benchmark_ms(lambda: F.linear(x, wb))
        ours = benchmark_ms(lambda: w4a16_gemm(x, q.packed, q.block_scale, q.global_scale, None))
        chosen = describe(tuner.lookup((x.device.index, x.dtype, m_bucket(m), n, k, False)))
        row = dict(label=label, M=m, N=n, K=k, calls=calls, cublas_ms=cublas, library_ms=ours, library=chosen)
        line = f"{label:34} M={m:5} N={n:6} K={k:6} cuBLAS {cublas * 1e3:6.1f} us | library {cublas / ours:.3f}x"
        for chunk in CHUNKS:
            if chunk > n:
                continue
            buf = torch.empty(chunk, k, device=dev, dtype=torch.bfloat16)
            y = torch.full((m, n), float("nan"), device=dev, dtype=torch.bfloat16)
            chunked(x, q, buf, chunk, cfg, y)
            if not torch.equal(y, ref):
                err = ((y.double() - ref.double()).norm() / ref.double().norm()).item()
                line += f" | c{chunk}: differs {err:.1e}"
            ms = benchmark_ms(lambda: chunked(x, q, buf, chunk, cfg, y))
            row[f"chunk{chunk}_ms"] = ms
            line += f" | c{chunk} {cublas / ms:.3f}x"
        print(line, flush=True)
        rows.append(row)
    json.dump(rows, open(os.path.join(os.environ.get("OUT", "/tmp"), "chunked.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
