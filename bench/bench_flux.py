"""End to end: one full-size FLUX.1-dev transformer forward (one denoising step), BF16 against NVFP4 modes.

    python bench/bench_flux.py [--variants bf16 w4a16 ...] [--activation none|fp8|nvfp4]
                               [--resolution 1024x1024] [--batch 1]
                               [--runs 10] [--no-compile] [--compile-mode MODE] [--fuse-qkv]
                               [--processes 1] [--host-profile] [--work DIR] [--json PATH]

Each variant builds the BF16 FluxTransformer2DModel from the bundled config with random weights
(fixed seed, no download; linears ~N(0, 1/in_features), norms 1, biases small) straight on the
GPU, converts it layer by layer (so two copies never coexist), then measures:
- the median latency of one forward over ``--runs`` runs after warm-up, eager and under
  ``torch.compile`` (default settings or ``--compile-mode``, the same for every variant), with
  dynamo's graph-break count and, under reduce-overhead, how many graphs inductor left uncaptured.
  Compiled NVFP4 layers are traced into inductor's graph (``nvfp4_triton.inline``) unless
  ``NVFP4_TRITON_INLINE_COMPILE=0`` keeps the opaque ops; the JSON records which (``traced_layers``);
- peak GPU memory during a forward, and the transformer's weight bytes;
- the output's error against BF16 (relative L2, cosine), from the BF16 output saved under --work;
- the CUDA time split of one forward, eager and compiled (torch.profiler): cuBLAS GEMMs, our
  Triton kernels, attention, everything else, and the heaviest kernels by name. Its sum
  ("GPU-busy") below the step time means the GPU sat idle part of the step: waiting on the host
  (Python and kernel launches; under CUDA graphs, dynamo's guards before the replay), or at
  kernel boundaries. The same profile gives the idle time between kernels ("idle ms") and the
  kernel pairs it falls between;
- the host time of a step (until the forward returns, before the GPU is waited for), the
  garbage collector's pauses in the timed steps (JSON: ``gc_ms_per_step``, ``gc_collections``
  per generation), the host CPU's state after them (``host_state``: cores allowed, load, mean
  clock), the calling thread's CPU time, context switches and last core over the timed steps
  (``host_thread``; "CPU ms" a step in the table), and with ``--host-profile`` a cProfile table
  of one eager forward.

Variants: bf16; w4a16 and w4a16-mixed (ModelOpt / mixed recipe, W4A16); fp8 (activation="fp8");
fp8-resident (weights converted to FP8 at load); w4a4 (Blackwell emulation; input_scale calibrated
on the benchmark input itself); fp8-mixed and w4a4-mixed (those modes on the mixed recipe, not in
the default list). ``--activation fp8|nvfp4`` runs the W4A16 variants in that mode instead
(``--variants bf16 w4a16-mixed --activation nvfp4``: BF16 and the mixed recipe under Blackwell
emulation). All NVFP4 variants fuse GELU-tanh into its GEMM. ``--fuse-qkv``
joins every q/k/v group into one linear (diffusers' fused projections, the separate layers
removed) before quantizing, for every variant BF16 included, so that each NVFP4 group gets one
global scale, as the groups ``fusion.fuse_qkv`` joins in a checkpoint have. Run bf16 first
(or in the same call): the others compare against its saved output. The JSON of several calls
is merged into one file with --json (rows replaced by variant, compile setting and --fuse-qkv).
``--processes N`` times each variant in N processes, in rounds (a row's ``process`` says which),
and adds a table of medians: the host's speed varies by process (bench/RESULTS.md, session 18).

Each variant runs in its own child process, and is profiled only after it was timed: once
torch.profiler has run, CUDA launches stay slower for the rest of the process (pytorch#144455),
which had inflated every later variant's host time here.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch._dynamo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from diffusers import FluxTransformer2DModel  # noqa: E402

from nvfp4_triton import FP8Linear, NVFP4Linear, inline  # noqa: E402
from nvfp4_triton.fusion import fuse_gelu  # noqa: E402
from nvfp4_triton.shapes import QKV_GROUPS, RECIPES, is_excluded, load_config  # noqa: E402

VARIANTS = {
    "bf16": None,
    "w4a16": dict(recipe="modelopt", activation=None),
    "w4a16-mixed": dict(recipe="mixed", activation=None),
    "fp8": dict(recipe="modelopt", activation="fp8"),
    "fp8-resident": dict(recipe="modelopt", resident="fp8"),
    "w4a4": dict(recipe="modelopt", activation="nvfp4"),
    "fp8-mixed": dict(recipe="mixed", activation="fp8"),
    "w4a4-mixed": dict(recipe="mixed", activation="nvfp4"),
}
DEFAULT_VARIANTS = ["bf16", "w4a16", "w4a16-mixed", "fp8", "fp8-resident", "w4a4"]
WITH_ACTIVATION = {"fp8": {"w4a16": "fp8", "w4a16-mixed": "fp8-mixed"},
                   "nvfp4": {"w4a16": "w4a4", "w4a16-mixed": "w4a4-mixed"}}
"""What ``--activation`` turns the W4A16 variants into: the same recipe with that activation mode."""
OURS = ("w4a16_gemm_kernel", "w4a16_gemv_kernel", "nvfp4_dequant_kernel",
        "fp8_row_quant_kernel", "fp8_operands_kernel", "nvfp4_act_quant_kernel")


def build_bf16(seed: int = 0) -> torch.nn.Module:
    with torch.device("meta"):
        model = FluxTransformer2DModel.from_config(load_config("flux1-dev"))
    model = model.to_empty(device="cuda").to(torch.bfloat16)
    gen = torch.Generator(device="cuda").manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.dim() == 2:
                t.copy_(torch.randn(t.shape, generator=gen, device="cuda") / math.sqrt(t.shape[1]))
            elif name.endswith("bias"):
                t.copy_(torch.randn(t.shape, generator=gen, device="cuda") * 0.01)
            else:
                t.fill_(1.0)
    return model.eval().requires_grad_(False)


def fuse_bf16_qkv(model: torch.nn.Module) -> None:
    """diffusers' fused q/k/v projections, without the separate layers diffusers keeps beside them."""
    model.fuse_qkv_projections()
    for attn in (m for m in model.modules() if getattr(m, "fused_projections", False)):
        for parts, _ in QKV_GROUPS:
            for part in parts:
                if getattr(attn, part, None) is not None:
                    delattr(attn, part)
    torch.cuda.empty_cache()


