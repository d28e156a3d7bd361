"""When does the GPU wait during a compiled FLUX step: before the first kernel, early, or throughout?

Session 8: compiled W4A16's step exceeds its GPU-busy plus between-kernel idle time by 14.3 ms
(BF16: 7.5 ms), and only 3 ms of the difference is the delay before the first kernel. This profiles
one step per variant, waiting for the GPU before and after it, with a marker kernel launched just
before the call. It prints the gap from the marker to the first kernel and the GPU's idle time in
windows of the step (0-5, 5-10, 10-20, 20-40 ms and the rest), once as compiled by default and once
with inductor's per-input size asserts off, to show what the asserts cost.

    PYTHONPATH=. python3 bench/experiments/prologue_s8/timeline.py bf16 w4a16
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from bench_flux import build_variant, inputs, time_forward  # noqa: E402

WINDOWS_MS = (5, 10, 20, 40, float("inf"))


def idle_by_window(spans: list[tuple[float, float]], origin: float) -> list[float]:
    """GPU idle ms in each window of WINDOWS_MS, counted from ``origin`` (us), over sorted kernel spans."""
    idle, lo, busy_until = [0.0] * len(WINDOWS_MS), 0.0, origin
    for start, end in spans:
        if start > busy_until:
            gap_lo, gap_hi = (busy_until - origin) / 1e3, (start - origin) / 1e3
            lo = 0.0
            for i, hi in enumerate(WINDOWS_MS):
                idle[i] += max(0.0, min(gap_hi, hi) - max(gap_lo, lo))
                lo = hi
        busy_until = max(busy_until, end)
    return idle


def profiled_step(fn, args) -> tuple[float, list[float]]:
    marker = torch.zeros(1, device="cuda")
    with torch.no_grad():
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            marker.add_(1)
            fn(**args, return_dict=False)
            torch.cuda.synchronize()
    spans = sorted((e.time_range.start, e.time_range.end) for e in prof.events() if e.device_type.name == "CUDA")
    origin = spans[0][1]  # the marker's end: the host is about to call the model
    return (spans[1][0] - origin) / 1e3, idle_by_window(spans[1:], origin)


def main():
    args = inputs((1024, 1024), 1)
    for name in sys.argv[1:] or ["bf16", "w4a16"]:
        model = build_variant(name, args)
        for asserts in (True, False):
            torch._dynamo.reset()
            fn = torch.compile(model)
            with torch._inductor.config.patch(size_asserts=asserts):
                step_ms, host_ms, loop_ms, _ = time_forward(fn, args, runs=10)  # compiles on its first call
                first_ms, idle = profiled_step(fn, args)
            windows = ", ".join(f"{w:.2f}" for w in idle)
            print(f"{name} size_asserts={asserts}: step {step_ms:.1f} ms, host {host_ms:.1f}, loop {loop_ms:.1f}; "
                  f"profiled: first kernel after {first_ms:.2f} ms, idle ms by window {WINDOWS_MS}: {windows}",
                  flush=True)
        del model, fn
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
