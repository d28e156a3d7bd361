"""Host time per layer of a compiled call that does no work: dynamo's guards and frame handling.

A stack of 200 layers of 64x64, on the CPU (Triton's interpreter), compiled with a backend that
runs nothing, so each call costs only what dynamo does before and after the graph. Prints the
best of 30 batches of 5 calls, per layer: `nn.Linear`, W4A16 `NVFP4Linear`, fp8 mode, and
`FP8Linear`. Run it at two commits to compare them (session 7: b97de9c against be6345f).

    PYTHONPATH=. python3 bench/experiments/guards_s7/guard_cost.py
"""
import os
import time

os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402

from nvfp4_triton import FP8Linear, NVFP4Linear  # noqa: E402

LAYERS, WIDTH = 200, 64


def stack(mode):
    torch.manual_seed(0)
    layers = []
    for _ in range(LAYERS):
        layer = torch.nn.Linear(WIDTH, WIDTH, dtype=torch.bfloat16)
        if mode != "nn.Linear":
            layer = NVFP4Linear.from_linear(layer)
            layer.activation = "fp8" if mode in ("fp8", "FP8Linear") else None
            layer = FP8Linear.from_nvfp4(layer) if mode == "FP8Linear" else layer
        layers.append(layer)
    return torch.nn.Sequential(*layers)


def main():
    x = torch.randn(4, WIDTH, dtype=torch.bfloat16)
    out = (torch.empty(4, WIDTH, dtype=torch.bfloat16),)
    for mode in ("nn.Linear", "W4A16", "fp8", "FP8Linear"):
        torch._dynamo.reset()
        f = torch.compile(stack(mode), backend=lambda gm, example_inputs: lambda *args: out, fullgraph=True)
        best = float("inf")
        with torch.no_grad():
            f(x)
            for _ in range(30):
                start = time.perf_counter()
                for _ in range(5):
                    f(x)
                best = min(best, (time.perf_counter() - start) / 5)
        print(f"{mode:10} {best / LAYERS * 1e6:6.2f} us per layer and call", flush=True)


if __name__ == "__main__":
    main()
