"""GEMM shapes of FLUX.1-dev's NVFP4 linears at 1024x1024, batch 1 (ModelOpt recipe).

From ../shared/docs/flux-shapes.md: image tokens 4096, text tokens 512, single-stream 4608,
modulation M = batch. Each entry: (label, M, N, K, calls per transformer step).
"""

FLUX_1024 = [
    ("norm1(_context).linear", 1, 18432, 3072, 38),
    ("single norm.linear", 1, 9216, 3072, 38),
    ("attn q/k/v/out (img)", 4096, 3072, 3072, 76),
    ("attn add_q/k/v, to_add_out (txt)", 512, 3072, 3072, 76),
    ("ff.net.0.proj (img)", 4096, 12288, 3072, 19),
    ("ff.net.2 (img)", 4096, 3072, 12288, 19),
    ("ff_context.net.0.proj (txt)", 512, 12288, 3072, 19),
    ("ff_context.net.2 (txt)", 512, 3072, 12288, 19),
    ("single to_q/k/v", 4608, 3072, 3072, 114),
    ("single proj_mlp", 4608, 12288, 3072, 38),
    ("single proj_out", 4608, 3072, 15360, 38),
]

# Weight-streaming regime: modulation-like layers at small batch.
SMALL_M = [
    (f"small M={m}", m, n, k, 0)
    for m in (1, 2, 4, 8, 16)
    for n, k in ((18432, 3072), (9216, 3072), (12288, 3072), (3072, 12288))
]

SHAPE_SETS = {"flux": FLUX_1024, "small": SMALL_M, "all": FLUX_1024 + SMALL_M}
