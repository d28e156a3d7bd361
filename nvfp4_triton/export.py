"""Quantize a BF16 diffusers transformer folder into ModelOpt's NVFP4 export layout (weights only).

Output: ``config.json`` with a flat ``quantization_config``, sharded ``diffusion_pytorch_model-*``
safetensors with their index, and a marker file that proves this tool wrote the folder. Each
quantized linear gets ModelOpt's tensors (``weight`` uint8, ``weight_scale`` e4m3 linear layout,
``weight_scale_2``); everything else is copied as stored.

Which weights: every 2-D floating-point ``<module>.weight`` whose module matches no exclude glob
(diffusers transformers keep only linears there); one whose in_features is not a multiple of 16
stays BF16 and is added to the config's ``ignore`` list.

Safety: the output is written to a temporary folder beside OUT and renamed into place only when
complete, so a crash leaves any previous OUT as it was. OUT may not equal SRC, contain it, or sit
inside it. An existing OUT is replaced only with ``overwrite=True`` and only if it carries this
tool's marker; nothing else is ever deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from . import __version__
from .format import BLOCK_SIZE, quantize_tensors
from .modelopt import CheckpointError, shard_files
from .shapes import RECIPES, is_excluded

MARKER = ".nvfp4_triton-export.json"
MARKER_TOOL = "nvfp4_triton.quantize"
SHARD_PREFIX = "diffusion_pytorch_model"


class UnsafeOutput(ValueError):
    """OUT would overlap SRC, or would replace a folder this tool did not write."""


def parse_size(text: str) -> int:
    """'5GB', '500MB', '123' (bytes) -> bytes (decimal units, as Hugging Face uses)."""
    units = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "B": 1}
    t = text.strip().upper()
    for unit, factor in units.items():
        if t.endswith(unit):
            number = t[: -len(unit)].strip()
            break
    else:
        number, factor = t, 1
    try:
        value = float(number) * factor
    except ValueError:
        raise ValueError(f"shard size must look like 5GB, 500MB or a byte count, got {text!r}") from None
    if value < 1:
        raise ValueError(f"shard size must be positive, got {text!r}")
    return int(value)


def written_by_us(folder: Path) -> bool:
    try:
        return json.loads((folder / MARKER).read_text()).get("tool") == MARKER_TOOL
    except (OSError, ValueError, AttributeError):
        return False


def check_paths(src: Path, out: Path, overwrite: bool) -> None:
    """Refuse every SRC/OUT combination that could damage data this tool does not own."""
    s, o = src.resolve(), out.resolve()
    if not s.is_dir():
        raise UnsafeOutput(f"SRC {src} is not a folder")
    if o == s:
        raise UnsafeOutput(f"OUT {out} is SRC itself; refusing to write over the input")
    if s in o.parents:
        raise UnsafeOutput(f"OUT {out} is inside SRC {src}; refusing")
    if o in s.parents:
        raise UnsafeOutput(f"SRC {src} is inside OUT {out}; refusing (replacing OUT would delete the input)")
    if o.exists() or o.is_symlink():
        if not overwrite:
            raise UnsafeOutput(f"OUT {out} exists; pass --overwrite to replace a folder this tool wrote")
        if not o.is_dir() or not written_by_us(o):
            raise UnsafeOutput(f"OUT {out} exists and was not written by nvfp4_triton.quantize (no {MARKER}); "
                               "refusing to replace it")


def quantize_folder(
    src: str | Path,
    out: str | Path,
    recipe: str = "modelopt",
    exclude: tuple[str, ...] = (),
    shard_size: int = 5 * 10**9,
    overwrite: bool = False,
    device: str = "cpu",
    progress: Callable[[str], None] = print,
) -> dict:
    """Write the NVFP4 export of ``src`` to ``out`` (see the module docstring); return a summary."""
    src, out = Path(src), Path(out)
    check_paths(src, out, overwrite)
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {sorted(RECIPES)}, got {recipe!r}")
    config_path = src / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{src} has no config.json; expected a diffusers component folder")
    config = json.loads(config_path.read_text())
    if "quantization_config" in config:
        raise CheckpointError(f"{src} is already quantized (its config.json has a quantization_config)")
    files = shard_files(src)
    globs = tuple(RECIPES[recipe]) + tuple(exclude)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.nvfp4-tmp-", dir=out.parent))
    try:
        summary = _write(src, tmp, files, config, globs, shard_size, torch.device(device), progress)
        (tmp / MARKER).write_text(json.dumps({
            "tool": MARKER_TOOL, "version": __version__, "source": str(src.resolve()),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "recipe": recipe,
        }, indent=1))
        _publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    progress(f"wrote {out}: {summary['quantized']} linears in NVFP4, {summary['kept']} tensors kept, "
             f"{summary['bytes_in'] / 1e9:.2f} GB -> {summary['bytes_out'] / 1e9:.2f} GB in {summary['shards']} shard(s)")
    return summary


def _publish(tmp: Path, out: Path) -> None:
    """Rename the finished folder into place; an old OUT (ours, checked) is moved aside, then removed."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.nvfp4-old-", dir=out.parent))
        os.rmdir(old)
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old)


