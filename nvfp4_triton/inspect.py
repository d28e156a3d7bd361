"""``python -m nvfp4_triton.inspect DIR``: what a ModelOpt NVFP4 export holds, and what is wrong with it.

Prints the quantization settings (with where each came from), NVFP4 vs BF16 modules, bytes
against an all-BF16 model, ``input_scale`` presence, q/k/v groups that share a global scale,
and every problem the loader would refuse. Reads all tensors (on the CPU). Exit status 0 when
the checkpoint loads, 1 when it has problems.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def report(path: Path) -> tuple[list[str], bool]:
    """Lines of the report and whether the checkpoint loads."""
    from nvfp4_triton.modelopt import CheckpointError, load_checkpoint

    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as err:
        return [f"checkpoint: {path}", f"PROBLEMS: {err}"], False
    s = ckpt.settings
    dense_linears = {n.rsplit(".", 1)[0]: t for n, t in ckpt.dense.items() if n.endswith(".weight") and t.dim() == 2}
    nvfp4 = ckpt.nvfp4_bytes
    as_bf16 = sum(q.weight.out_features * q.weight.in_features * 2 for q in ckpt.quantized.values())
    other = sum(t.numel() * t.element_size() for t in ckpt.dense.values())
    with_input_scale = sum(1 for q in ckpt.quantized.values() if q.input_scale is not None)
    shared = {}
    for name, q in ckpt.quantized.items():
        parent = name.rsplit(".", 1)[0]
        shared.setdefault((parent, float(q.weight.global_scale)), []).append(name.rsplit(".", 1)[-1])
    groups = [f"{p}.{{{','.join(sorted(v))}}}" for (p, _), v in sorted(shared.items()) if len(v) > 1]
    lines = [
        f"checkpoint:      {path}",
        f"settings from:   {s.config_file}",
        f"algorithm:       {s.algo}, group size {s.group_size}",
        f"scale layout:    {s.scale_layout} ({s.scale_layout_source})",
        f"nibble order:    {'swapped (even element in the high nibble)' if s.swap_nibbles else 'ModelOpt (even element in the low nibble)'}",
        f"NVFP4 modules:   {len(ckpt.quantized)}",
        f"BF16 linears:    {len(dense_linears)}" + (f" ({', '.join(sorted(dense_linears)[:6])}{', ...' if len(dense_linears) > 6 else ''})" if dense_linears else ""),
        f"input_scale:     {with_input_scale} of {len(ckpt.quantized)} NVFP4 modules",
        f"NVFP4 bytes:     {nvfp4 / 1e9:.3f} GB for weights that take {as_bf16 / 1e9:.3f} GB in BF16 ({as_bf16 / max(nvfp4, 1):.2f}x less)",
        f"other tensors:   {other / 1e9:.3f} GB",
        f"total:           {(nvfp4 + other) / 1e9:.3f} GB vs {(as_bf16 + other) / 1e9:.3f} GB all-BF16",
        f"shared global scales: {len(groups)} group(s)" + (f", e.g. {groups[0]}" if groups else "")
        + (" (load_transformer(fuse_qkv=True) joins q/k/v groups)" if groups else ""),
        "problems:        none",
    ]
    return lines, True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nvfp4_triton.inspect", description=__doc__.split("\n")[0])
    parser.add_argument("path", type=Path, help="ModelOpt export folder (e.g. .../transformer)")
    args = parser.parse_args(argv)
    lines, ok = report(args.path)
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
