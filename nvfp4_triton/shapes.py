"""Shape plans: which GEMMs (M, N, K) a model runs per transformer step, and how often.

A plan comes from a diffusers ``FluxTransformer2DModel`` config (FLUX.1-dev is bundled and the
default; FLUX.1-schnell too), image resolutions, batch sizes, the text length, and which linears
are NVFP4 (a recipe's exclude globs, or a checkpoint's quantization config). Any other model can
be planned from one real forward pass with :func:`plan_from_module`.

Token counts: image tokens ``(H / 16) * (W / 16)`` (VAE /8, then 2x2 patches), text tokens = the T5
sequence length (512 by default), single-stream blocks see both; modulation and embedding
linears see one row per batch element.
"""

from __future__ import annotations

import fnmatch
import json
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch
from torch import nn

BUNDLED_CONFIGS = {"flux1-dev": "flux1-dev.json", "flux1-schnell": "flux1-schnell.json"}

# Modules each recipe keeps in BF16 (glob-like names; ``*`` matches anything, dots included).
RECIPES = {
    "modelopt": ("proj_out", "x_embedder", "context_embedder", "time_text_embed.*", "norm_out.*"),
    "mixed": (
        "proj_out", "x_embedder", "context_embedder", "time_text_embed.*", "norm_out.*",
        "transformer_blocks.*.norm1.linear", "transformer_blocks.*.norm1_context.linear",
        "transformer_blocks.*.ff.*", "transformer_blocks.*.ff_context.*",
        "single_transformer_blocks.*.norm.linear", "single_transformer_blocks.*.proj_mlp",
    ),
}
QKV_GROUPS = ((("to_q", "to_k", "to_v"), "to_qkv"), (("add_q_proj", "add_k_proj", "add_v_proj"), "to_added_qkv"))
"""diffusers attention's q/k/v projections, and the layer its fused path calls instead of each group."""
DEFAULT_TEXT_TOKENS = 512
LATENT_DOWNSCALE = 16  # VAE factor 8 times the 2x2 latent packing


@dataclass(frozen=True)
class LinearSite:
    """One ``nn.Linear`` of the model: its module name, sizes, and which token stream feeds it."""

    name: str
    in_features: int
    out_features: int
    stream: str  # "image", "text", "joint" (image + text) or "pooled" (one row per batch element)


@dataclass(frozen=True)
class Gemm:
    """One distinct GEMM ``[M, K] x [K, N]`` and how many times a transformer step runs it."""

    m: int
    n: int
    k: int
    calls: int
    modules: tuple[str, ...] = ()


@dataclass
class Scenario:
    """The GEMMs of one (resolution, batch) setting."""

    label: str
    gemms: list[Gemm] = field(default_factory=list)


@dataclass
class ShapePlan:
    """GEMMs to prepare, grouped by scenario. ``distinct()`` gives the unique (M, N, K)."""

    source: str
    scenarios: list[Scenario]

    def distinct(self) -> list[tuple[int, int, int]]:
        return sorted({(g.m, g.n, g.k) for s in self.scenarios for g in s.gemms})

    def describe(self) -> str:
        lines = [f"plan from {self.source}: {len(self.distinct())} distinct GEMMs"]
        for s in self.scenarios:
            lines.append(f"  {s.label}")
            lines.append(f"    {'M':>6} {'N':>6} {'K':>6} {'calls/step':>10}  modules (first)")
            for g in s.gemms:
                lines.append(f"    {g.m:6} {g.n:6} {g.k:6} {g.calls:10}  {g.modules[0] if g.modules else ''}")
        return "\n".join(lines)


def load_config(path_or_name: str | Path = "flux1-dev") -> dict:
    """A transformer config: a bundled name (``flux1-dev``, ``flux1-schnell``), a config.json, or a folder holding one."""
    if str(path_or_name) in BUNDLED_CONFIGS:
        text = resources.files("nvfp4_triton.configs").joinpath(BUNDLED_CONFIGS[str(path_or_name)]).read_text()
        return json.loads(text)
    path = Path(path_or_name)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no transformer config at {path} (give a config.json, a folder with one, or one of {sorted(BUNDLED_CONFIGS)})"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err