def _write(src, tmp, files, config, globs, shard_size, device, progress) -> dict:
    by_file: dict[Path, list[str]] = {}
    for name, path in files.items():
        by_file.setdefault(path, []).append(name)
    kept_bf16: list[str] = []
    buffer: dict[str, torch.Tensor] = {}
    buffered = [0]  # bytes in buffer
    parts: list[tuple[str, list[str]]] = []
    counts = {"quantized": 0, "kept": 0, "bytes_in": 0, "bytes_out": 0}

    def flush() -> None:
        if buffer:
            part = f"part-{len(parts):05d}.safetensors"
            save_file(buffer, str(tmp / part), metadata={"format": "pt"})
            parts.append((part, list(buffer)))
            buffer.clear()
            buffered[0] = 0

    def add(name: str, t: torch.Tensor) -> None:
        buffer[name] = t.contiguous().cpu()
        size = t.numel() * t.element_size()
        counts["bytes_out"] += size
        buffered[0] += size
        if buffered[0] >= shard_size:
            flush()

    for i, path in enumerate(sorted(by_file), 1):
        q_here = 0
        with safe_open(str(path), framework="pt") as f:
            for name in sorted(by_file[path]):
                t = f.get_tensor(name)
                counts["bytes_in"] += t.numel() * t.element_size()
                module, _, leaf = name.rpartition(".")
                if leaf == "weight" and t.dim() == 2 and t.is_floating_point() and not is_excluded(module, globs):
                    if t.shape[1] % BLOCK_SIZE:
                        kept_bf16.append(module)
                    else:
                        packed, scale, global_scale = quantize_tensors(t.to(device))
                        add(f"{module}.weight", packed)
                        add(f"{module}.weight_scale", scale)
                        add(f"{module}.weight_scale_2", global_scale)
                        counts["quantized"] += 1
                        q_here += 1
                        continue
                add(name, t)
                counts["kept"] += 1
        progress(f"[{i}/{len(by_file)}] {path.name}: {len(by_file[path])} tensors, {q_here} linears quantized")
    flush()

    total = len(parts)
    weight_map = {}
    for j, (part, names) in enumerate(parts, 1):
        final = f"{SHARD_PREFIX}-{j:05d}-of-{total:05d}.safetensors"
        os.replace(tmp / part, tmp / final)
        weight_map.update({n: final for n in names})
    index = {"metadata": {"total_size": counts["bytes_out"]}, "weight_map": dict(sorted(weight_map.items()))}
    (tmp / f"{SHARD_PREFIX}.safetensors.index.json").write_text(json.dumps(index, indent=1))
    config = dict(config)
    config["quantization_config"] = {
        "quant_method": "modelopt",
        "quant_algo": "NVFP4",
        "producer": {"name": "nvfp4_triton", "version": __version__},
        "config_groups": {"group_0": {"weights": {"num_bits": 4, "type": "float", "group_size": BLOCK_SIZE,
                                                  "dynamic": False}, "targets": ["Linear"]}},
        "ignore": sorted(set(globs) | set(kept_bf16)),
    }
    (tmp / "config.json").write_text(json.dumps(config, indent=1))
    counts["shards"] = total
    counts["kept_bf16_for_shape"] = kept_bf16
    return counts
