"""Read ModelOpt NVFP4 exports (diffusers component folders) into kernel-ready NVFP4 weights.

Handles a single ``.safetensors`` file or a sharded export with its ``*.safetensors.index.json``;
the quantization settings in ``config.json["quantization_config"]`` (flat form) or
``hf_quant_config.json`` (nested form); block scales stored linear or swizzled (128x4); ModelOpt's
nibble order or the swapped one; per-module ``weight_scale_2`` and optional ``input_scale``.
Tensors are read lazily with ``safetensors.safe_open`` (never pickle). Every quantized module is
checked; a problem raises :class:`CheckpointError` naming the module, the tensor, what was found
and what was expected, before anything is returned.

Layout rule: an explicit argument wins, then the config key ``checkpoint_weight_scale_layout``,
then the shapes (a module whose scale tensor has only one possible reading decides for the whole
checkpoint), then ModelOpt's default, linear.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from . import format as fmt
from .shapes import is_excluded
from .weight import SCALE_LAYOUTS, NVFP4Weight

class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded as it claims to be."""


@dataclass(frozen=True)
class QuantSettings:
    """What the checkpoint's quantization config says, and where each setting came from."""

    algo: str
    group_size: int
    exclude: tuple[str, ...]
    scale_layout: str
    scale_layout_source: str
    swap_nibbles: bool
    config_file: str


@dataclass
class QuantizedLinear:
    """One NVFP4 module: its weight (linear scale layout, ModelOpt nibble order), bias and input scale."""

    weight: NVFP4Weight
    bias: torch.Tensor | None = None
    input_scale: torch.Tensor | None = None


@dataclass
class Checkpoint:
    """A loaded export: quantized modules by name, every other tensor by its full name, and the configs."""

    path: Path
    config: dict
    settings: QuantSettings
    quantized: dict[str, QuantizedLinear] = field(default_factory=dict)
    dense: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def nvfp4_bytes(self) -> int:
        return sum(q.weight.nbytes for q in self.quantized.values())


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from err


def read_settings(folder: Path) -> tuple[dict, dict]:
    """(model config without its quantization block, raw quantization settings) of an export folder."""
    config_path, hf_path = folder / "config.json", folder / "hf_quant_config.json"
    config = _read_json(config_path) if config_path.is_file() else {}
    if "quantization_config" in config:
        quant = dict(config.pop("quantization_config"))
        group = quant.get("config_groups", {}).get("group_0", {}).get("weights", {})
        raw = {"algo": quant.get("quant_algo"), "group_size": group.get("group_size", 16),
               "exclude": quant.get("ignore", []), "file": str(config_path), "extra": quant}
    elif hf_path.is_file():
        quant = _read_json(hf_path).get("quantization", {})
        raw = {"algo": quant.get("quant_algo"), "group_size": quant.get("group_size", 16),
               "exclude": quant.get("exclude_modules", []), "file": str(hf_path), "extra": quant}
    else:
        raise CheckpointError(f"{folder}: no quantization settings (neither config.json with a "
                              "quantization_config nor hf_quant_config.json)")
    if raw["algo"] != "NVFP4":
        raise CheckpointError(f"{raw['file']}: quant_algo is {raw['algo']!r}; only 'NVFP4' is supported")
    if raw["group_size"] != fmt.BLOCK_SIZE:
        raise CheckpointError(f"{raw['file']}: group_size is {raw['group_size']}; NVFP4 uses {fmt.BLOCK_SIZE}")
    return config, raw


def shard_files(folder: Path) -> dict[str, Path]:
    """Tensor name -> file, from an index or from the folder's single safetensors file."""
    indexes = sorted(folder.glob("*.safetensors.index.json"))
    if len(indexes) > 1:
        raise CheckpointError(f"{folder}: several safetensors indexes ({', '.join(p.name for p in indexes)})")
    if indexes:
        index = _read_json(indexes[0])
        if "weight_map" not in index:
            raise CheckpointError(f"{indexes[0]}: no weight_map")
        files = {name: folder / fname for name, fname in index["weight_map"].items()}
        for path in sorted(set(files.values())):
            if not path.is_file():
                raise CheckpointError(f"{indexes[0].name} points to {path.name}, which does not exist in {folder}")
        return files
    singles = sorted(folder.glob("*.safetensors"))
    if len(singles) != 1:
        raise CheckpointError(f"{folder}: expected one .safetensors file or an index, found {len(singles)} files")
    return {name: singles[0] for name in _keys(singles[0])}


