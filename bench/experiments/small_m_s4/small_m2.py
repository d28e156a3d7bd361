"""Session-4 experiment: the split-K GEMV (gemv11) with its workspace zeroing and finalize, against cuBLAS bf16 (bench/NOTES.md, v8)."""
import json, os, sys, time
sys.path.insert(0, os.path.dirname(__file__))
import torch, triton
import torch.nn.functional as F
from nvfp4_triton import quantize
from nvfp4_triton.autotune import benchmark_ms
from gemv11 import gemv11_kernel
dev = torch.device("cuda")
x0 = torch.randn(4096, 4096, device=dev); t = time.time()
while time.time() - t < 1.5: x0 @ x0
copy_gbps = 4118
rows = []
for n, k in [(18432, 3072), (9216, 3072), (12288, 3072), (3072, 12288)]:
    q = quantize(torch.randn(n, k, device=dev)); wb = q.dequantize(torch.bfloat16)
    sb = q.block_scale.view(torch.uint8); words = q.packed.view(torch.int64); nvb = q.packed.numel() + sb.numel()
    for m in (1, 2, 4, 8, 16):
        x = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
        ref = x.double() @ q.dequantize(torch.float64).T
        cub = benchmark_ms(lambda: F.linear(x, wb))
        best = {}
        for bm in sorted({1, 2, 4, 8, 16} & set(range(1, m + 1))):
            for bn, bk, w in [(16, 256, 4), (32, 256, 4), (32, 512, 4), (64, 256, 4), (64, 512, 8), (16, 512, 4), (128, 256, 8), (32, 1024, 8), (64, 1024, 8)]:
                if bm * bn * (bk // 16) > 16384: continue
                ws = torch.empty(m, n, device=dev, dtype=torch.float32)
                grid = (triton.cdiv(n, bn), triton.cdiv(k, bk))
                def kern(): gemv11_kernel[grid](x, words, sb, ws, m, n, k, k // 16, k // 16, x.stride(0), BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, num_warps=w)
                def full():
                    ws.zero_(); kern(); return (ws * q.global_scale).to(torch.bfloat16)
                try:
                    y = full(); torch.cuda.synchronize()
                    e = ((y.double() - ref).norm() / ref.norm()).item()
                    assert e < 1e-2, e
                    ms_k = benchmark_ms(lambda: (ws.zero_(), kern()))
                    ms_f = benchmark_ms(full)
                except Exception as ex:
                    print(f"  {n}x{k} M={m} {bm}x{bn}x{bk}w{w}: {type(ex).__name__} {str(ex)[:80]}", flush=True); continue
                lab = f"{bm}x{bn}x{bk}w{w}"
                if "k" not in best or ms_k < best["k"][1]: best["k"] = (lab, ms_k)
                if "f" not in best or ms_f < best["f"][1]: best["f"] = (lab, ms_f)
        print(f"{n:6} {k:6} M={m:2} cublas {cub*1e3:6.1f}us | zero+kernel {cub/best['k'][1]:5.2f}x {nvb/best['k'][1]/1e6/copy_gbps*100:4.0f}% {best['k'][0]} | +finalize {cub/best['f'][1]:5.2f}x {best['f'][0]}", flush=True)
        rows.append({"N": n, "K": k, "M": m, "cublas": cub, "best": best})
json.dump(rows, open(os.path.join(os.environ.get("OUT", "/tmp"), "small_m2.json"), "w"), indent=1)
