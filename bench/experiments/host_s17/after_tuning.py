"""Session 17, GPU: does autotuning in a process slow the host side of its later eager calls?

On one machine start (bench/RESULTS.md, session 17, calls 4 and 5) the eager fp8 FLUX step took
218 ms of host time in the process that tuned its GEMM shapes during warm-up, and 126.5 ms in the
next process, which read them from the disk cache; BF16 was 107 ms in both. Here, in one process
and with an empty cache directory: host microseconds per call (``bench_host.per_call_us``, 200
calls issued back to back) of a few layers whose configs were set without measuring
(``NVFP4_TRITON_AUTOTUNE=0``), then again after the tuner has measured other shapes, then after
the same number of bare CUDA-graph captures and ``do_bench`` runs (the tuner's timing), to tell
which part leaves a cost behind.

    PYTHONPATH=. python3 bench/experiments/host_s17/after_tuning.py
"""

import os
import sys
import tempfile
from pathlib import Path

os.environ["NVFP4_TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix="nvfp4_after_tuning_")
os.environ["NVFP4_TRITON_AUTOTUNE"] = "0"

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import triton  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from bench_host import per_call_us  # noqa: E402
from nvfp4_triton import NVFP4Linear  # noqa: E402
from nvfp4_triton.autotune import benchmark_ms  # noqa: E402

LAYERS = [(512, 3072, 3072), (4096, 3072, 3072), (1, 18432, 3072)]
"""(M, N, K) of the timed layers: text stream, image stream, modulation."""
TUNED = [(512, 9216, 3072), (4096, 9216, 3072), (1, 9216, 3072), (16, 9216, 3072)]
"""Shapes the tuner measures in between (none of them a timed layer's)."""


def layers(activation):
    out = []
    for m, n, k in LAYERS:
        layer = NVFP4Linear.from_linear(torch.nn.Linear(k, n, dtype=torch.bfloat16, device="cuda"))
        layer.activation = activation
        out.append((layer, torch.randn(m, k, device="cuda", dtype=torch.bfloat16)))
    return out


def report(label, timed, bf16):
    parts = [f"F.linear {per_call_us(lambda: F.linear(*bf16), 200)[0]:6.1f}"]
    for (layer, x), (m, n, k) in zip(timed, LAYERS):
        parts.append(f"{layer.activation or 'w4a16'} ({m},{n},{k}) {per_call_us(lambda: layer(x), 200)[0]:6.1f}")
    print(f"{label:34} host us a call: " + ", ".join(parts), flush=True)


def main():
    print(torch.cuda.get_device_name(), torch.__version__, triton.__version__, flush=True)
    timed = layers("fp8")
    bf16 = (torch.randn(512, 3072, device="cuda", dtype=torch.bfloat16),
            torch.randn(3072, 3072, device="cuda", dtype=torch.bfloat16))
    with torch.no_grad():
        report("before any tuning", timed, bf16)
        report("again (noise)", timed, bf16)
        x = torch.randn(4096, 3072, device="cuda", dtype=torch.bfloat16)
        w = torch.randn(3072, 3072, device="cuda", dtype=torch.bfloat16)
        for _ in range(60):  # about as many timings as the tuner makes for the TUNED shapes below
            benchmark_ms(lambda: F.linear(x, w))
        report("after 60 bare benchmark_ms", timed, bf16)
        os.environ["NVFP4_TRITON_AUTOTUNE"] = "1"
        for m, n, k in TUNED:
            for activation in ("fp8", None):
                layer = NVFP4Linear.from_linear(torch.nn.Linear(k, n, dtype=torch.bfloat16, device="cuda"))
                layer.activation = activation
                layer(torch.randn(m, k, device="cuda", dtype=torch.bfloat16))
        report("after tuning 8 keys", timed, bf16)
        report("again (noise)", timed, bf16)


if __name__ == "__main__":
    main()
