"""Kernel set-up time of a fresh process for every FLUX.1-dev GEMM: cold cache vs after prewarm.

    python bench/bench_startup.py [--json PATH]

Runs three fresh processes with private cache folders:
  1. cold: empty cache, so the first call of every shape tunes and compiles;
  2. ``python -m nvfp4_triton.prewarm`` into a second empty cache (timed as a whole);
  3. warm: the same first calls against the prewarmed cache, expected to tune and compile nothing.
For 1 and 3 it reports the time from process start to the first output of every shape, split
into start-up (imports, CUDA context), torch's one-time custom-op machinery (paid by any
custom op's first call, measured with an empty batch that launches no kernel) and kernel
set-up (the first calls: tuning, compiling or loading), plus the tuner's and Triton's
counters. Exits non-zero if the warm process tuned or compiled anything.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def child(shapes: list[tuple[int, int, int]], started: float) -> dict:
    import torch

    from nvfp4_triton import nvfp4_linear
    from nvfp4_triton.gemm import tuner
    from nvfp4_triton.prewarm import count_compilations
    from nvfp4_triton.weight import random_weight

    torch.zeros(1, device="cuda")
    ready = time.time()
    # torch's first call of any custom op imports its dispatch machinery (dynamo, sympy: seconds
    # where .pyc files are missing). An empty batch pays that without launching a kernel.
    w0 = random_weight(16, 32, "cuda")
    nvfp4_linear(torch.empty(0, 32, device="cuda", dtype=torch.bfloat16), w0)
    op_ready = time.time()
    inputs = []
    for m, n, k in shapes:  # build inputs first, so set-up time counts only the kernels
        inputs.append((torch.randn(m, k, device="cuda", dtype=torch.bfloat16), random_weight(n, k, "cuda"),
                       torch.randn(n, device="cuda", dtype=torch.bfloat16)))
    torch.cuda.synchronize()
    per_shape = []
    with count_compilations() as compiled:
        t_setup = time.time()
        for (m, n, k), (x, w, b) in zip(shapes, inputs):
            t0 = time.time()
            nvfp4_linear(x, w, b)
            torch.cuda.synchronize()
            per_shape.append({"M": m, "N": n, "K": k, "first_call_s": time.time() - t0})
        done = time.time()
    return {
        "startup_s": ready - started, "torch_op_first_call_s": op_ready - ready, "kernel_setup_s": done - t_setup,
        "to_all_first_outputs_s": done - started,
        "tuned": tuner.stats.tuned, "loaded": tuner.stats.loaded, "compiled": compiled[0], "per_shape": per_shape,
    }


def run_child(env: dict) -> dict:
    started = time.time()
    out = subprocess.run([sys.executable, __file__, "--child", repr(started)], env=env, capture_output=True,
                         text=True, timeout=1800)
    if out.returncode:
        sys.exit(f"child failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(HERE))
    from flux_shapes import FLUX_1024

    shapes = [(m, n, k) for _, m, n, k, _ in FLUX_1024]
    if args.child:
        print(json.dumps(child(shapes, float(args.child))))
        return 0

    with tempfile.TemporaryDirectory(prefix="nvfp4_startup_") as tmp:
        base = dict(os.environ, NVFP4_TRITON_AUTOTUNE="1",
                    PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        base.pop("TRITON_CACHE_DIR", None)
        cold = run_child(base | {"NVFP4_TRITON_CACHE_DIR": f"{tmp}/cold"})
        env = base | {"NVFP4_TRITON_CACHE_DIR": f"{tmp}/prewarmed"}
        t0 = time.time()
        pre = subprocess.run([sys.executable, "-m", "nvfp4_triton.prewarm", "--require-gpu"], env=env,
                             capture_output=True, text=True, timeout=1800)
        prewarm_s = time.time() - t0
        if pre.returncode:
            sys.exit(f"prewarm failed:\n{pre.stderr[-4000:]}")
        warm = run_child(env)
    result = {"cold": cold, "prewarm_s": prewarm_s, "prewarm_summary": pre.stdout.strip().splitlines()[-1],
              "warm": warm}
    for name in ("cold", "warm"):
        r = result[name]
        print(f"{name:5}: start-up {r['startup_s']:.2f} s, torch custom-op first call {r['torch_op_first_call_s']:.2f} s, "
              f"kernel set-up {r['kernel_setup_s']:.2f} s, "
              f"all {len(shapes)} first outputs after {r['to_all_first_outputs_s']:.2f} s; "
              f"tuned {r['tuned']}, read {r['loaded']}, compiled {r['compiled']}")
    print(f"prewarm (fresh process, empty cache): {prewarm_s:.1f} s -- "
          f"{result['prewarm_summary']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    ok = warm["tuned"] == 0 and warm["compiled"] == 0
    print("warm process tuned and compiled nothing" if ok else "FAIL: warm process tuned or compiled")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
