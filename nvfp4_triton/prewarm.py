"""Tune and compile every GEMM a model will run, ahead of time, into the on-disk cache.

    python -m nvfp4_triton.prewarm [--config PATH | --checkpoint DIR] [--resolution 1024x1024 ...]
                                   [--batch 1 ...] [--text-len 512] [--recipe modelopt|mixed]
                                   [--dtype bf16 ...] [--activation none|fp8|nvfp4] [--resident fp8]
                                   [--dry-run] [--require-gpu]

With no arguments it prewarms FLUX.1-dev (bundled config, ModelOpt's NVFP4 recipe) at
1024x1024, batch 1. A process started afterwards on the same machine (or one that imported
the exported cache) does no tuning and no compilation. From Python::

    from nvfp4_triton.prewarm import prewarm
    from nvfp4_triton.shapes import plan_from_config
    prewarm(plan_from_config("flux1-dev", resolutions=[(1024, 1024), (768, 1344)]))
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from . import fp8
from .shapes import RECIPES, ShapePlan, exclude_from_checkpoint, plan_from_config
from .tiling import describe

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class PrewarmReport:
    """What prewarm did: one line per GEMM, counts, and time."""

    lines: list[str] = field(default_factory=list)
    tuned: int = 0
    loaded: int = 0
    compiled: int = 0
    seconds: float = 0.0


@contextlib.contextmanager
def count_compilations() -> Iterator[list[int]]:
    """Count Triton compilations that missed the compile cache while the block runs."""
    from triton import knobs

    counter = [0]
    previous = knobs.compilation.listener

    def listener(*, src, metadata, metadata_group, times, cache_hit):
        if not cache_hit:
            counter[0] += 1
        if previous is not None:
            previous(src=src, metadata=metadata, metadata_group=metadata_group, times=times, cache_hit=cache_hit)

    knobs.compilation.listener = listener
    try:
        yield counter
    finally:
        knobs.compilation.listener = previous


def prewarm(
    plan: ShapePlan,
    dtypes: tuple[torch.dtype, ...] = (torch.bfloat16,),
    bias: bool = True,
    device: torch.device | str | None = None,
    progress: Callable[[str], None] = print,
    activation: str | None = None,
    resident: str | None = None,
) -> PrewarmReport:
    """Tune (or load) and compile the kernel config of every distinct GEMM in ``plan`` on ``device``.

    Needs a CUDA device. ``bias`` matches the model's linears (FLUX's all have one).
    ``activation`` / ``resident`` select the mode the model will run (see ``nvfp4_linear`` and
    ``FP8Linear``); FP8-resident layers run cuBLAS only, so only their activation kernel compiles.
    """
    from . import gemm
    from .cache import cache_root
    from .autotune import Tuner
    from .ops import check_mode
    from .weight import random_weight

    check_mode(activation, resident, "prewarm")
    tuner, run = gemm.tuning_runner(activation, resident)
    empty = Tuner("none")  # stands in for modes that tune nothing
    tuner = tuner or empty

    device = torch.device(device or "cuda")
    if device.type != "cuda":
        raise ValueError(f"prewarm needs a CUDA device, got {device}")
    if "fp8" in (activation, resident):
        fp8.check_fp8_device(device, "prewarm")
    shapes = plan.distinct()
    report = PrewarmReport()
    start = time.perf_counter()
    total = len(shapes) * len(dtypes)
    step = 0
    with torch.cuda.device(device), count_compilations() as compiled:
        for m, n, k in shapes:
            weight = random_weight(n, k, device)
            b = torch.randn(n, device=device, dtype=torch.bfloat16) if bias else None
            for dtype in dtypes:
                step += 1
                x = torch.randn(m, k, device=device, dtype=dtype)
                key = gemm.tuning_key(device, dtype, m, n, k, bias)
                before = (tuner.stats.tuned, tuner.stats.loaded, compiled[0])
                known = tuner.lookup(key) is not None
                t0 = time.perf_counter()
                run(x, weight, b.to(dtype) if b is not None else None)
                torch.cuda.synchronize(device)
                dt = time.perf_counter() - t0
                tuned = tuner.stats.tuned - before[0]
                loaded = tuner.stats.loaded - before[1]
                new_bins = compiled[0] - before[2]
                if tuned:
                    what = f"tuned in {dt:.1f} s"
                elif loaded:
                    what = "cached"
                elif known:
                    what = f"same tuning as M bucket {gemm.m_bucket(m)}"
                elif tuner is empty:
                    what = "cuBLAS FP8 (nothing to tune)"
                else:
                    what = "default config (autotuning off)"
                if new_bins and not tuned:
                    what += f", compiled {new_bins} kernel(s)"
                cfg = tuner.lookup(key)
                tile = describe(cfg) if cfg else ""
                line = f"[{step:3}/{total}] M={m:<6} N={n:<6} K={k:<6} {str(dtype)[6:]:9} {what:40} {tile}"
                report.lines.append(line)
                progress(line)
                report.tuned += tuned
                report.loaded += loaded
            del weight, b
        report.compiled = compiled[0]
    report.seconds = time.perf_counter() - start
    progress(f"{len(shapes)} GEMM shapes x {len(dtypes)} dtype(s): {report.tuned} tuned, {report.loaded} read from "
             f"cache, {report.compiled} kernels compiled, in {report.seconds:.1f} s. Cache: {cache_root()}")
    return report


def _resolution(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"resolution must look like 1024x1024, got {text!r}") from None
    return h, w


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nvfp4_triton.prewarm",
                                     description="Tune and compile nvfp4_triton's kernels for a model's GEMMs.")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--config", default="flux1-dev",
                     help="transformer config.json (or folder), or a bundled name: flux1-dev (default), flux1-schnell")
    src.add_argument("--checkpoint", help="ModelOpt NVFP4 export folder: config and NVFP4 module set from it")
    parser.add_argument("--resolution", type=_resolution, nargs="+", default=[(1024, 1024)], metavar="HxW")
    parser.add_argument("--batch", type=int, nargs="+", default=[1], metavar="B")
    parser.add_argument("--text-len", type=int, default=512, help="text tokens (T5 sequence length, default 512)")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="modelopt",
                        help="which linears are NVFP4 when not read from --checkpoint (default modelopt)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), nargs="+", default=["bf16"], help="activation dtypes")
    parser.add_argument("--activation", choices=["none", "fp8", "nvfp4"], default="none",
                        help="how the model will run its activations (see nvfp4_linear; default none = W4A16)")
    parser.add_argument("--resident", choices=["fp8"], help="the model keeps its weights converted to FP8")
    parser.add_argument("--fuse-qkv", action="store_true",
                        help="plan q/k/v as one layer each, for models loaded with fuse_qkv=True")
    parser.add_argument("--dry-run", action="store_true", help="print the plan only")
    parser.add_argument("--require-gpu", action="store_true", help="fail (exit 1) when there is no CUDA GPU")
    args = parser.parse_args(argv)
    from .ops import check_mode

    activation = None if args.activation == "none" else args.activation
    try:
        check_mode(activation, args.resident, "prewarm")
    except ValueError as err:
        parser.error(str(err))

    try:
        if args.checkpoint:
            config, exclude = args.checkpoint, exclude_from_checkpoint(args.checkpoint)
        else:
            config, exclude = args.config, RECIPES[args.recipe]
        plan = plan_from_config(config, args.resolution, args.batch, args.text_len, exclude, fused_qkv=args.fuse_qkv)
    except (OSError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(plan.describe(), flush=True)
    if args.dry_run:
        print("dry run: nothing tuned or compiled")
        return 0
    if not torch.cuda.is_available():
        message = "no CUDA GPU found: nothing was tuned or compiled"
        if args.require_gpu:
            print(f"error: {message}", file=sys.stderr)
            return 1
        print(f"{message} (the plan above is what a GPU machine would prepare)")
        return 0
    if "fp8" in (activation, args.resident):
        try:
            fp8.check_fp8_device(torch.device("cuda"), "prewarm")
        except RuntimeError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    print(f"prewarming on {torch.cuda.get_device_name()}", flush=True)
    prewarm(plan, dtypes=tuple(DTYPES[d] for d in args.dtype), progress=lambda s: print(s, flush=True),
            activation=activation, resident=args.resident)
    return 0


if __name__ == "__main__":
    sys.exit(main())