def flux_linears(config: dict) -> list[LinearSite]:
    """Every ``nn.Linear`` of a diffusers ``FluxTransformer2DModel`` built from ``config``."""
    if config.get("_class_name", "FluxTransformer2DModel") != "FluxTransformer2DModel":
        raise ValueError(
            f"config describes a {config['_class_name']}; config-based plans know FluxTransformer2DModel only. "
            "Use plan_from_module() with a live model instead."
        )
    d = config["num_attention_heads"] * config["attention_head_dim"]
    mlp = 4 * d
    in_ch = config.get("in_channels", 64)
    out_ch = config.get("out_channels") or in_ch
    patch = config.get("patch_size", 1)
    sites = [
        LinearSite("x_embedder", in_ch, d, "image"),
        LinearSite("context_embedder", config.get("joint_attention_dim", 4096), d, "text"),
        LinearSite("time_text_embed.timestep_embedder.linear_1", 256, d, "pooled"),
        LinearSite("time_text_embed.timestep_embedder.linear_2", d, d, "pooled"),
    ]
    if config.get("guidance_embeds", False):
        sites += [
            LinearSite("time_text_embed.guidance_embedder.linear_1", 256, d, "pooled"),
            LinearSite("time_text_embed.guidance_embedder.linear_2", d, d, "pooled"),
        ]
    sites += [
        LinearSite("time_text_embed.text_embedder.linear_1", config.get("pooled_projection_dim", 768), d, "pooled"),
        LinearSite("time_text_embed.text_embedder.linear_2", d, d, "pooled"),
    ]
    for i in range(config["num_layers"]):
        p = f"transformer_blocks.{i}."
        sites += [LinearSite(p + "norm1.linear", d, 6 * d, "pooled"),
                  LinearSite(p + "norm1_context.linear", d, 6 * d, "pooled")]
        sites += [LinearSite(p + f"attn.{m}", d, d, "image") for m in ("to_q", "to_k", "to_v")]
        sites += [LinearSite(p + f"attn.{m}", d, d, "text") for m in ("add_q_proj", "add_k_proj", "add_v_proj")]
        sites += [LinearSite(p + "attn.to_out.0", d, d, "image"), LinearSite(p + "attn.to_add_out", d, d, "text")]
        sites += [LinearSite(p + "ff.net.0.proj", d, mlp, "image"), LinearSite(p + "ff.net.2", mlp, d, "image"),
                  LinearSite(p + "ff_context.net.0.proj", d, mlp, "text"),
                  LinearSite(p + "ff_context.net.2", mlp, d, "text")]
    for i in range(config["num_single_layers"]):
        p = f"single_transformer_blocks.{i}."
        sites.append(LinearSite(p + "norm.linear", d, 3 * d, "pooled"))
        sites += [LinearSite(p + f"attn.{m}", d, d, "joint") for m in ("to_q", "to_k", "to_v")]
        sites += [LinearSite(p + "proj_mlp", d, mlp, "joint"), LinearSite(p + "proj_out", d + mlp, d, "joint")]
    sites += [LinearSite("norm_out.linear", d, 2 * d, "pooled"),
              LinearSite("proj_out", d, patch * patch * out_ch, "image")]
    return sites


