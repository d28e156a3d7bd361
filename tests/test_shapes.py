"""Shape plans from the FLUX configs, from checkpoints' quantization configs, and from live modules."""

import json

import pytest
import torch
from torch import nn

from nvfp4_triton.shapes import RECIPES, exclude_from_checkpoint, flux_linears, load_config, plan_from_config, \
    plan_from_module

# Transcribed by hand from ../shared/docs/flux-shapes.md: FLUX.1-dev at 1024x1024, batch 1,
# text 512, ModelOpt recipe (everything NVFP4 except proj_out, x_embedder, context_embedder,
# time_text_embed.*, norm_out.*). (M, N, K): calls per step.
FLUX_DEV_1024 = {
    (1, 18432, 3072): 2 * 19,  # norm1.linear, norm1_context.linear
    (4096, 3072, 3072): 4 * 19,  # to_q, to_k, to_v, to_out.0
    (512, 3072, 3072): 4 * 19,  # add_q/k/v_proj, to_add_out
    (4096, 12288, 3072): 19,  # ff.net.0.proj
    (4096, 3072, 12288): 19,  # ff.net.2
    (512, 12288, 3072): 19,  # ff_context.net.0.proj
    (512, 3072, 12288): 19,  # ff_context.net.2
    (1, 9216, 3072): 38,  # single norm.linear
    (4608, 3072, 3072): 3 * 38,  # single to_q/k/v
    (4608, 12288, 3072): 38,  # proj_mlp
    (4608, 3072, 15360): 38,  # single proj_out
}


def _calls(plan, index=0):
    return {(g.m, g.n, g.k): g.calls for g in plan.scenarios[index].gemms}


def test_default_plan_is_the_flux_dev_inventory():
    plan = plan_from_config()
    assert _calls(plan) == FLUX_DEV_1024
    assert plan.distinct() == sorted(FLUX_DEV_1024)


def test_fused_qkv_plan_joins_each_group_into_one_wider_gemm():
    fused = dict(FLUX_DEV_1024)
    fused[(4096, 3072, 3072)] = 19  # to_out.0 alone
    fused[(512, 3072, 3072)] = 19  # to_add_out alone
    del fused[(4608, 3072, 3072)]
    fused.update({(4096, 9216, 3072): 19, (512, 9216, 3072): 19, (4608, 9216, 3072): 38})
    plan = plan_from_config(fused_qkv=True)
    assert _calls(plan) == fused
    names = {name for g in plan.scenarios[0].gemms for name in g.modules}
    assert "transformer_blocks.3.attn.to_added_qkv" in names and "single_transformer_blocks.0.attn.to_qkv" in names
    assert not any(name.endswith(("to_q", "to_k", "add_v_proj")) for name in names)
    # a group with one BF16 member cannot fuse, so it stays three layers
    partial = plan_from_config(fused_qkv=True, exclude=(*RECIPES["modelopt"], "single_transformer_blocks.*.attn.to_k"))
    assert _calls(partial)[(4608, 3072, 3072)] == 2 * 38 and (4608, 9216, 3072) not in _calls(partial)


def test_every_flux_linear_is_listed_with_its_sizes():
    sites = {s.name: (s.in_features, s.out_features) for s in flux_linears(load_config("flux1-dev"))}
    assert len(sites) == 19 * 14 + 38 * 6 + 10  # double blocks, single blocks, top level (with guidance)
    assert sites["x_embedder"] == (64, 3072) and sites["context_embedder"] == (4096, 3072)
    assert sites["time_text_embed.text_embedder.linear_1"] == (768, 3072)
    assert sites["norm_out.linear"] == (3072, 6144) and sites["proj_out"] == (3072, 64)
    assert sites["single_transformer_blocks.37.proj_out"] == (15360, 3072)


def test_schnell_differs_only_by_the_guidance_embedder():
    dev = {s.name for s in flux_linears(load_config("flux1-dev"))}
    schnell = {s.name for s in flux_linears(load_config("flux1-schnell"))}
    assert dev - schnell == {"time_text_embed.guidance_embedder.linear_1", "time_text_embed.guidance_embedder.linear_2"}
    assert _calls(plan_from_config("flux1-schnell")) == FLUX_DEV_1024  # all excluded by the recipe


def test_mixed_recipe_keeps_only_attention_and_single_proj_out():
    calls = _calls(plan_from_config(exclude=RECIPES["mixed"]))
    assert calls == {(4096, 3072, 3072): 76, (512, 3072, 3072): 76, (4608, 3072, 3072): 114,
                     (4608, 3072, 15360): 38}


def test_resolutions_batches_and_text_length_set_m():
    plan = plan_from_config(resolutions=[(768, 1344), (512, 512)], batch_sizes=[1, 3], text_tokens=256,
                            exclude=RECIPES["mixed"])
    assert [s.label for s in plan.scenarios] == [
        "768x1344, batch 1, text 256", "768x1344, batch 3, text 256",
        "512x512, batch 1, text 256", "512x512, batch 3, text 256"]
    image = (768 // 16) * (1344 // 16)
    assert (3 * image, 3072, 3072) in _calls(plan, 1)
    assert (3 * 256, 3072, 3072) in _calls(plan, 1)
    assert (3 * (image + 256), 3072, 15360) in _calls(plan, 1)
    assert (1024 + 256, 3072, 3072) in _calls(plan, 2)


@pytest.mark.parametrize("kwargs, match", [
    (dict(resolutions=[(1000, 1024)]), "multiples of 16"),
    (dict(batch_sizes=[0]), "batch size must be >= 1"),
    (dict(config={"_class_name": "SD3Transformer2DModel"}), "plan_from_module"),
    (dict(config="/nonexistent/config.json"), "no transformer config"),
])
def test_bad_plan_arguments(kwargs, match):
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        plan_from_config(**kwargs)


def test_exclude_lists_from_both_checkpoint_config_forms(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    cfg = json.loads(json.dumps(load_config("flux1-dev")))
    cfg["quantization_config"] = {"quant_method": "modelopt", "quant_algo": "NVFP4", "ignore": ["proj_out", "x_*"]}
    (flat / "config.json").write_text(json.dumps(cfg))
    assert exclude_from_checkpoint(flat) == ("proj_out", "x_*")

    nested = tmp_path / "nested"
    nested.mkdir()
    (nested / "config.json").write_text(json.dumps(load_config("flux1-dev")))
    (nested / "hf_quant_config.json").write_text(json.dumps(
        {"producer": {"name": "modelopt"}, "quantization": {"quant_algo": "NVFP4", "exclude_modules": ["norm_out*"]}}))
    assert exclude_from_checkpoint(nested) == ("norm_out*",)

    (nested / "hf_quant_config.json").write_text(json.dumps({"quantization": {"quant_algo": "FP8"}}))
    with pytest.raises(ValueError, match="quant_algo is 'FP8'"):
        exclude_from_checkpoint(nested)
    with pytest.raises(FileNotFoundError, match="neither config.json"):
        exclude_from_checkpoint(tmp_path)


def test_plan_from_a_live_module_counts_each_call():
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 32), nn.Linear(32, 64))
    plan = plan_from_module(model, torch.randn(2, 5, 32))
    assert _calls(plan) == {(10, 64, 32): 2, (10, 32, 64): 1}
    assert {(g.m, g.n, g.k): g.modules for g in plan.scenarios[0].gemms}[(10, 64, 32)] == ("0", "3")
    assert not model[0]._forward_hooks  # hooks removed
