"""Where does a compiled NVFP4 FLUX step spend its host time?

Session 5's profile: compiled W4A16 took 67.6 ms of host time per step against 26.2 for BF16, and
its GPU idled ~19 ms per step (BF16: ~11). This times the compiled forward's host part
(until it returns) normally and with dynamo's guard evaluation skipped, then prints a cProfile
of one compiled forward by own time.

    PYTHONPATH=. python3 bench/experiments/host_s5/compiled_host.py [variant ...]
"""
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import torch  # noqa: E402

from bench_flux import VARIANTS, build_bf16, convert, inputs  # noqa: E402


def host_ms(fn, args, runs=10):
    times = []
    with torch.no_grad():
        for _ in range(runs):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn(**args, return_dict=False)
            times.append((time.perf_counter() - t0) * 1e3)
            torch.cuda.synchronize()
    return sorted(times)[len(times) // 2]


def main():
    args = inputs((1024, 1024), 1)
    for name in sys.argv[1:] or ["w4a16"]:
        model = build_bf16()
        if VARIANTS[name] is not None:
            model = convert(model, args=args, **VARIANTS[name])
        fn = torch.compile(model)
        with torch.no_grad():
            for _ in range(3):
                fn(**args, return_dict=False)
        normal = host_ms(fn, args)
        with torch.compiler.set_stance(skip_guard_eval_unsafe=True):
            skipped = host_ms(fn, args)
        eager = host_ms(model, args)
        print(f"{name}: host ms per compiled step {normal:.1f}, guards skipped {skipped:.1f}; eager {eager:.1f}",
              flush=True)
        prof = cProfile.Profile()
        with torch.no_grad():
            prof.enable()
            fn(**args, return_dict=False)
            prof.disable()
            torch.cuda.synchronize()
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(35)
        print(text.getvalue(), flush=True)
        del model, fn
        torch._dynamo.reset()
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