def inputs(resolution: tuple[int, int], batch: int, seed: int = 1) -> dict:
    g = torch.Generator(device="cuda").manual_seed(seed)
    img, txt = (resolution[0] // 16) * (resolution[1] // 16), 512
    bf = dict(device="cuda", dtype=torch.bfloat16)
    return dict(hidden_states=torch.randn(batch, img, 64, generator=g, **bf),
                encoder_hidden_states=torch.randn(batch, txt, 4096, generator=g, **bf),
                pooled_projections=torch.randn(batch, 768, generator=g, **bf),
                timestep=torch.full((batch,), 0.5, **bf), guidance=torch.full((batch,), 3.5, **bf),
                img_ids=torch.zeros(img, 3, device="cuda"), txt_ids=torch.zeros(txt, 3, device="cuda"))


def calibrate(model: torch.nn.Module, names: list[str], args: dict) -> dict[str, torch.Tensor]:
    """``input_scale`` per linear: amax of its input over one forward, / (6 * 448), as ModelOpt calibrates."""
    amax: dict[str, torch.Tensor] = {}
    hooks = [model.get_submodule(n).register_forward_pre_hook(
        lambda mod, a, n=n: amax.__setitem__(n, a[0].float().abs().amax())) for n in names]
    with torch.no_grad():
        model(**args, return_dict=False)
    for h in hooks:
        h.remove()
    return {n: (v / 2688).reshape(()) for n, v in amax.items()}


def convert(model: torch.nn.Module, recipe: str, activation=None, resident=None, args=None) -> torch.nn.Module:
    """Quantize every nn.Linear the recipe does not exclude, in place, one layer at a time; then fuse GELU."""
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and not is_excluded(n, RECIPES[recipe])]
    scales = calibrate(model, names, args) if activation == "nvfp4" else {}
    for name in names:
        parent, _, leaf = name.rpartition(".")
        owner = model.get_submodule(parent)
        layer = NVFP4Linear.from_linear(getattr(owner, leaf))
        layer.activation = activation
        if name in scales:
            layer.input_scale = scales[name]
        setattr(owner, leaf, FP8Linear.from_nvfp4(layer) if resident == "fp8" else layer)
    torch.cuda.empty_cache()
    fuse_gelu(model)
    return model


