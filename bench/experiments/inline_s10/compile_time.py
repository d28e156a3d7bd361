"""Compiling FLUX with traced layers: where the time goes, and what the traced step gains (session 10).

In sessions 9 and 10 the full-size W4A16 transformer with ``NVFP4_TRITON_INLINE_COMPILE=1`` did not
finish compiling in the 3-5.5 minutes the calls left it (BF16: 90 s). This works on a cut-down
transformer, the first ``--double`` and ``--single`` blocks, and counts each TTIR that torch
compiles to analyse one of our kernels (``nvfp4_triton.kernel_analysis``), with the signature it
would be shared under.

- default: compile BF16, then W4A16 opaque and traced (after one eager forward tuned every shape),
  and print each compile's seconds, the TTIR count, the distinct signatures and a cProfile of
  the traced compile (``--traced-only``: only the traced one);
- ``--compare VARIANT ...``: ``inline_s9/inline.py``'s comparison of compiled variants on the cut
  model (host and step time, loop time, rel L2 from the opaque variant, seconds).

    PYTHONPATH=. python3 bench/experiments/inline_s10/compile_time.py --traced-only --double 2 --single 4
    PYTHONPATH=. python3 bench/experiments/inline_s10/compile_time.py --double 4 --single 8 --compare bf16 fp8 fp8-inline

Outputs: bench/results/2026-11-28-h200-s10-call3..6-*.txt; readings in bench/RESULTS.md, session 10.
"""
import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path[:0] = [str(HERE.parents[2]), str(HERE.parents[1] / "startup_s8"), str(HERE.parents[1] / "inline_s9")]
import torch  # noqa: E402
from torch._higher_order_ops import triton_kernel_wrap  # noqa: E402

from bench_flux import build_variant, inputs  # noqa: E402
from inline import build  # noqa: E402  (the experiment's variants, traced or not)
from nvfp4_triton import inline, kernel_analysis  # noqa: E402

TTIR = []
KEYS = []
_generate = triton_kernel_wrap.generate_ttir


def counted_generate(kernel, kwargs, *rest):
    began = time.perf_counter()
    try:
        return _generate(kernel, kwargs, *rest)
    finally:
        TTIR.append(time.perf_counter() - began)
        key = kernel_analysis.signature(kernel, kwargs, *rest)
        KEYS.append(key if key is not None else
                    ("unshared", getattr(kernel, "__name__", kernel), sorted({type(v).__name__ for v in kwargs.values()})))


triton_kernel_wrap.generate_ttir = counted_generate


def cut(model, double, single):
    model.transformer_blocks = model.transformer_blocks[:double]
    model.single_transformer_blocks = model.single_transformer_blocks[:single]
    return model


def compile_once(model, args, profile=False):
    torch._dynamo.reset()
    TTIR.clear()
    prof = cProfile.Profile() if profile else None
    began = time.perf_counter()
    with torch.no_grad():
        if prof:
            prof.enable()
        torch.compile(model)(**args, return_dict=False)
        if prof:
            prof.disable()
        torch.cuda.synchronize()
    return time.perf_counter() - began, prof


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--double", type=int, default=2)
    parser.add_argument("--single", type=int, default=4)
    parser.add_argument("--traced-only", action="store_true")
    parser.add_argument("--compare", nargs="*", help="variants of inline_s9/inline.py to time on the cut model")
    opts = parser.parse_args()
    if opts.compare:
        from startup import compare_compiled

        compare_compiled(opts.compare, lambda name, args: cut(build(name, args), opts.double, opts.single),
                         reference=lambda name: name.removesuffix("-inline"), label_width=20)
        print(f"{len(TTIR)} TTIR in all, {len(set(map(repr, KEYS)))} distinct keys", flush=True)
        return
    args = inputs((1024, 1024), 1)
    if not opts.traced_only:
        bf16 = cut(build_variant("bf16", args), opts.double, opts.single)
        seconds, _ = compile_once(bf16, args)
        print(f"bf16 compile {seconds:.1f} s", flush=True)
        del bf16
    model = cut(build_variant("w4a16", args), opts.double, opts.single)
    with torch.no_grad():
        model(**args, return_dict=False)  # tunes every shape
    if not opts.traced_only:
        seconds, _ = compile_once(model, args)
        print(f"w4a16 opaque compile {seconds:.1f} s, {len(TTIR)} TTIR", flush=True)
    inline.INLINE_COMPILED = True
    KEYS.clear()
    seconds, prof = compile_once(model, args, profile=True)
    print(f"w4a16 traced compile {seconds:.1f} s, {len(TTIR)} TTIR taking {sum(TTIR):.1f} s, "
          f"{len(set(map(repr, KEYS)))} distinct keys", flush=True)
    for key in sorted(set(map(repr, KEYS)))[:40]:
        print("  ", sum(repr(k) == key for k in KEYS), key[:400])
    text = io.StringIO()
    stats = pstats.Stats(prof, stream=text)
    stats.sort_stats("cumulative").print_stats("nvfp4_triton|triton_kernel_wrap|_library|wrapper.py|select_algorithm", 40)
    stats.print_callers("generate_ttir|fake_tensor_prop.py.*run_node")
    stats.sort_stats("tottime").print_stats(15)
    print(text.getvalue(), flush=True)


if __name__ == "__main__":
    main()
