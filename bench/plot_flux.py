"""Draw a PNG of ``bench_flux.py --json`` files: step time and weight memory per variant, eager and compiled.

    python bench/plot_flux.py results/A.json [results/B.json ...] --out PATH

Rows of later files replace rows of earlier ones with the same variant and setting. Needs matplotlib.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def plot(rows: list[dict], title: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = list(dict.fromkeys(r["variant"] for r in rows))
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 4.8))
    for i, compiled in enumerate((False, True)):
        by = {r["variant"]: r for r in rows if r["compiled"] == compiled}
        xs = [j + (i - 0.5) * 0.4 for j in range(len(variants))]
        ax_t.bar(xs, [by[v]["step_ms"] if v in by else 0 for v in variants], 0.4,
                 label="torch.compile" if compiled else "eager")
        for x, v in zip(xs, variants):
            if v not in by:
                ax_t.text(x, 1, "not run", rotation=90, ha="center", va="bottom", fontsize=7)
    ax_t.set_xticks(range(len(variants)), variants, rotation=30, fontsize=8)
    ax_t.set_ylabel("one transformer forward, ms (lower is better)")
    ax_t.legend(fontsize=8)
    first = {r["variant"]: r for r in rows}
    ax_m.bar(range(len(variants)), [first[v]["weight_bytes"] / 2**30 for v in variants])
    ax_m.set_xticks(range(len(variants)), variants, rotation=30, fontsize=8)
    ax_m.set_ylabel("transformer weights on the GPU, GiB")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("json", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    merged: dict[tuple, dict] = {}
    env = {}
    for path in args.json:
        data = json.loads(path.read_text())
        env = data["environment"]
        merged.update({(r["variant"], r["compiled"]): r for r in data["rows"]})
    fused = {r.get("fused_qkv", False) for r in merged.values()}  # older files predate the setting
    setting = "" if fused == {False} else ", fused q/k/v" if fused == {True} else ", fused q/k/v in some rows"
    title = (f"FLUX.1-dev transformer, {env['resolution']}, batch {env['batch']}{setting}, random weights - "
             f"{env['gpu']}, torch {env['torch']}, Triton {env['triton']}")
    plot(list(merged.values()), title, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
