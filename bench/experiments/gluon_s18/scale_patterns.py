"""Block-scale patterns that tell a scale-path bug from others, for the Gluon kernels' GPU checks."""

import torch

from nvfp4_triton import NVFP4Weight


def scale_patterns(q: NVFP4Weight, with_zeros: bool = False) -> dict[str, NVFP4Weight]:
    """``q``'s codes under: every block scale 1.0; 1, 2, 4 and 0.5 by block index mod 4 (a swapped byte
    or block order shows here and not under the first); the quantizer's own; and with ``with_zeros``
    the quantizer's with every fifth block's scale zero while its codes are not."""
    scales = {"constant": torch.ones_like(q.block_scale, dtype=torch.float32),
              "cycle by block": torch.tensor([1.0, 2.0, 4.0, 0.5], device=q.packed.device).repeat(
                  q.block_scale.shape[1] // 4).expand(q.shape[0], -1),
              "quantizer's": q.block_scale.float()}
    if with_zeros:
        scales["some zero"] = q.block_scale.float().clone()
        scales["some zero"][:, ::5] = 0.0
    return {label: NVFP4Weight(q.packed, s.to(torch.float8_e4m3fn).contiguous(), q.global_scale, q.shape)
            for label, s in scales.items()}
