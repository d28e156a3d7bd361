"""Every kernel compiles for sm_90, and the W4A16 ones for sm_80, the way a launch specializes it,
checked without a GPU.

The interpreter hands kernels every integer as a tensor. A launch on a GPU makes an integer equal
to 1 a constant, and code that breaks on constants passes the interpreter: the split GEMV's sum
failed to compile on an H200 at M = 1 while every CPU test passed (bench/RESULTS.md, session 13).
Triton compiles to a cubin without a GPU, and ``bench/kernel_asm.py`` specializes the arguments as
a launch does; this runs it, with the interpreter off, on shapes with M, N or K tiny and on FLUX
shapes.
"""

import json
import subprocess
import sys
import textwrap

import pytest

from .subproc import REPO, python_env

CASES = {  # kernel_asm name: [(M, N, K), kernel_asm config]
    "fused": [((1, 3072, 3072), [16, 32, 128, 4, 4, 8]), ((4096, 3072, 3072), []),
              ((1, 3072, 12288), [16, 64, 128, 4, 1, 8, 8]), ((512, 3072, 3072), [256, 64, 64, 8, 3])],
    "gemv": [((1, 18432, 3072), [1, 32, 512, 4]), ((1, 3072, 12288), [1, 16, 512, 4, 8]),
             ((4, 3072, 12288), [4, 32, 512, 4, 4])],
    "dequant": [((1, 1, 32), []), ((1, 3072, 3072), [])],
    "dequant-fp8": [((1, 3072, 12288), [])],
    "fp8-quant": [((1, 1, 3072), []), ((4608, 1, 15360), [16384, 8]), ((1, 1, 20000), [2048, 4])],
    "fp8-operands": [((1, 3072, 3072), []), ((512, 3072, 12288), [])],
    "nvfp4-quant": [((1, 1, 3072), [])],
    # Gluon; only Ada and Hopper (sm_89+), so not built for sm_80
    "ring": [((1, 18432, 3072), [64, 4, 3]), ((8, 3072, 12288), [64, 4, 2, 8]), ((11, 9216, 3072), [128, 8, 4, 2]),
             ((22, 12288, 3072), [64, 4, 2, 4])],
    # Gluon on wgmma and TMA, warp-specialized; only Hopper (sm_90)
    "wgmma": [((512, 3072, 3072), [256, 4]), ((512, 3072, 3072), [256, 5]), ((100, 192, 4160), [128, 2])],
}

COMPILE = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, "bench")
    from kernel_asm import KERNELS, compile_kernel
    for shape, config in json.loads(sys.argv[2]):
        fn, args, warps, stages, _ = KERNELS[sys.argv[1]](*shape, config)
        compile_kernel(fn, args, warps, stages, int(sys.argv[3]))
""")

AMPERE = ("fused", "gemv", "dequant")
"""The W4A16 kernels, which must also build for GPUs without FP8 (sm_80): Ampere lacks instructions
that Hopper has (``mul.bf16x2`` broke the fused kernel there in session 16)."""


@pytest.mark.parametrize("kernel, arch", [(k, 90) for k in sorted(CASES)] + [(k, 80) for k in AMPERE])
def test_kernel_compiles_as_a_launch_specializes_it(kernel, arch, tmp_path):
    env = python_env(TRITON_INTERPRET="0", TRITON_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", COMPILE, kernel, json.dumps(CASES[kernel]), str(arch)], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
