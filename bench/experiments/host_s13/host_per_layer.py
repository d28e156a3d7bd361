"""GPU: host time per layer, BF16 against FP8, eager ops and compiled layers, in one process (staged, session 13).

A compiled FLUX step in ``activation="fp8"`` spent 56-74 ms of host time against BF16's 21-23
(bench/RESULTS.md, session 13), on two machine starts. About 3 launches a layer instead of 1
would explain some 7 ms of that. This splits the rest:
- one eager call of each torch op a layer runs: ``torch.mm`` / ``F.linear`` (BF16) against
  ``torch._scaled_mm`` with row and column scales (FP8). One hypothesis is that ``_scaled_mm``
  asks cuBLASLt for an algorithm on every call. Session 14 measured 7 us more than ``torch.mm``
  on one shape; ``torch_ops_cycling`` times both cycling through FLUX's shapes, as a step does;
- a compiled stack of 8 layers with the FLUX shape (default ``torch.compile``): BF16
  ``nn.Linear``, ``NVFP4Linear`` in W4A16 and fp8, and ``FP8Linear``, per layer.
Host time is the time to issue ``CALLS`` calls with no synchronization, divided by ``CALLS``;
that is fewer calls than CUDA's launch queue holds, so the host never waits for the GPU.

    PYTHONPATH=. python3 bench/experiments/host_s13/host_per_layer.py
"""
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench_host import per_call_us  # noqa: E402

from nvfp4_triton import FP8Linear, NVFP4Linear, fp8  # noqa: E402

M, N, K = 4096, 3072, 3072  # attn q/k/v/out (img), FLUX.1-dev at 1024x1024
CALLS = 200
LAYERS = 8


def host_us(fn, calls: int = CALLS) -> float:
    """Host microseconds per ``fn()`` call, ``calls`` calls issued back to back (``bench_host.per_call_us``)."""
    return per_call_us(fn, calls)[0]


def torch_ops() -> None:
    x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(N, K, device="cuda", dtype=torch.bfloat16)
    bias = torch.randn(N, device="cuda", dtype=torch.bfloat16)
    xq, row_scale = fp8.quantize_rows(x)
    w8 = w.to(torch.float8_e4m3fn)
    column = torch.ones(1, N, device="cuda")
    ops = {
        "torch.mm (bf16)": lambda: torch.mm(x, w.t()),
        "F.linear (bf16, bias)": lambda: torch.nn.functional.linear(x, w, bias),
        "_scaled_mm (fast accum)": lambda: torch._scaled_mm(xq, w8.t(), scale_a=row_scale, scale_b=column,
                                                            out_dtype=torch.bfloat16, use_fast_accum=True),
        "_scaled_mm (fast accum, bias)": lambda: torch._scaled_mm(xq, w8.t(), scale_a=row_scale, scale_b=column,
                                                                  bias=bias, out_dtype=torch.bfloat16,
                                                                  use_fast_accum=True),
    }
    for name, fn in ops.items():
        print(f"eager {name:36} {host_us(fn):7.1f} us a call", flush=True)


CYCLE = [(4096, 3072, 3072), (512, 3072, 3072), (4096, 12288, 3072), (4096, 3072, 12288), (512, 12288, 3072),
         (512, 3072, 12288), (4608, 3072, 3072), (4608, 12288, 3072), (4608, 3072, 15360)]
"""FLUX.1-dev's GEMM shapes (M, N, K) at M >= 512, as a step cycles through them."""


def torch_ops_cycling() -> None:
    """The same eager ops, each call on the next shape of ``CYCLE``: a cache of cuBLASLt's algorithm
    choice for the last shape only would show here and not in ``torch_ops``."""
    operands = []
    for m, n, k in CYCLE:
        x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
        xq, row_scale = fp8.quantize_rows(x)
        operands.append((x, w, xq, row_scale, w.to(torch.float8_e4m3fn), torch.ones(1, n, device="cuda")))
    ops = {
        "torch.mm (bf16)": lambda o: torch.mm(o[0], o[1].t()),
        "_scaled_mm (fast accum)": lambda o: torch._scaled_mm(o[2], o[4].t(), scale_a=o[3], scale_b=o[5],
                                                            out_dtype=torch.bfloat16, use_fast_accum=True),
    }
    for name, op in ops.items():
        def cycle(op=op):
            for o in operands:
                op(o)
        per_call = host_us(cycle, calls=CALLS // len(CYCLE)) / len(CYCLE)
        print(f"eager {name:36} {per_call:7.1f} us a call, cycling through {len(CYCLE)} shapes", flush=True)


def stacks() -> dict[str, list[torch.nn.Module]]:
    """``LAYERS`` layers of the (N, K) shape in each mode, all quantized from the same BF16 linears."""
    torch.manual_seed(0)
    linears = [torch.nn.Linear(K, N, dtype=torch.bfloat16, device="cuda") for _ in range(LAYERS)]

    def nvfp4(activation):
        layers = [NVFP4Linear.from_linear(lin) for lin in linears]
        for layer in layers:
            layer.activation = activation
        return layers

    return {"bf16 nn.Linear": linears, "W4A16 NVFP4Linear": nvfp4(None), "fp8 NVFP4Linear": nvfp4("fp8"),
            "FP8Linear": [FP8Linear.from_nvfp4(layer) for layer in nvfp4("fp8")]}


def compiled_forward(layers: list[torch.nn.Module]):
    """``torch.compile`` (default mode, one graph) of all ``layers`` applied to one x, as q/k/v take
    theirs: no layer waits on another, and the shapes stay N = K."""
    model = torch.nn.ModuleList(layers)

    def forward(inp):
        return [layer(inp) for layer in model]

    torch._dynamo.reset()
    return torch.compile(forward, fullgraph=True)


def compiled_stacks() -> None:
    x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
    for name, layers in stacks().items():
        compiled = compiled_forward(layers)
        with torch.no_grad():
            start = time.perf_counter()
            compiled(x)
            torch.cuda.synchronize()
            built = time.perf_counter() - start
            per_layer = host_us(lambda: compiled(x), calls=CALLS // LAYERS) / LAYERS
        print(f"compiled {name:33} {per_layer:7.1f} us a layer (compile {built:.0f} s)", flush=True)


def main() -> None:
    print(torch.cuda.get_device_name(), torch.__version__, f"M, N, K = {M}, {N}, {K}")
    torch_ops()
    torch_ops_cycling()
    compiled_stacks()


if __name__ == "__main__":
    main()
