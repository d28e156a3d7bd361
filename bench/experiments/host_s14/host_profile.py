"""GPU: where a compiled layer's host time goes, per mode, by cProfile and inductor's code (session 14).

Session 14's first call (``host_s13/host_per_layer.py``, H200) measured a compiled layer at
(4096, 3072, 3072): 27.7 us of host time for ``nn.Linear``, 54.0 for W4A16, 70.1 for fp8 and 71.9
for ``FP8Linear``, while an eager ``torch._scaled_mm`` costs only 7 us more than ``torch.mm``.
This compiles the same 8-layer stacks, profiles ``CALLS`` calls of each with cProfile (the
Python functions, and the C functions they call, that take the host time) and writes inductor's
generated module for each stack to ``OUT`` so its launches can be read.

    PYTHONPATH=. python3 bench/experiments/host_s14/host_profile.py OUT_DIR
"""
import shutil
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "host_s13"))

from bench_host import per_call_us, profile_table  # noqa: E402
from host_per_layer import LAYERS, K, M, N, compiled_forward, stacks  # noqa: E402

CALLS = 25


def generated_modules() -> set[str]:
    from torch._inductor.codecache import PyCodeCache
    return {getattr(module, "__file__", None) for module in PyCodeCache.modules} - {None}


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
    print(torch.cuda.get_device_name(), torch.__version__, f"M, N, K = {M}, {N}, {K}", flush=True)
    for name, layers in stacks().items():
        before = generated_modules()
        compiled = compiled_forward(layers)
        with torch.no_grad():
            compiled(x)
            torch.cuda.synchronize()
            for path in sorted(generated_modules() - before):
                shutil.copy(path, out / f"{name.replace(' ', '_')}-{Path(path).name}")
            per_layer = per_call_us(lambda: compiled(x), CALLS)[0] / LAYERS
            table = profile_table(lambda: compiled(x), CALLS, rows=25)
        print(f"\n===== {name}: {per_layer:.1f} us a layer; cProfile of {CALLS} calls x {LAYERS} layers", flush=True)
        print(table, flush=True)


if __name__ == "__main__":
    main()
