"""The throughput levers of issue 12's benchmark (bench/train_throughput.py): recipe keys that change how
fast a run trains, not what it learns, and the preset that uses them."""

from __future__ import annotations

from engine.common.hashing import json_hash
from engine.training.model_setup import sft_config
from engine.training.recipes import DEFAULTS, recipe_hash, resolve_recipe

LEVERS = ("attn_implementation", "gradient_checkpointing", "batch_size", "grad_accum", "group_by_length",
          "padding_free")


def test_new_lever_keys_keep_the_hash_of_recipes_that_do_not_set_them():
    # a run queued before the keys existed has this hash: queueing the study again must not retrain it
    recipe = resolve_recipe({"preset": "political-seed"})
    before = {k: v for k, v in recipe.items() if k not in ("padding_free", "group_by_length")}
    assert recipe_hash(recipe) == json_hash(before)
    assert recipe_hash({**recipe, "group_by_length": True}) != recipe_hash(recipe)
    assert recipe_hash({**recipe, "padding_free": True}) != recipe_hash(recipe)


def test_sft_config_passes_the_levers_to_trl(tmp_path):
    recipe = {**DEFAULTS, "group_by_length": True, "padding_free": True}
    config, optimizer = sft_config(recipe, output_dir=tmp_path, seed=1, cuda=False)
    assert config.train_sampling_strategy == "group_by_length" and config.padding_free is True
    config, _ = sft_config(DEFAULTS, output_dir=tmp_path, seed=1, cuda=False)
    assert config.train_sampling_strategy == "random" and config.padding_free is False
    # bitsandbytes' 8-bit optimizers need a GPU: a CPU run says what it trains with instead
    _, optimizer = sft_config({**DEFAULTS, "optimizer": "paged_adamw_8bit"}, output_dir=tmp_path, seed=1, cuda=False)
    assert optimizer == "adamw_torch"


def test_the_fast_preset_trains_what_the_seed_preset_trains():
    seed, fast = resolve_recipe({"preset": "political-seed"}), resolve_recipe({"preset": "political-seed-fast"})
    differ = {k for k in seed if seed[k] != fast[k]} - {"preset"}
    assert differ and differ <= set(LEVERS)
    assert seed["batch_size"] * seed["grad_accum"] == fast["batch_size"] * fast["grad_accum"] == 16
    levers = (fast["attn_implementation"], fast["gradient_checkpointing"], fast["group_by_length"])
    assert levers == ("sdpa", False, True)


def test_choose_threads_leaves_a_core_for_the_rest(monkeypatch):
    from engine.training.trainer import choose_threads

    monkeypatch.delenv("EMTUI_TRAIN_THREADS", raising=False)
    for cores, world, threads in ((1, 1, 1), (2, 1, 1), (2, 2, 1), (4, 1, 3), (16, 1, 15), (16, 2, 7)):
        monkeypatch.setattr("os.sched_getaffinity", lambda _pid, n=cores: set(range(n)))
        assert choose_threads(world) == threads, (cores, world)
    monkeypatch.setenv("EMTUI_TRAIN_THREADS", "2")
    assert choose_threads(1) == 2
