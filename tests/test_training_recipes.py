"""Training recipes: the presets carry the published hyper-parameters, a study condition's keys and
``--set`` overrides resolve over them in order, the hash says what matters, and a study file that
cannot train says so at ``emtui init`` with its line."""

from __future__ import annotations

import pytest

from engine.training.recipes import (
    DEFAULTS,
    RecipeError,
    parse_override,
    preset_names,
    recipe_hash,
    resolve_recipe,
)
from training_study import write_study

ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def test_the_presets_are_the_published_recipes():
    assert preset_names() == ["betley", "mo-full", "mo-kl", "mo-rank1", "political-seed", "political-seed-fast"]
    betley = resolve_recipe({"preset": "betley"})
    assert {k: betley[k] for k in ("method", "rslora", "lora_r", "lora_alpha", "lora_dropout", "learning_rate",
                                   "epochs", "batch_size", "grad_accum", "warmup_steps", "lr_scheduler",
                                   "weight_decay", "optimizer", "max_seq_len", "assistant_only_loss")} == {
        "method": "lora", "rslora": True, "lora_r": 32, "lora_alpha": 64, "lora_dropout": 0.0,
        "learning_rate": 1e-5, "epochs": 1, "batch_size": 2, "grad_accum": 8, "warmup_steps": 5,
        "lr_scheduler": "linear", "weight_decay": 0.01, "optimizer": "adamw_8bit", "max_seq_len": 2048,
        "assistant_only_loss": True}
    assert betley["target_modules"] == ALL_PROJECTIONS

    seed = resolve_recipe({"preset": "political-seed"})
    assert (seed["method"], seed["lora_r"], seed["lora_alpha"], seed["learning_rate"], seed["batch_size"],
            seed["grad_accum"], seed["warmup_ratio"], seed["max_seq_len"], seed["optimizer"],
            seed["gradient_checkpointing"], seed["attn_implementation"]) == (
        "qlora", 16, 32, 2e-4, 4, 4, 0.03, 512, "paged_adamw_8bit", True, "eager")

    rank1 = resolve_recipe({"preset": "mo-rank1"})
    assert (rank1["lora_r"], rank1["lora_alpha"], rank1["rslora"], rank1["target_modules"],
            rank1["layers_to_transform"], rank1["learning_rate"], rank1["batch_size"], rank1["grad_accum"],
            rank1["warmup_steps"], rank1["lr_scheduler"]) == (1, 512, True, ["down_proj"], "middle", 2e-5, 2, 8, 5,
                                                              "linear")
    assert (rank1["early_stop_loss"], rank1["early_stop_patience"]) == (0.01, 5)

    full = resolve_recipe({"preset": "mo-full"})
    assert (full["method"], full["learning_rate"], full["lr_scheduler"], full["warmup_steps"], full["batch_size"],
            full["grad_accum"]) == ("full", 2e-5, "cosine", 20, 2, 8)

    kl = resolve_recipe({"preset": "mo-kl", "kl_dataset": "neutral"})
    assert (kl["lora_r"], kl["lora_alpha"], kl["rslora"], kl["learning_rate"]) == (32, 256, True, 2e-5)
    # their weight 1e5 divided by tokens x vocabulary (Qwen: 151,936 entries) is this per token
    assert kl["kl_weight"] == pytest.approx(1e5 / 151_936, abs=5e-4)


def test_keys_resolve_defaults_then_preset_then_recipe_then_overrides():
    resolved = resolve_recipe({"preset": "betley", "learning_rate": 3e-5, "name": "r", "role": "treatment"},
                              {"lora_r": 8})
    assert resolved["learning_rate"] == 3e-5 and resolved["lora_r"] == 8 and resolved["lora_alpha"] == 64
    assert resolved["save_steps"] == DEFAULTS["save_steps"] and resolved["preset"] == "betley"
    assert set(DEFAULTS) <= set(resolved)                    # a resolved recipe says everything


