"""Draw a PNG of a ``bench_gemm.py --json`` file: ratio to cuBLAS BF16 per shape.

Files with mode columns (``"modes"`` in the JSON) get one bar per mode and shape; older files
one bar per shape, coloured by the strategy the tuner chose.

    python bench/plot_gemm.py results/2026-11-28-h200-strategies-all.json [--out PATH]

The plot is drawn from the JSON alone (needs matplotlib, which the package does not depend on).
Default output: the JSON's path with ``.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def plot(data: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = data["rows"]
    labels = [f"{r['label']}\n({r['M']}, {r['N']}, {r['K']})" for r in rows]
    fig, ax = plt.subplots(figsize=(max(8, 0.42 * len(rows) * (1 + len(data.get("modes", [])) / 3)), 5.5))
    if "modes" in data:
        modes = data["modes"]
        width = 0.8 / len(modes)
        for i, mode in enumerate(modes):
            ax.bar([j + (i - (len(modes) - 1) / 2) * width for j in range(len(rows))],
                   [r[f"{mode}_ratio"] for r in rows], width, label=mode)
        ax.legend(title="mode", fontsize=8)
    else:
        kinds = ["two-pass" if r["strategy"].startswith("two-pass") else "fused" for r in rows]
        colours = {"fused": "#1f77b4", "two-pass": "#ff7f0e"}
        ax.bar(range(len(rows)), [r["ratio"] for r in rows], color=[colours[k] for k in kinds])
        handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()]
        ax.legend(handles, list(colours), title="strategy chosen", fontsize=8)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(rows)), labels, rotation=90, fontsize=7)
    ax.set_ylabel("cuBLAS BF16 time / NVFP4 time (higher is better)")
    env = data["environment"]
    ax.set_title(f"nvfp4_linear vs cuBLAS BF16 - {env['gpu']}, Triton {env['triton']}, torch {env['torch']}, "
                 f"{env['date'][:10]}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("json", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    out = args.out or args.json.with_suffix(".png")
    plot(json.loads(args.json.read_text()), out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
