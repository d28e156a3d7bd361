"""For the GPU (written in session 22, run in session 23: 1.2-1.5 us a best split config, bench/RESULTS.md):
what the captured memset of split-K counters costs.

v28 (bench/NOTES.md) left a suspicion unmeasured: under CUDA-graph capture each split call takes
new zeroed counters (``scratch.tile_counters``), so every replay runs a memset node before the
kernel, while eager calls reuse their stream's zeros. The tuner times graph replays, so if the
memset costs a few microseconds it biases the tuner against split configs, which at small M take
11-25 us. This times every split candidate of the small-M points twice in one process through
``benchmark_ms``: as the library runs it, and with ``tile_counters`` handing the capture zeros made
before it (what "counters made outside the graph" would give), plus the unsplit best for reference.

Prediction: 1-3 us less a split config; where that puts a split config ahead of the unsplit best,
the tuner's choice would change (M = 2-16 at 18432 rows, where it now takes the unsplit ring).
If the saving is under 0.5 us, the design question (who owns the counters a graph keeps using) is
not worth its cost.

    PYTHONPATH=. python3 bench/experiments/counters_s22/captured_counters.py [--json OUT]
"""

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from nvfp4_triton import quantize, scratch  # noqa: E402
from nvfp4_triton.autotune import benchmark_ms, candidate_configs, device_shared_memory, m_bucket  # noqa: E402
from nvfp4_triton.gemm import w4a16_runner  # noqa: E402
from nvfp4_triton.tiling import describe  # noqa: E402

POINTS = [(m, n, k) for m in (1, 2, 8, 16) for n, k in [(18432, 3072), (9216, 3072), (3072, 12288)]]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    original = scratch.tile_counters
    ready = torch.zeros(1 << 16, dtype=torch.int32, device="cuda")  # made once, outside any capture

    def made_before(count, device, fresh=False):
        return ready if torch.cuda.is_current_stream_capturing() and not fresh else original(count, device, fresh)

    rows = []
    for m, n, k in POINTS:
        torch.manual_seed(0)
        q = quantize(torch.randn(n, k, device="cuda", dtype=torch.bfloat16))
        x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        row = {"m": m, "n": n, "k": k}
        for cfg in candidate_configs(m_bucket(m), n, k, device_shared_memory(0)):
            run = w4a16_runner(x, q.packed, q.block_scale, q.global_scale, None, config=cfg)
            name = describe(cfg)
            row[name] = 1e3 * benchmark_ms(lambda: run(x, None))
            if getattr(cfg, "split_k", 1) > 1:
                scratch.tile_counters = made_before
                try:
                    row[name + " ready"] = 1e3 * benchmark_ms(lambda: run(x, None))
                finally:
                    scratch.tile_counters = original
                assert not ready.any(), "a launch left its counters dirty"
        rows.append(row)
        unsplit = min((us, name) for name, us in row.items() if name not in ("m", "n", "k") and "split" not in name)
        split = [(row[name], row[name + " ready"], name) for name in row if name + " ready" in row]
        line = f"({m}, {n}, {k}) unsplit best {unsplit[0]:.1f} us ({unsplit[1]})"
        if split:
            saving = sorted(now - ready_us for now, ready_us, _ in split)
            best_now = min(split)
            best_ready = min(split, key=lambda entry: entry[1])
            line += (f"; split configs {saving[0]:.1f}-{saving[-1]:.1f} us faster with zeros made before capture;"
                     f" best split as now {best_now[0]:.1f} us ({best_now[2]}), with them {best_ready[1]:.1f} us"
                     f" ({best_ready[2]})")
        print(line, flush=True)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