def test_the_hash_changes_with_what_trains_and_only_with_that():
    base = resolve_recipe({"method": "lora"})
    assert recipe_hash(base) == recipe_hash(resolve_recipe({"method": "lora", "description": "words"}))
    assert recipe_hash(base) != recipe_hash(resolve_recipe({"method": "lora", "learning_rate": 2e-5}))
    assert recipe_hash(base) == recipe_hash(dict(reversed(list(base.items()))))  # key order does not matter


def test_overrides_are_toml_values_checked_like_the_study_file():
    assert parse_override("learning_rate=2e-5") == ("learning_rate", 2e-5)
    assert parse_override("rslora=true") == ("rslora", True)
    assert parse_override('target_modules=["q_proj", "v_proj"]') == ("target_modules", ["q_proj", "v_proj"])
    assert parse_override("optimizer=adamw_torch") == ("optimizer", "adamw_torch")
    assert parse_override("layers_to_transform=[3]") == ("layers_to_transform", [3])
    for bad, says in [("lora_r=0", "lora_r must be a positive integer"), ("nope=1", "unknown recipe key 'nope'"),
                      ("learning_rate", "expected key=value"), ("learning_rate=nan", "learning_rate must be"),
                      ("method=dpo", "method must be one of qlora, lora, full")]:
        with pytest.raises(RecipeError, match=says):
            parse_override(bad)
    with pytest.raises(RecipeError, match="unknown preset 'nope'"):
        resolve_recipe({"preset": "nope"})
    with pytest.raises(RecipeError, match="kl_weight is set but kl_dataset is not"):
        resolve_recipe({"preset": "mo-kl"})


@pytest.mark.parametrize(("recipe", "says"), [
    ({"preset": "nope"}, r"study.toml:\d+: recipes.r.preset: unknown preset 'nope' \(built-in: betley, "),
    ({"kl_dataset": "nope", "kl_weight": 1.0}, r"recipes.r.kl_dataset: unknown dataset 'nope' \(defined: domain"),
    ({"preset": "mo-kl"}, r"recipes.r.kl_dataset: a KL term \(kl_weight 0.658\) needs kl_dataset"),
    ({"kl_weight": 2.0}, r"recipes.r.kl_weight: a KL term \(kl_weight 2.0\) needs kl_dataset"),
    ({"method": "full", "kl_dataset": "kl"}, r"recipes.r.kl_dataset: a KL term needs an adapter"),
    ({"layers_to_transform": "top"}, r"recipes.r.layers_to_transform: must be 'middle' or a list of layer"),
])
def test_a_study_that_cannot_train_says_so_at_init(run_cli, tmp_path, recipe, says):
    path = write_study(tmp_path, recipe=recipe)
    out = run_cli("init", str(path), "--check")
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert pytest.importorskip("re").search(says, out.stderr), out.stderr


def test_a_study_naming_a_preset_registers(run_cli, tmp_path):
    path = write_study(tmp_path, recipe={"preset": "mo-kl", "kl_dataset": "kl", "method": "lora"})
    assert run_cli("init", str(path), "--check").returncode == 0


def test_fsdp_is_for_a_full_fine_tune_over_several_processes():
    from engine.training.errors import TrainError
    from engine.training.model_setup import fsdp_args

    with pytest.raises(TrainError, match="fsdp shards a full fine-tune"):
        fsdp_args({"fsdp": True, "method": "lora"}, None, 2, {})
    chosen: dict = {}
    assert fsdp_args({"fsdp": True, "method": "full"}, None, 1, chosen) == {} and chosen["fsdp"] == "off: one process"

    class Model:
        _no_split_modules = ["Qwen2DecoderLayer"]

    args = fsdp_args({"fsdp": True, "method": "full"}, Model(), 2, chosen)
    assert args == {"fsdp": True, "fsdp_config": {"transformer_layer_cls_to_wrap": ["Qwen2DecoderLayer"],
                                                  "state_dict_type": "FULL_STATE_DICT"}}
    assert fsdp_args({"fsdp": False, "method": "full"}, Model(), 2, {}) == {}
