"""Does tracing our layers into inductor's graph shorten a compiled FLUX step? (session 9, staged)

Compiles the full-size FLUX.1-dev transformer per variant, one after the other in this process:
BF16; a library mode with the opaque ops (the default); and the same mode traced into the graph
(``-inline``: ``inline.INLINE_COMPILED``, what ``NVFP4_TRITON_INLINE_COMPILE=1`` turns on). Modes:
w4a16, fp8 (``activation="fp8"``), fp8-resident. For each it prints the host time to the first
Triton launch, the host time, the step time (median of 10, GPU waited for after each), the
back-to-back time, the rel L2 of an ``-inline`` output from its mode's opaque-op output (when
that ran first), the peak memory and the seconds taken (``startup.compare_compiled``).

    PYTHONPATH=. python3 bench/experiments/inline_s9/inline.py bf16 w4a16 w4a16-inline
    PYTHONPATH=. python3 bench/experiments/inline_s9/inline.py bf16 fp8 fp8-inline fp8-resident fp8-resident-inline
"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path[:0] = [str(HERE.parents[2]), str(HERE.parents[1] / "startup_s8")]

from bench_flux import build_variant  # noqa: E402
from nvfp4_triton import inline  # noqa: E402
from startup import compare_compiled  # noqa: E402  (times the first-kernel delay, host and step)


def build(name, args):
    inline.INLINE_COMPILED = name.endswith("-inline")  # read while dynamo traces
    return build_variant(name.removesuffix("-inline"), args)


if __name__ == "__main__":
    compare_compiled(sys.argv[1:] or ["bf16", "w4a16", "w4a16-inline"], build,
                     reference=lambda name: name.removesuffix("-inline"), label_width=20)
