"""Does tracing W4A16 layers into inductor's graph shorten a compiled FLUX step? (session 9, staged)

Compiles the full-size FLUX.1-dev transformer as BF16, as W4A16 with the opaque op (the default),
and as W4A16 traced into the graph (``ops.INLINE_COMPILED``, what ``NVFP4_TRITON_INLINE_COMPILE=1``
turns on), one after the other in this process. For each it prints the host time to the first
Triton launch, the host time, the step time (median of 10, GPU waited for after each), the
back-to-back time, and the output's difference from the opaque W4A16 (rel L2).

    PYTHONPATH=. python3 bench/experiments/inline_s9/inline.py bf16 w4a16 w4a16-inline
"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path[:0] = [str(HERE.parents[2]), str(HERE.parents[1] / "startup_s8")]

from bench_flux import build_variant  # noqa: E402
from nvfp4_triton import ops  # noqa: E402
from startup import compare_compiled  # noqa: E402  (times the first-kernel delay, host and step)


def build(name, args):
    ops.INLINE_COMPILED = name == "w4a16-inline"  # read while dynamo traces
    return build_variant("bf16" if name == "bf16" else "w4a16", args)


if __name__ == "__main__":
    compare_compiled(sys.argv[1:] or ["bf16", "w4a16", "w4a16-inline"], build, label_width=14)
