"""Full-size FLUX.1-dev: quantize with our tool, load with load_transformer, one forward at 1024x1024.

    python bench/bench_flux_load.py [--work DIR] [--json PATH]

Builds a BF16 FLUX.1-dev transformer folder from the bundled config with random weights (fixed
seed, no download; linears ~N(0, 1/in_features), norms 1, biases small), runs
``nvfp4_triton.export.quantize_folder`` on it, then compares BF16 (diffusers ``from_pretrained``)
with NVFP4 (``nvfp4_triton.flux.load_transformer``): load time, transformer weight bytes on the
GPU, peak GPU memory while loading and during one forward, forward latency, and the output
error of NVFP4 against BF16. Needs ~31 GB of free space under --work (default /dev/shm) and
a GPU with ~30 GB free. Forward latency here is indicative: the GEMM kernel is not yet fast.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from diffusers import FluxTransformer2DModel  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from nvfp4_triton.export import quantize_folder  # noqa: E402
from nvfp4_triton.flux import load_transformer  # noqa: E402
from nvfp4_triton.shapes import load_config  # noqa: E402


def make_bf16_folder(folder: Path, seed: int = 0, shard_bytes: int = 5 * 10**9) -> int:
    """Write a random-weight BF16 FLUX.1-dev transformer folder; return its tensor bytes."""
    config = load_config("flux1-dev")
    with torch.device("meta"):
        model = FluxTransformer2DModel.from_config(config)
    gen = torch.Generator(device="cuda").manual_seed(seed)
    folder.mkdir(parents=True)
    shards, buffer, size, total = [], {}, 0, 0
    for name, meta in model.state_dict().items():
        if meta.dim() == 2:
            t = torch.randn(meta.shape, generator=gen, device="cuda") / math.sqrt(meta.shape[1])
        elif name.endswith("bias"):
            t = torch.randn(meta.shape, generator=gen, device="cuda") * 0.01
        else:
            t = torch.ones(meta.shape, device="cuda")
        buffer[name] = t.to(torch.bfloat16).cpu()
        size += buffer[name].numel() * 2
        total += buffer[name].numel() * 2
        if size >= shard_bytes:
            shards.append(buffer)
            buffer, size = {}, 0
    shards.append(buffer)
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        fname = f"diffusion_pytorch_model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(folder / fname), metadata={"format": "pt"})
        weight_map.update({n: fname for n in shard})
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps(config))
    return total


def inputs(seed: int = 1) -> dict:
    g = torch.Generator(device="cuda").manual_seed(seed)
    img, txt = 4096, 512
    bf = dict(device="cuda", dtype=torch.bfloat16)
    return dict(hidden_states=torch.randn(1, img, 64, generator=g, **bf),
                encoder_hidden_states=torch.randn(1, txt, 4096, generator=g, **bf),
                pooled_projections=torch.randn(1, 768, generator=g, **bf),
                timestep=torch.tensor([0.5], **bf), guidance=torch.tensor([3.5], **bf),
                img_ids=torch.zeros(img, 3, device="cuda"), txt_ids=torch.zeros(txt, 3, device="cuda"))


def gpu_bytes(model: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))


def measure(load, args) -> tuple[dict, torch.Tensor]:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    model = load()
    torch.cuda.synchronize()
    load_s = time.perf_counter() - t0
    peak_load = torch.cuda.max_memory_allocated()
    with torch.no_grad():
        model(**args, return_dict=False)  # warm-up: compiles kernels
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            out = model(**args, return_dict=False)[0]
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    result = {"load_s": load_s, "weight_bytes": gpu_bytes(model), "peak_load_bytes": peak_load,
              "peak_forward_bytes": torch.cuda.max_memory_allocated(), "forward_ms": sorted(times)[1] * 1e3}
    del model
    torch.cuda.empty_cache()
    return result, out.float()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/dev/shm/nvfp4_flux_bench"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.work.exists():
        sys.exit(f"{args.work} exists; give an empty --work folder")
    try:
        t0 = time.perf_counter()
        bf16_bytes = make_bf16_folder(args.work / "bf16")
        made_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        quantize_folder(args.work / "bf16", args.work / "nvfp4", device="cuda", progress=lambda s: print(s, flush=True))
        quant_s = time.perf_counter() - t0
        x = inputs()
        bf16, ref = measure(lambda: FluxTransformer2DModel.from_pretrained(args.work / "bf16", torch_dtype=torch.bfloat16)
                            .to("cuda").eval(), x)
        nvfp4, out = measure(lambda: load_transformer(args.work / "nvfp4", device="cuda"), x)
    finally:
        shutil.rmtree(args.work, ignore_errors=True)
    err = float((out - ref).norm() / ref.norm())
    cos = float(torch.nn.functional.cosine_similarity(out.flatten(), ref.flatten(), dim=0))
    result = {"gpu": torch.cuda.get_device_name(), "bf16_folder_bytes": bf16_bytes, "make_bf16_s": made_s,
              "quantize_s": quant_s, "bf16": bf16, "nvfp4": nvfp4, "rel_l2_vs_bf16": err, "cosine_vs_bf16": cos}
    gib = 2**30
    print(f"{'':6} {'load s':>7} {'weights GiB':>12} {'peak load GiB':>14} {'peak fwd GiB':>13} {'fwd ms':>8}")
    for name in ("bf16", "nvfp4"):
        r = result[name]
        print(f"{name:6} {r['load_s']:7.1f} {r['weight_bytes'] / gib:12.2f} {r['peak_load_bytes'] / gib:14.2f} "
              f"{r['peak_forward_bytes'] / gib:13.2f} {r['forward_ms']:8.1f}")
    print(f"weights: NVFP4 / BF16 = {nvfp4['weight_bytes'] / bf16['weight_bytes']:.3f}; output vs BF16: "
          f"rel L2 {err:.3f}, cosine {cos:.4f}; quantize tool {quant_s:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