def build_variant(name: str, args: dict, fuse_qkv: bool = False) -> torch.nn.Module:
    """The full-size transformer with random weights, converted as ``VARIANTS[name]`` says."""
    model = build_bf16()
    if fuse_qkv:
        fuse_bf16_qkv(model)
    spec = VARIANTS[name]
    return model if spec is None else convert(model, args=args, **spec)


def weight_bytes(model: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))


class GcPauses:
    """A ``gc.callbacks`` entry that adds up the garbage collector's pauses: ms, and collections per generation.

    Eager fp8's host time per step varied from 100 to 167 ms between machine starts while BF16's
    did not (bench/RESULTS.md, session 14). A full collection over a FLUX process's objects would
    vary with how many objects each call leaves behind; it took 0.01 and 0.005 ms a step on a
    fast-host and a slow-host start (sessions 14 and 15), and the field stays in the JSON to show
    it on others.
    """

    def __init__(self) -> None:
        self.ms, self.collections, self._start = 0.0, [0, 0, 0], 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.ms += (time.perf_counter() - self._start) * 1e3
            self.collections[info["generation"]] += 1


def host_state() -> dict:
    """What the host CPU was doing when a variant was timed (Linux): the cores this process may run
    on, the 1-minute load average, and the mean clock of all cores. Host time per step varied by
    machine start for the same code (bench/RESULTS.md, session 14); these tell the machine from the code."""
    try:
        with open("/proc/cpuinfo") as info:
            clocks = [float(line.split(":")[1]) for line in info if line.startswith("cpu MHz")]
    except OSError:
        clocks = []
    return {"cpus_allowed": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "load_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "cpu_mhz_mean": sum(clocks) / len(clocks) if clocks else None}


class ThreadUsage:
    """What the calling thread did inside ``with`` blocks, added up (Linux): its CPU time and
    context switches, and the core it last ran on. Eager fp8's host time per step varied 1.6-2x
    between processes of one machine start, every function alike (bench/RESULTS.md, session 18):
    CPU time close to the host time means the thread ran all along, on a slow core; far below it,
    that it waited or was preempted (involuntary switches)."""

    def __init__(self) -> None:
        self.cpu_ms, self.involuntary, self.voluntary = 0.0, 0, 0

    def __enter__(self) -> ThreadUsage:
        self._start = resource.getrusage(resource.RUSAGE_THREAD)
        return self

    def __exit__(self, *exc) -> None:
        end, start = resource.getrusage(resource.RUSAGE_THREAD), self._start
        self.cpu_ms += (end.ru_utime + end.ru_stime - start.ru_utime - start.ru_stime) * 1e3
        self.involuntary += end.ru_nivcsw - start.ru_nivcsw
        self.voluntary += end.ru_nvcsw - start.ru_nvcsw

    def row(self, steps: int) -> dict:
        """The totals per step, and the core the thread is on now (read here, outside the timed forwards)."""
        try:
            with open("/proc/thread-self/stat") as stat:
                last_cpu = int(stat.read().rsplit(")", 1)[1].split()[36])  # field 39: processor
        except (OSError, IndexError, ValueError):
            last_cpu = None
        return {"cpu_ms_per_step": self.cpu_ms / steps, "involuntary_switches": self.involuntary,
                "voluntary_switches": self.voluntary, "last_cpu": last_cpu}


def time_forward(fn, args: dict, runs: int, gc_pauses: GcPauses | None = None, usage: ThreadUsage | None = None,
                 warmup: int = 3) -> tuple[float, float, float, torch.Tensor]:
    """(median step ms, median host ms, loop ms, output); ``gc_pauses`` and ``usage``, if given,
    record the collector and the calling thread during the steps timed alone.

    Each step is timed alone, the GPU waited for after it, so host work before its first kernel
    (under CUDA graphs: dynamo's guards) counts in full. Host ms is the time until the forward
    returns, before the GPU is waited for; near the step time it means the host set the pace.
    Loop ms is the mean step of ``runs`` more forwards issued back to back, as a denoising loop
    issues them: there one step's host work can overlap the GPU work of the step before.
    """
    with torch.no_grad():
        for _ in range(warmup):
            out = fn(**args, return_dict=False)[0]
        torch.cuda.synchronize()
        times, host = [], []
        gc_pauses = gc_pauses or GcPauses()
        gc.callbacks.append(gc_pauses)
        usage = usage or ThreadUsage()
        for _ in range(runs):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            t0 = time.perf_counter()
            with usage:  # the forward alone: waiting for the GPU below may spin the CPU
                start.record()
                out = fn(**args, return_dict=False)[0]
                end.record()
            host.append((time.perf_counter() - t0) * 1e3)
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        gc.callbacks.remove(gc_pauses)
        start.record()
        for _ in range(runs):
            out = fn(**args, return_dict=False)[0]
        end.record()
        torch.cuda.synchronize()
    return sorted(times)[len(times) // 2], sorted(host)[len(host) // 2], start.elapsed_time(end) / runs, out


def host_profile(model: torch.nn.Module, args: dict, rows: int = 30) -> str:
    """cProfile of one eager forward, by own time: where the host time of a step goes."""
    import cProfile
    import io
    import pstats

    prof = cProfile.Profile()
    with torch.no_grad():
        prof.enable()
        model(**args, return_dict=False)
        torch.cuda.synchronize()
        prof.disable()
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(rows)
    return text.getvalue()


def cuda_time_split(fn, args: dict, top: int = 40) -> tuple[dict[str, float], list[list]]:
    """ms of CUDA kernel time per class over one forward, the ``top`` kernels as [name, calls, ms], and
    the idle time between kernels (``idle_gaps``)."""
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad(), profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn(**args, return_dict=False)
        torch.cuda.synchronize()
    split = {"gemm_cublas": 0.0, "ours_triton": 0.0, "attention": 0.0, "other": 0.0}
    kernels = []
    for evt in prof.key_averages():
        us = getattr(evt, "device_time_total", None) or getattr(evt, "cuda_time_total", 0.0)
        if evt.device_type.name != "CUDA" or not us:
            continue
        kernels.append([evt.key[:160], evt.count, us / 1e3])
        name = evt.key.lower()
        if any(k in name for k in OURS):
            split["ours_triton"] += us / 1e3
        elif any(k in name for k in ("flash", "fmha", "attention", "sdpa")):
            split["attention"] += us / 1e3
        elif any(k in name for k in ("gemm", "nvjet", "xmma", "cutlass", "cublas", "sm90_", "sm80_")):
            split["gemm_cublas"] += us / 1e3
        else:
            split["other"] += us / 1e3
    spans = [(e.time_range.start, e.time_range.end, e.name) for e in prof.events() if e.device_type.name == "CUDA"]
    return split, sorted(kernels, key=lambda k: -k[2])[:top], idle_gaps(spans)


def idle_gaps(spans: list[tuple[float, float, str]], top: int = 12) -> dict:
    """Where the GPU sat idle between kernels: total ms, and the ``top`` (kernel before, kernel after)
    pairs by idle ms, from (start us, end us, name) spans. Time before the first kernel is not
    counted: under CUDA graphs, that is where the host's work before the replay shows."""
    pairs: dict[tuple[str, str], list[float]] = {}
    busy_until, before = None, ""
    for start, end, name in sorted(spans):
        if busy_until is not None and start > busy_until:
            pair = pairs.setdefault((before[:70], name[:70]), [0, 0.0])
            pair[0] += 1
            pair[1] += (start - busy_until) / 1e3
        if busy_until is None or end > busy_until:
            busy_until, before = end, name
    ranked = sorted(([a, b, n, ms] for (a, b), (n, ms) in pairs.items()), key=lambda p: -p[3])
    return {"idle_ms": sum(p[3] for p in ranked), "gaps": sum(p[2] for p in ranked), "top_pairs": ranked[:top]}


def run_variant(name: str, args: dict, opts, work: Path) -> list[dict]:
    """Time one variant eager (and compiled), then profile each: the profiler slows later launches."""
    t0 = time.perf_counter()
    model = build_variant(name, args, opts.fuse_qkv)
    build_s = time.perf_counter() - t0
    torch.cuda.synchronize()
    rows, fns = [], []
    modes = [False] if opts.no_compile else [False, True]
    for compiled in modes:
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        fn = torch.compile(model, mode=opts.compile_mode) if compiled else model
        fns.append(fn)
        torch.cuda.reset_peak_memory_stats()
        t1 = time.perf_counter()
        gc_pauses, usage = GcPauses(), ThreadUsage()
        ms, host_ms, loop_ms, out = time_forward(fn, args, opts.runs, gc_pauses, usage)
        row = {"variant": name, "compiled": compiled, "compile_mode": opts.compile_mode if compiled else None,
               "fused_qkv": opts.fuse_qkv,
               "step_ms": ms, "host_ms": host_ms, "loop_ms": loop_ms, "build_s": build_s,
               "gc_ms_per_step": gc_pauses.ms / opts.runs, "gc_collections": gc_pauses.collections,
               "host_state": host_state(), "host_thread": usage.row(opts.runs),
               "warmup_and_runs_s": time.perf_counter() - t1,
               "peak_bytes": torch.cuda.max_memory_allocated(), "weight_bytes": weight_bytes(model),
               "graph_breaks": sum(torch._dynamo.utils.counters["graph_break"].values()) if compiled else 0,
               # graphs that reduce-overhead left uncaptured (they run eagerly, host time included)
               "cudagraph_skips": torch._dynamo.utils.counters["inductor"]["cudagraph_skips"] if compiled else 0}
        ref_path = work / f"bf16-{'compiled' if compiled else 'eager'}{'-fused-qkv' if opts.fuse_qkv else ''}.pt"
        if name == "bf16":
            torch.save(out.float().cpu(), ref_path)
        if ref_path.exists():
            ref = torch.load(ref_path).cuda()
            o = out.float()
            row["rel_l2_vs_bf16"] = float((o - ref).norm() / ref.norm())
            row["cosine_vs_bf16"] = float(torch.nn.functional.cosine_similarity(o.flatten(), ref.flatten(), dim=0))
        rows.append(row)
        print(json.dumps(row), flush=True)
    if opts.host_profile:
        print(f"--- {name}: cProfile of one eager forward\n{host_profile(model, args)}", flush=True)
    for row, fn in zip(rows, fns):
        row["cuda_ms_split"], row["top_kernels"], row["idle"] = cuda_time_split(fn, args)
        print(json.dumps({"variant": name, "compiled": row["compiled"], "cuda_ms_split": row["cuda_ms_split"],
                          "idle_ms": row["idle"]["idle_ms"], "gaps": row["idle"]["gaps"]}), flush=True)
        for before, after, count, ms in row["idle"]["top_pairs"][:5]:
            print(f"  idle {ms:6.2f} ms over {count:4} gaps: {before} -> {after}", flush=True)
    del model, fns
    torch.cuda.empty_cache()
    return rows


def run_each_in_own_process(opts) -> tuple[list[dict], list[str]]:
    """One child process per variant: nothing (profiler state, compiled graphs, caches in memory,
    allocator pools) carries from one variant's timing into the next. With ``--processes N``, N
    rounds of them, each row marked with its round (``process``): on an H200 machine the host
    ran every function of a process 1.5-1.9x slower in some processes than in others, so one
    process per variant can mislead (bench/RESULTS.md, session 18).

    Returns the rows and the variants whose child failed (out of memory, say); the others still count.
    """
    rows, failed = [], []
    common = ["--resolution", opts.resolution, "--batch", str(opts.batch), "--runs", str(opts.runs),
              "--work", str(opts.work)]
    common += ["--no-compile"] * opts.no_compile + ["--host-profile"] * opts.host_profile + ["--fuse-qkv"] * opts.fuse_qkv
    common += ["--compile-mode", opts.compile_mode] if opts.compile_mode else []
    with tempfile.TemporaryDirectory() as tmp:
        for process in range(opts.processes):
            for name in opts.variants:
                out = Path(tmp) / f"{name}-{process}.json"
                child = subprocess.run([sys.executable, __file__, "--variants", name, "--rows-out", str(out),
                                        *common])
                if child.returncode != 0 or not out.exists():
                    print(f"variant {name} failed (exit status {child.returncode}): no rows for it", flush=True)
                    failed.append(name)
                    continue
                rows += [{**row, "process": process} for row in json.loads(out.read_text())]
    return rows, failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=DEFAULT_VARIANTS)
    parser.add_argument("--activation", choices=["none", *WITH_ACTIVATION], default="none",
                        help="run the W4A16 variants with this activation mode instead: fp8 makes w4a16 and "
                             "w4a16-mixed into fp8 and fp8-mixed, nvfp4 (Blackwell emulation) into w4a4 and w4a4-mixed")
    parser.add_argument("--resolution", default="1024x1024")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--no-compile", action="store_true", help="eager only")
    parser.add_argument("--compile-mode", help="torch.compile mode for every variant, e.g. reduce-overhead (CUDA "
                                               "graphs; two-pass takes its dense weights from the graphs' pool)")
    parser.add_argument("--fuse-qkv", action="store_true", help="one linear per q/k/v group, in every variant")
    parser.add_argument("--host-profile", action="store_true", help="print a cProfile table of one eager forward")
    parser.add_argument("--work", type=Path, default=Path("/tmp/nvfp4_bench_flux"),
                        help="folder for the BF16 reference outputs")
    parser.add_argument("--json", type=Path, help="merge the rows into this JSON file")
    parser.add_argument("--processes", type=int, default=1,
                        help="time each variant in this many processes, in rounds; the table adds their medians")
    parser.add_argument("--rows-out", type=Path, help=argparse.SUPPRESS)  # a child's rows, for its parent
    opts = parser.parse_args()
    renamed = WITH_ACTIVATION.get(opts.activation, {})
    opts.variants = list(dict.fromkeys(renamed.get(name, name) for name in opts.variants))
    if not torch.cuda.is_available():
        parser.error("needs a CUDA GPU")
    resolution = tuple(int(v) for v in opts.resolution.lower().split("x"))
    opts.work.mkdir(parents=True, exist_ok=True)
    env = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
           "triton": __import__("triton").__version__, "diffusers": __import__("diffusers").__version__,
           "resolution": opts.resolution, "batch": opts.batch, "runs": opts.runs,
           "traced_layers": inline.INLINE_COMPILED}
    failed = []
    if opts.processes < 1:
        parser.error("--processes must be at least 1")
    if len(opts.variants) > 1 or opts.processes > 1:
        print(json.dumps(env), flush=True)
        rows, failed = run_each_in_own_process(opts)
    else:
        rows = run_variant(opts.variants[0], inputs(resolution, opts.batch), opts, opts.work)
        if opts.rows_out:
            opts.rows_out.write_text(json.dumps(rows))
            return 0
    if opts.json:
        old = json.loads(opts.json.read_text()) if opts.json.exists() else {"rows": []}
        def key(r):
            return r["variant"], r["compiled"], r.get("compile_mode"), r.get("fused_qkv", False)

        fresh = {key(r) for r in rows}
        kept = [r for r in old["rows"] if key(r) not in fresh]
        opts.json.parent.mkdir(parents=True, exist_ok=True)
        opts.json.write_text(json.dumps({"environment": env, "rows": kept + rows}, indent=2))
    report(rows)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


