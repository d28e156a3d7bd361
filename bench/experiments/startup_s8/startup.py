"""Where a compiled FLUX step's host time sits: before the first kernel, or spread over the step.

Session 8: under default torch.compile, W4A16's step (141.0 ms) exceeds its GPU-busy plus idle time
(126.7 ms) by 14.3 ms, BF16's by 7.5 ms. That excess is time the GPU has nothing queued; within the
step the profiler saw no such gaps, so it is likely before the first kernel: dynamo's guards, the
AOT wrappers and the per-input size asserts of inductor's wrapper, all of which grow with the number
of graph inputs (a W4A16 layer has four tensors, an nn.Linear two). This prints, per variant, the
median of 10 steps: host time from the call to the first Triton launch ("startup"), host time to
return, and GPU step time, with guards evaluated and skipped; then a cProfile of one step.

    PYTHONPATH=. python3 bench/experiments/startup_s8/startup.py bf16 w4a16
"""
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import torch  # noqa: E402
from torch._inductor.runtime import triton_heuristics  # noqa: E402

from bench_flux import build_variant, inputs  # noqa: E402

FIRST = [None]
_run = triton_heuristics.CachingAutotuner.run


def stamped_run(self, *args, **kwargs):
    if FIRST[0] is None:
        FIRST[0] = time.perf_counter()
    return _run(self, *args, **kwargs)


triton_heuristics.CachingAutotuner.run = stamped_run


def steps(fn, args, runs=10):
    startup, host, gpu = [], [], []
    with torch.no_grad():
        for _ in range(runs):
            torch.cuda.synchronize()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            FIRST[0] = None
            t0 = time.perf_counter()
            start.record()
            fn(**args, return_dict=False)
            end.record()
            t1 = time.perf_counter()
            torch.cuda.synchronize()
            startup.append((FIRST[0] - t0) * 1e3 if FIRST[0] else float("nan"))
            host.append((t1 - t0) * 1e3)
            gpu.append(start.elapsed_time(end))
    med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    return f"startup {med(startup):6.2f} ms, host {med(host):6.2f} ms, step {med(gpu):6.2f} ms"


def compare_compiled(names, build, reference=lambda name: "w4a16", label_width=18):
    """Per variant: ``build(name, args)`` makes its model, which is compiled and timed; one line each
    with ``steps``, the back-to-back loop time and the output's rel L2 from variant
    ``reference(name)``, when that ran before it, the peak memory while compiling and timing it,
    and the seconds that took."""
    from bench_flux import inputs, time_forward

    args = inputs((1024, 1024), 1)
    outputs = {}
    for name in names:
        model = build(name, args)
        torch._dynamo.reset()
        fn = torch.compile(model)
        torch.cuda.reset_peak_memory_stats()
        began = time.perf_counter()
        _, _, loop, out = time_forward(fn, args, runs=10)  # compiles, warms up, then times steps back to back
        seconds = time.perf_counter() - began
        peak = torch.cuda.max_memory_allocated() / 2**30
        ref = reference(name)
        if ref == name or ref not in outputs:
            outputs[name] = out.float()
            diff = "-"
        else:
            diff = f"{float((out.float() - outputs[ref]).norm() / outputs[ref].norm()):.1e}"
        print(f"{name:{label_width}} {steps(fn, args)}, loop {loop:6.1f} ms, rel L2 from {ref} {diff}, "
              f"peak {peak:.2f} GiB, {seconds:.0f} s", flush=True)
        del model, fn, out
        torch.cuda.empty_cache()


def main():
    args = inputs((1024, 1024), 1)
    for name in sys.argv[1:] or ["bf16", "w4a16"]:
        model = build_variant(name, args)
        torch._dynamo.reset()
        fn = torch.compile(model)
        with torch.no_grad():
            for _ in range(3):
                fn(**args, return_dict=False)
        n_inputs = sum(1 for _ in model.parameters()) + sum(1 for _ in model.buffers())
        print(f"{name}: {n_inputs} parameters and buffers", flush=True)
        print(f"{name}: guards run      {steps(fn, args)}", flush=True)
        with torch.compiler.set_stance(skip_guard_eval_unsafe=True):
            print(f"{name}: guards skipped  {steps(fn, args)}", flush=True)
        prof = cProfile.Profile()
        with torch.no_grad():
            torch.cuda.synchronize()
            prof.enable()
            fn(**args, return_dict=False)
            prof.disable()
            torch.cuda.synchronize()
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(25)
        print(text.getvalue(), flush=True)
        del model, fn
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
