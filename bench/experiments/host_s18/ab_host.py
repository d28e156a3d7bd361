"""Session 18, GPU: host time per eager layer call, session 17's library against this one, in one process.

Calls 1 and 2 of session 18 (``bench_host.py``, one H200 machine start, two processes) measured
the same code at 55.7 and 103.0 us a W4A16 call and 78.4 and 152.9 us an fp8 call at (512, 3072,
3072), while F.linear stayed at 17-18 us: only comparisons inside one process mean anything.
Here both libraries run in one process, in alternating rounds: session 17's (759c731, copied to
``.old/renamed/nvfp4_triton_s17`` with its torch op namespace renamed so both can be imported)
and the working tree's, whose layers keep their GEMMs ready per x layout (``eager.EagerPlans``)
and whose launches skip Triton's empty hook chains. Each round times 200 back-to-back calls
(``bench_host.per_call_us``); the table gives the median of 5 rounds, and checks that both
libraries give the same output bit for bit.

    PYTHONPATH=.old/renamed:. python3 bench/experiments/host_s18/ab_host.py
"""

import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import nvfp4_triton as new  # noqa: E402
import nvfp4_triton_s17 as old  # noqa: E402
from bench_host import per_call_us  # noqa: E402

SHAPES = [(512, 3072, 3072), (4096, 3072, 3072), (1, 18432, 3072), (16, 18432, 3072)]
"""(M, N, K): text stream, image stream, modulation, a small-M fused-kernel shape."""
ROUNDS = 5


def layers(lib, dense: torch.nn.Linear) -> dict:
    base = lib.NVFP4Linear.from_linear(dense)
    out = {"w4a16": base}
    fp8 = lib.NVFP4Linear.from_weight(base.nvfp4_weight, dense.bias.detach())
    fp8.activation = "fp8"
    out["fp8"] = fp8
    out["fp8-resident"] = lib.FP8Linear.from_nvfp4(base)
    return out


def main():
    print(torch.cuda.get_device_name(), torch.__version__, flush=True)
    print(f"{'shape':>20} {'mode':>13} {'F.linear':>9} {'s17 us':>8} {'s18 us':>8} {'s17/s18':>8}  same output")
    for m, n, k in SHAPES:
        torch.manual_seed(0)
        dense = torch.nn.Linear(k, n, dtype=torch.bfloat16, device="cuda")
        x = torch.randn(m, k, dtype=torch.bfloat16, device="cuda")
        sides = {"s17": layers(old, dense), "s18": layers(new, dense)}
        w = dense.weight.detach()
        with torch.no_grad():
            for mode in sides["s17"]:
                same = torch.equal(sides["s17"][mode](x), sides["s18"][mode](x))  # also tunes both, if new
                times = {"bf16": [], "s17": [], "s18": []}
                for _ in range(ROUNDS):
                    times["bf16"].append(per_call_us(lambda: F.linear(x, w, dense.bias), 200)[0])
                    for side, mods in sides.items():
                        layer = mods[mode]
                        times[side].append(per_call_us(lambda: layer(x), 200)[0])
                med = {side: statistics.median(t) for side, t in times.items()}
                print(f"{str((m, n, k)):>20} {mode:>13} {med['bf16']:9.1f} {med['s17']:8.1f} {med['s18']:8.1f} "
                      f"{med['s17'] / med['s18']:8.2f}  {same}", flush=True)


if __name__ == "__main__":
    main()