def _keys(path: Path) -> list[str]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path}: unreadable safetensors file ({err}); truncated or corrupt?") from err


class _Shards:
    """Lazy tensor access across shard files, each opened once."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files
        self._open: dict[Path, object] = {}

    def get(self, name: str) -> torch.Tensor:
        return self._read(name, lambda f: f.get_tensor(name))

    def stored_dtype(self, name: str) -> str:
        """The safetensors dtype code of a tensor ("U8", "BF16", ...) without reading its data."""
        return self._read(name, lambda f: f.get_slice(name).get_dtype())

    def shape(self, name: str) -> tuple[int, ...]:
        """A tensor's shape without reading its data."""
        return tuple(self._read(name, lambda f: f.get_slice(name).get_shape()))

    def _read(self, name, fn):
        path = self.files[name]
        try:
            if path not in self._open:
                self._open[path] = safe_open(str(path), framework="pt")
            return fn(self._open[path])
        except (SafetensorError, OSError, KeyError) as err:
            raise CheckpointError(f"{path.name}: cannot read tensor {name} ({err}); truncated or corrupt?") from err

    def close(self) -> None:
        for handle in self._open.values():
            handle.__exit__(None, None, None)
        self._open.clear()


def _scale_reading(scale_shape: tuple[int, ...], n: int, k: int) -> set[str]:
    """The layouts that a scale tensor of this shape allows for an [n, k] weight."""
    readings = set()
    if tuple(scale_shape) == (n, k // fmt.BLOCK_SIZE):
        readings.add("linear")
    rp, cp = fmt.swizzled_scale_shape(n, k // fmt.BLOCK_SIZE)
    if tuple(scale_shape) in ((rp, cp), (rp * cp,)):
        readings.add("swizzled")
    return readings


def load_checkpoint(
    path: str | Path,
    scale_layout: str | None = None,
    swap_nibbles: bool | None = None,
    device: torch.device | str = "cpu",
) -> Checkpoint:
    """Load a ModelOpt NVFP4 export into kernel-ready weights (see the module docstring for the rules).

    ``scale_layout`` ("linear" / "swizzled") and ``swap_nibbles`` override the config and detection.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is not a folder (expected a diffusers component folder such as transformer/)")
    if scale_layout is not None and scale_layout not in SCALE_LAYOUTS:
        raise ValueError(f"scale_layout must be one of {SCALE_LAYOUTS}, got {scale_layout!r}")
    config, raw = read_settings(folder)
    files = shard_files(folder)
    shards = _Shards(files)
    try:
        return _load(folder, config, raw, files, shards, scale_layout, swap_nibbles, torch.device(device))
    finally:
        shards.close()


def _load(folder, config, raw, files, shards, scale_layout, swap_nibbles, device) -> Checkpoint:
    exclude = tuple(raw["exclude"])
    # A module is NVFP4 if it has any NVFP4-only tensor or packed uint8 weights.
    modules = {name.rsplit(".", 1)[0] for name in files
               if name.endswith((".weight_scale", ".weight_scale_2", ".input_scale"))
               or (name.endswith(".weight") and shards.stored_dtype(name) == "U8")}
    problems: list[str] = []
    # Which layout: argument, config key, unambiguous shapes, ModelOpt default.
    if scale_layout is not None:
        layout, source = scale_layout, "argument"
    elif raw["extra"].get("checkpoint_weight_scale_layout") in SCALE_LAYOUTS:
        layout, source = raw["extra"]["checkpoint_weight_scale_layout"], f"{Path(raw['file']).name} key"
    else:
        layout, source = None, None
        for m in sorted(modules):
            if m + ".weight" not in files or m + ".weight_scale" not in files:
                continue
            weight_shape = shards.shape(m + ".weight")
            readings = _scale_reading(shards.shape(m + ".weight_scale"), weight_shape[0], weight_shape[-1] * 2)
            if len(readings) == 1:
                layout, source = readings.pop(), f"detected from {m}.weight_scale's shape"
                break
        if layout is None:
            layout, source = "linear", "assumed: ModelOpt's default (every scale shape fits both layouts)"
    if swap_nibbles is None:
        swap_nibbles = bool(raw["extra"].get("swap_weight_nibbles", False))
    settings = QuantSettings(raw["algo"], raw["group_size"], exclude, layout, source, swap_nibbles, raw["file"])
    ckpt = Checkpoint(folder, config, settings)

    for m in sorted(modules):
        try:
            ckpt.quantized[m] = _quantized_module(m, shards, files, layout, swap_nibbles, device)
        except CheckpointError as err:
            problems.append(str(err))
    for name in sorted(files):
        if name.rsplit(".", 1)[0] in modules:  # read above, with its module
            continue
        module, _, leaf = name.rpartition(".")
        tensor = shards.get(name)
        if leaf == "weight" and tensor.dim() == 2 and tensor.is_floating_point() and not is_excluded(module, exclude):
            problems.append(
                f"module {module}: the quantization config ({Path(raw['file']).name}) says it is NVFP4 (not in its "
                f"exclude list), but the checkpoint holds a plain {tensor.dtype} weight {tuple(tensor.shape)}; "
                "refusing to load it as BF16 silently"
            )
            continue
        ckpt.dense[name] = tensor.to(device)
    if problems:
        raise CheckpointError(f"{folder}: {len(problems)} problem(s):\n  - " + "\n  - ".join(problems))
    return ckpt


def _quantized_module(m, shards, files, layout, swap_nibbles, device) -> QuantizedLinear:
    missing = [f"{m}.{s}" for s in ("weight", "weight_scale", "weight_scale_2") if f"{m}.{s}" not in files]
    if missing:
        raise CheckpointError(f"module {m}: missing {', '.join(missing)} (NVFP4 needs weight, weight_scale, "
                              "weight_scale_2)")
    packed, scale = shards.get(m + ".weight"), shards.get(m + ".weight_scale")
    global_scale = shards.get(m + ".weight_scale_2")
    _expect(m, "weight", packed, torch.uint8, "2-D [out, in/2]", packed.dim() == 2)
    n, k = packed.shape[0], packed.shape[1] * 2
    if k % fmt.BLOCK_SIZE:
        raise CheckpointError(f"module {m}: weight {tuple(packed.shape)} means in_features {k}, not a multiple of 16")
    _expect(m, "weight_scale", scale, torch.float8_e4m3fn, f"{layout} layout for a {n} x {k} weight",
            layout in _scale_reading(scale.shape, n, k))
    _expect(m, "weight_scale_2", global_scale, torch.float32, "a scalar", global_scale.numel() == 1)
    if layout == "swizzled":
        scale = fmt.unswizzle_block_scales(scale, n, k // fmt.BLOCK_SIZE)
    if not bool(torch.isfinite(scale.float()).all()):
        raise CheckpointError(f"module {m}: weight_scale holds NaN")
    if swap_nibbles:
        packed = fmt.swap_nibbles(packed)
    weight = NVFP4Weight(packed.contiguous(), scale.contiguous(), global_scale.reshape(()).contiguous(), (n, k))
    bias = shards.get(m + ".bias") if f"{m}.bias" in files else None
    if bias is not None:
        _expect(m, "bias", bias, bias.dtype, f"[{n}]", tuple(bias.shape) == (n,) and bias.is_floating_point())
    input_scale = shards.get(m + ".input_scale") if f"{m}.input_scale" in files else None
    if input_scale is not None:
        _expect(m, "input_scale", input_scale, torch.float32, "a scalar", input_scale.numel() == 1)
        input_scale = input_scale.reshape(())
    return QuantizedLinear(weight.to(device), None if bias is None else bias.to(device),
                           None if input_scale is None else input_scale.to(device))


def _expect(module: str, tensor: str, t: torch.Tensor, dtype: torch.dtype, shape_text: str, shape_ok: bool) -> None:
    if t.dtype != dtype:
        raise CheckpointError(f"module {module}: {tensor} is {t.dtype}, expected {dtype}")
    if not shape_ok:
        raise CheckpointError(f"module {module}: {tensor} has shape {tuple(t.shape)}, expected {shape_text}")