def is_excluded(name: str, exclude: tuple[str, ...] | list[str]) -> bool:
    """True when a module name matches one of the exclude globs (kept in BF16)."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude)


def exclude_from_checkpoint(folder: str | Path) -> tuple[str, ...]:
    """The BF16 module globs of a ModelOpt NVFP4 export (``config.json`` or ``hf_quant_config.json``)."""
    folder = Path(folder)
    config_path, hf_path = folder / "config.json", folder / "hf_quant_config.json"
    if config_path.is_file() and "quantization_config" in (cfg := json.loads(config_path.read_text())):
        quant = cfg["quantization_config"]
        algo, exclude = quant.get("quant_algo"), quant.get("ignore", [])
    elif hf_path.is_file():
        quant = json.loads(hf_path.read_text()).get("quantization", {})
        algo, exclude = quant.get("quant_algo"), quant.get("exclude_modules", [])
    else:
        raise FileNotFoundError(
            f"{folder} has neither config.json with a quantization_config nor hf_quant_config.json"
        )
    if algo != "NVFP4":
        raise ValueError(f"{folder}: quant_algo is {algo!r}, expected 'NVFP4'")
    return tuple(exclude)


def plan_from_config(
    config: dict | str | Path = "flux1-dev",
    resolutions: list[tuple[int, int]] | None = None,
    batch_sizes: list[int] | None = None,
    text_tokens: int = DEFAULT_TEXT_TOKENS,
    exclude: tuple[str, ...] | list[str] = RECIPES["modelopt"],
    fused_qkv: bool = False,
) -> ShapePlan:
    """GEMMs of the NVFP4 linears (those not matched by ``exclude``) for each resolution x batch.

    Resolutions are ``(height, width)`` in pixels, multiples of 16. Defaults: 1024x1024, batch 1.
    ``fused_qkv`` plans each q/k/v group whose three linears are all NVFP4 as the one layer that
    ``fusion.fuse_qkv`` makes of it (``attn.to_qkv`` / ``attn.to_added_qkv``).
    """
    source = config if isinstance(config, (str, Path)) else config.get("_name_or_path", "config")
    cfg = load_config(config) if isinstance(config, (str, Path)) else config
    resolutions = resolutions or [(1024, 1024)]
    batch_sizes = batch_sizes or [1]
    sites = [s for s in flux_linears(cfg) if not is_excluded(s.name, exclude) and s.in_features % 16 == 0]
    if fused_qkv:
        sites = _fuse_qkv_sites(sites)
    scenarios = []
    for h, w in resolutions:
        if h % LATENT_DOWNSCALE or w % LATENT_DOWNSCALE or h <= 0 or w <= 0:
            raise ValueError(f"resolution {h}x{w}: height and width must be positive multiples of {LATENT_DOWNSCALE}")
        image = (h // LATENT_DOWNSCALE) * (w // LATENT_DOWNSCALE)
        for b in batch_sizes:
            if b < 1:
                raise ValueError(f"batch size must be >= 1, got {b}")
            rows = {"image": b * image, "text": b * text_tokens, "joint": b * (image + text_tokens), "pooled": b}
            scenarios.append(_scenario(f"{h}x{w}, batch {b}, text {text_tokens}",
                                       [(rows[s.stream], s.out_features, s.in_features, s.name) for s in sites]))
    return ShapePlan(str(source), scenarios)


def _fuse_qkv_sites(sites: list[LinearSite]) -> list[LinearSite]:
    """``sites`` with every complete q/k/v group replaced by one site of three times the width."""
    by_name = {s.name: s for s in sites}
    fused, out = set(), []
    for site in sites:
        prefix, _, leaf = site.name.rpartition(".")
        for parts, target in QKV_GROUPS:
            group = [by_name.get(f"{prefix}.{part}") for part in parts]
            if leaf == parts[0] and all(group):
                out.append(LinearSite(f"{prefix}.{target}", site.in_features,
                                      sum(g.out_features for g in group), site.stream))
                fused.update(g.name for g in group)
        if site.name not in fused:
            out.append(site)
    return out


def plan_from_module(model: nn.Module, *args, **kwargs) -> ShapePlan:
    """GEMMs of every ``nn.Linear`` (and ``NVFP4Linear``) seen in one forward pass of ``model(*args, **kwargs)``."""
    from .module import NVFP4Linear

    seen: list[tuple[int, int, int, str]] = []
    hooks = []
    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Linear, NVFP4Linear)):
            def record(mod, inputs, output, name=name):
                x = inputs[0]
                seen.append((x.numel() // x.shape[-1], mod.out_features, mod.in_features, name))
            hooks.append(mod.register_forward_hook(record))
    try:
        with torch.no_grad():
            model(*args, **kwargs)
    finally:
        for h in hooks:
            h.remove()
    return ShapePlan(type(model).__name__, [_scenario("one forward pass", seen)])


def _scenario(label: str, calls: list[tuple[int, int, int, str]]) -> Scenario:
    counts = Counter((m, n, k) for m, n, k, _ in calls)
    names: dict[tuple[int, int, int], list[str]] = {}
    for m, n, k, name in calls:
        names.setdefault((m, n, k), []).append(name)
    gemms = [Gemm(m, n, k, counts[(m, n, k)], tuple(names[(m, n, k)])) for m, n, k in sorted(counts)]
    return Scenario(label, gemms)
