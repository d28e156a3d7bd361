"""Does the compiled fp8 step write x in bf16 beside its FP8 rows, and what would leaving it out save?

Session 7 (RESULTS.md) found inductor's kernels that produce and quantize x 5 ms slower per FLUX
step than BF16's matching kernels. The suspicion (bench/NOTES.md, "Not yet tried"): the FP8 op
takes x as well as its FP8 rows, so inductor must write x in bf16 too. This takes one FLUX.1-dev
single block at 1024x1024 (4608 tokens) and, under torch.compile(mode="reduce-overhead"), times:

- bf16: the block as diffusers builds it;
- fp8: our layers with activation="fp8", as the library runs them compiled;
- fp8-rows: the same, but each layer's op gets only the FP8 rows and a stand-in for x that has
  x's shape and dtype and no data (the FP8 strategy never reads x). Experiment only: it assumes
  every layer's tuned strategy is FP8 two-pass, and checks that it is.

It prints GPU time per block (back-to-back replays), the output's distance from fp8's, and saves
inductor's generated code per variant under $OUT (or ./out) to read which tensors each fused
kernel stores.

    PYTHONPATH=. python3 bench/experiments/fp8_graph_s7/single_block.py
"""
import os
import sys
from pathlib import Path

import torch
from diffusers.models.transformers.transformer_flux import FluxSingleTransformerBlock
from torch._inductor.utils import run_and_get_code

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from nvfp4_triton import NVFP4Linear, Fp8Config, gemm  # noqa: E402
from nvfp4_triton.fusion import fuse_gelu  # noqa: E402
from nvfp4_triton import fp8  # noqa: E402
from nvfp4_triton.autotune import m_bucket  # noqa: E402

TOKENS, DIM, HEADS, HEAD_DIM = 4608, 3072, 24, 128
_LIB = torch.library.Library("fp8_graph_s7", "DEF")
_LIB.define("w4a8_rows(Tensor xq_bits, Tensor row_scale, Tensor packed, Tensor block_scale_bits, Tensor global_scale, "
            "Tensor multipliers, Tensor column_scale, Tensor? bias, bool gelu) -> Tensor")


def _rows_impl(xq_bits, row_scale, packed, bits, global_scale, multipliers, column_scale, bias, gelu):
    m, k = xq_bits.shape
    n = packed.shape[0]
    stand_in = torch.empty((), dtype=torch.bfloat16, device=xq_bits.device).expand(m, k)  # shape and dtype, no data
    key = (xq_bits.device.index, torch.bfloat16, m_bucket(m), n, k, bias is not None)
    assert isinstance(gemm.fp8_tuner.lookup(key), Fp8Config), f"{key} is not tuned to the FP8 strategy"
    return gemm.w4a8_gemm(stand_in, packed, bits, global_scale, multipliers, column_scale, bias, gelu=gelu,
                          quantized=(xq_bits.view(torch.float8_e4m3fn), row_scale))


for _key in ("CPU", "CUDA"):
    _LIB.impl("w4a8_rows", _rows_impl, _key)
torch.library.register_fake("fp8_graph_s7::w4a8_rows", lambda xq, rs, packed, *a: xq.new_empty(
    (xq.shape[0], packed.shape[0]), dtype=torch.bfloat16), lib=_LIB)


def rows_forward(self, x):
    """NVFP4Linear.forward in fp8 mode with the experimental op while compiling (eager: the library's)."""
    if not torch.compiler.is_compiling():
        return NVFP4Linear.forward(self, x)
    xq, row_scale = fp8.quantize_rows(x.reshape(-1, x.shape[-1]))  # as ops.call_fp8_op does while compiling
    y = torch.ops.fp8_graph_s7.w4a8_rows(xq.view(torch.uint8), row_scale, self.weight,
                                         self.weight_scale.view(torch.uint8), self.weight_scale_2,
                                         self.fp8_multipliers, self.fp8_column_scale, self.bias, False)
    y = y.reshape(*x.shape[:-1], y.shape[-1])
    return torch.nn.functional.gelu(y, approximate="tanh") if self.gelu else y


def block(variant):
    torch.manual_seed(0)
    b = FluxSingleTransformerBlock(DIM, HEADS, HEAD_DIM).to("cuda", torch.bfloat16).eval().requires_grad_(False)
    if variant == "bf16":
        return b
    for name, m in list(b.named_modules()):
        if isinstance(m, torch.nn.Linear) and not name.startswith("norm"):
            parent, _, leaf = name.rpartition(".")
            layer = NVFP4Linear.from_linear(m)
            layer.activation = "fp8"
            if variant == "fp8-rows":
                layer.forward = rows_forward.__get__(layer)
            setattr(b.get_submodule(parent) if parent else b, leaf, layer)
    fuse_gelu(b)
    return b


def gpu_ms(fn, args, runs=50):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(runs):
        fn(*args)
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / runs


def main():
    out_dir = Path(os.environ.get("OUT", "out"))
    out_dir.mkdir(parents=True, exist_ok=True)
    g = torch.Generator(device="cuda").manual_seed(1)
    txt = 512
    hidden = torch.randn(1, TOKENS - txt, DIM, device="cuda", dtype=torch.bfloat16, generator=g)
    context = torch.randn(1, txt, DIM, device="cuda", dtype=torch.bfloat16, generator=g)
    temb = torch.randn(1, DIM, device="cuda", dtype=torch.bfloat16, generator=g)
    angles = torch.rand(TOKENS, HEAD_DIM, device="cuda", generator=g) * 6.28
    args = (hidden, context, temb, (angles.cos(), angles.sin()))
    results = {}
    with torch.no_grad():
        for variant in ("bf16", "fp8", "fp8-rows"):
            b = block(variant)
            b(*args)  # eager first: tunes every shape (the rows variant relies on it)
            torch._dynamo.reset()
            fn = torch.compile(b, mode="reduce-overhead", fullgraph=True)
            _, code = run_and_get_code(fn, *args)  # the compiling call
            (out_dir / f"{variant}.py").write_text("\n\n# ----\n\n".join(code))
            for _ in range(3):
                out = fn(*args)
            results[variant] = out[1].float().clone()
            ms = gpu_ms(fn, args)
            far = (float((results[variant] - results["fp8"]).norm() / results["fp8"].norm())
                   if "fp8" in results else float("nan"))
            print(f"{variant:9} {ms * 1000:8.1f} us per block (x 38 per FLUX step), rel L2 from fp8 {far:.2e}",
                  flush=True)
            del fn, b
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
