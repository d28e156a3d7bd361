"""Session 18, GPU: host microseconds of one eager ``torch._scaled_mm`` call by its arguments.

Call 1 of session 18 measured ``FP8Linear`` at 106.8 us of host time a call at (512, 3072, 3072)
but 64.8 us at (1, 18432, 3072), against F.linear's 18. The layer's Python is the same at both
shapes; what differs is ``_scaled_mm``'s arguments (fast accumulation from 64 rows on). This
times the bare call with each combination, back to back (``bench_host.per_call_us``).

    PYTHONPATH=. python3 bench/experiments/host_s18/scaled_mm_host.py
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench_host import per_call_us  # noqa: E402


def main():
    print(torch.cuda.get_device_name(), torch.__version__, flush=True)
    for m, n, k in [(512, 3072, 3072), (1, 18432, 3072), (4096, 3072, 3072)]:
        x = torch.randn(m, k, device="cuda").to(torch.float8_e4m3fn)
        w = torch.randn(n, k, device="cuda").to(torch.float8_e4m3fn)
        row = torch.rand(m, 1, device="cuda") + 0.5
        col = torch.rand(1, n, device="cuda") + 0.5
        bias = torch.randn(n, device="cuda", dtype=torch.bfloat16)
        xb = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        wb = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
        parts = [f"F.linear {per_call_us(lambda: torch.nn.functional.linear(xb, wb, bias), 200)[0]:6.1f}"]
        for fast in (False, True):
            for b in (None, bias):
                def call():
                    return torch._scaled_mm(x, w.t(), scale_a=row, scale_b=col, bias=b, out_dtype=torch.bfloat16,
                                            use_fast_accum=fast)
                host, wall = per_call_us(call, 200)
                parts.append(f"fast={fast:d} bias={b is not None:d} {host:6.1f} (wall {wall:6.1f})")
        print(f"({m},{n},{k}) host us a call: " + ", ".join(parts), flush=True)


if __name__ == "__main__":
    main()
