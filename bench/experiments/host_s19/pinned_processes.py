"""Session 19, for the GPU: is eager fp8's slow process a slow core? (bench/NOTES.md, session 18's
"Run first next time" item 1.)

Runs ``bench_flux.py --variants fp8 --no-compile`` in one process after another, each pinned by
``taskset -c`` to one core of CORES (two processes a core, so a slow core shows twice) and then
unpinned, and prints each process's host ms a step, its thread's CPU ms, involuntary context
switches and last core, with the machine's steal time (``/proc/stat``) over the process.

    PYTHONPATH=. python3 bench/experiments/host_s19/pinned_processes.py [CORE ...]
"""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def steal_ticks() -> int:
    """The machine's steal time so far, in clock ticks (``/proc/stat``'s eighth field)."""
    return int(Path("/proc/stat").read_text().split("\n", 1)[0].split()[8])


def one_process(core: str | None) -> dict:
    """One eager fp8 FLUX step timing, pinned to ``core`` (None: not pinned); its fp8 row."""
    cmd = [sys.executable, str(ROOT / "bench" / "bench_flux.py"), "--variants", "fp8", "--no-compile", "--runs", "10"]
    if core is not None:
        cmd = ["taskset", "-c", core, *cmd]
    before = steal_ticks()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    steal = steal_ticks() - before
    for line in done.stdout.splitlines():
        if line.startswith('{"variant": "fp8", "compiled": false, "compile_mode"'):
            return {**json.loads(line), "core": core, "steal_ticks": steal}
    raise RuntimeError(f"no fp8 row from {cmd}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


def main() -> None:
    cores = sys.argv[1:] or ["0", "7", "13"]
    for core in [c for c in cores for _ in range(2)] + [None, None]:
        row = one_process(core)
        usage = row["host_thread"]
        print(f"pinned to {core or '-':>2}: host {row['host_ms']:6.1f} ms a step, step {row['step_ms']:6.1f} ms, "
              f"thread {json.dumps(usage)}, steal {row['steal_ticks']} ticks", flush=True)


if __name__ == "__main__":
    main()
