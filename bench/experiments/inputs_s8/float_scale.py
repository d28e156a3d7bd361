"""What do W4A16's extra graph inputs cost a compiled FLUX step? Measured before changing the library.

Session 8: a compiled W4A16 graph has 2148 inputs against BF16's 1160 and starts its first kernel
3 ms later. Each quantized layer passes its codes, block scales and a 0-d global scale. This
compiles the full-size transformer with W4A16 layers whose compiled forward is patched in one of
two ways:
- ``w4a16-float``: the global scale enters the graph as a Python float (a constant that dynamo
  checks by value), so 494 tensor inputs go. A float-taking probe op turns it back into a cached
  0-d tensor for the unchanged library kernels.
- ``w4a16-float-e4m3``: the same, and the block scales enter as E4M3, so inductor's wrapper no longer
  calls ``aten.view.dtype`` for each layer (the probe op views them).
For each variant it prints the step time (median of 10, GPU waited for after each), the host time,
the back-to-back "loop" time and the host time to the first Triton launch.

    PYTHONPATH=. python3 bench/experiments/inputs_s8/float_scale.py bf16 w4a16 w4a16-float w4a16-float-e4m3
"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path[:0] = [str(HERE.parents[2]), str(HERE.parents[1] / "startup_s8")]
import torch  # noqa: E402

from bench_flux import build_variant  # noqa: E402
from nvfp4_triton import NVFP4Linear, ops  # noqa: E402
from startup import compare_compiled  # noqa: E402  (times the first-kernel delay, host and step)

LIBRARY_FORWARD = NVFP4Linear.forward
_SCALARS: dict[tuple[float, torch.device], torch.Tensor] = {}


def _scalar(value: float, device: torch.device) -> torch.Tensor:
    """A float32 0-d tensor holding ``value`` on ``device``, made once per value (a fill, safe in graph capture)."""
    t = _SCALARS.get((value, device))
    if t is None:
        t = _SCALARS[(value, device)] = torch.full((), value, dtype=torch.float32, device=device)
    return t


def _linear_float(x, packed, block_scale, global_scale: float, bias, gelu=False):
    bits = block_scale if block_scale.dtype == torch.uint8 else block_scale.view(torch.uint8)
    return ops._w4a16_linear_impl(x, packed, bits, _scalar(global_scale, x.device), bias, gelu)


_LIB = torch.library.Library("nvfp4_probe", "DEF")
_LIB.define("w4a16_linear_f(Tensor x, Tensor packed, Tensor block_scale, float global_scale, Tensor? bias, "
            "bool gelu=False) -> Tensor")
for _key in ("CPU", "CUDA"):
    _LIB.impl("w4a16_linear_f", _linear_float, _key)
torch.library.register_fake("nvfp4_probe::w4a16_linear_f", ops._fake_output, lib=_LIB)


def patched_forward(e4m3: bool):
    def forward(self, x):
        if not torch.compiler.is_compiling() or self.activation is not None:
            return LIBRARY_FORWARD(self, x)
        scales = self.weight_scale if e4m3 else self.weight_scale.view(torch.uint8)
        return torch.ops.nvfp4_probe.w4a16_linear_f(x, self.weight, scales, self.global_scale_value, self.bias,
                                                    self.gelu)
    return forward


def build(name, args):
    model = build_variant("bf16" if name == "bf16" else "w4a16", args)
    for layer in model.modules():
        if isinstance(layer, NVFP4Linear):
            layer.global_scale_value = float(layer.weight_scale_2)
    NVFP4Linear.forward = patched_forward(name.endswith("e4m3")) if "float" in name else LIBRARY_FORWARD
    return model


def main():
    compare_compiled(sys.argv[1:] or ["bf16", "w4a16", "w4a16-float", "w4a16-float-e4m3"], build)
    NVFP4Linear.forward = LIBRARY_FORWARD


if __name__ == "__main__":
    main()
