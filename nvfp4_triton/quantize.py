"""``python -m nvfp4_triton.quantize SRC OUT``: quantize a BF16 diffusers transformer folder to NVFP4.

    python -m nvfp4_triton.quantize SRC OUT [--recipe modelopt|mixed] [--exclude GLOB ...]
                                    [--shard-size 5GB] [--overwrite] [--device cpu|cuda]

Command line only; the work is ``nvfp4_triton.export.quantize_folder`` (this module is never
imported by the package, so ``nvfp4_triton.quantize`` stays the weight-quantizing function).
Exit status: 0 on success, 1 when refused or failed, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from nvfp4_triton.export import UnsafeOutput, parse_size, quantize_folder
    from nvfp4_triton.modelopt import CheckpointError
    from nvfp4_triton.shapes import RECIPES

    parser = argparse.ArgumentParser(prog="python -m nvfp4_triton.quantize",
                                     description="Weight-only NVFP4 export of a BF16 diffusers transformer folder, "
                                                 "in ModelOpt's layout.")
    parser.add_argument("src", help="diffusers component folder (config.json + safetensors), e.g. .../transformer")
    parser.add_argument("out", help="output folder (written beside, renamed into place when complete)")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="modelopt",
                        help="which linears stay BF16 (default: ModelOpt's FLUX recipe)")
    parser.add_argument("--exclude", nargs="+", default=[], metavar="GLOB", help="more modules to keep in BF16")
    parser.add_argument("--shard-size", default="5GB", help="maximum output shard size (default 5GB)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if this tool wrote it")
    parser.add_argument("--device", default="cpu", help="where to run the quantizer (cpu or cuda)")
    args = parser.parse_args(argv)
    try:
        shard_size = parse_size(args.shard_size)
    except ValueError as err:
        parser.error(str(err))
    try:
        quantize_folder(args.src, args.out, recipe=args.recipe, exclude=tuple(args.exclude), shard_size=shard_size,
                        overwrite=args.overwrite, device=args.device, progress=lambda s: print(s, flush=True))
    except (UnsafeOutput, CheckpointError, OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