def report(rows: list[dict]) -> None:
    bf16 = [r for r in rows if r["variant"] == "bf16"]
    base = {compiled: statistics.median(r["step_ms"] for r in bf16 if r["compiled"] == compiled)
            for compiled in {r["compiled"] for r in bf16}}
    print(f"{'variant':14} {'mode':15} {'step ms':>8} {'vs bf16':>8} {'loop ms':>8} {'host ms':>8} {'CPU ms':>7} "
          f"{'GPU-busy ms':>11} {'idle ms':>8} {'weights GiB':>12} {'peak GiB':>9} {'rel L2':>7} {'cosine':>7} "
          f"{'breaks':>6}")
    for r in rows:
        speed = f"{base[r['compiled']] / r['step_ms']:8.3f}" if r["compiled"] in base else f"{'':8}"
        busy = sum(r["cuda_ms_split"].values()) if "cuda_ms_split" in r else float("nan")
        idle = r["idle"]["idle_ms"] if "idle" in r else float("nan")
        mode = (r.get("compile_mode") or "compile") if r["compiled"] else "eager"
        cpu = r.get("host_thread", {}).get("cpu_ms_per_step", float("nan"))  # rows of earlier sessions lack it
        print(f"{r['variant']:14} {mode:15} {r['step_ms']:8.1f} {speed} {r.get('loop_ms', float('nan')):8.1f} "
              f"{r['host_ms']:8.1f} {cpu:7.1f} {busy:11.1f} {idle:8.1f} "
              f"{r['weight_bytes'] / 2**30:12.2f} {r['peak_bytes'] / 2**30:9.2f} "
              f"{r.get('rel_l2_vs_bf16', float('nan')):7.4f} {r.get('cosine_vs_bf16', float('nan')):7.4f} "
              f"{r['graph_breaks']:6}")
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["variant"], r["compiled"], r.get("compile_mode")), []).append(r)
    if all(len(group) == 1 for group in groups.values()):
        return
    print(f"\nmedians over processes (BF16's median step is the ratios' base)\n{'variant':14} {'mode':15} "
          f"{'processes':>9} {'step ms':>8} {'min-max':>13} {'vs bf16':>8} {'host ms':>8}")
    for (variant, compiled, mode), group in groups.items():
        steps = [r["step_ms"] for r in group]
        step = statistics.median(steps)
        speed = f"{base[compiled] / step:8.3f}" if compiled in base else f"{'':8}"
        label = (mode or "compile") if compiled else "eager"
        print(f"{variant:14} {label:15} {len(group):9} {step:8.1f} {min(steps):6.1f}-{max(steps):6.1f} {speed} "
              f"{statistics.median([r['host_ms'] for r in group]):8.1f}")


if __name__ == "__main__":
    sys.exit(main())
