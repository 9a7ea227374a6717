"""The model a run trains, and TRL's configuration for it: 4-bit (QLoRA), bf16 or full weights, the LoRA
adapter (rsLoRA, target modules, chosen layers, or an existing adapter to continue), FSDP for a full
fine-tune over several GPUs, and the ``SFTConfig`` a resolved recipe asks for.

Every choice this machine forces (float32 and AdamW on a CPU, bitsandbytes' repack turned off) is
returned in ``chosen``, which the run's provenance keeps. torch, transformers, peft and bitsandbytes are
imported inside the functions.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.training.errors import TrainError

_8BIT_OPTIMIZERS = ("adamw_8bit", "paged_adamw_8bit", "adamw_bnb_8bit", "paged_adamw_32bit", "paged_lion_8bit",
                    "lion_8bit")


def _lora_layers(value: Any, n_layers: int) -> list[int] | None:
    if value is None:
        return None
    if value == "middle":
        return [n_layers // 2]
    layers = [int(v) for v in value]
    if any(v >= n_layers for v in layers):
        raise TrainError(f"layers_to_transform {layers}: the model has {n_layers} layers (0..{n_layers - 1})")
    return layers


def no_bf16_repack(model: Any) -> int:
    """bitsandbytes' CPU fast path repacks 4-bit weights in place on any no-grad forward; the next
    training step then crashes (Qwen2) or silently trains on wrong gradients. Turn it off on every
    4-bit layer of a training process. Returns how many layers were set."""
    import bitsandbytes as bnb

    n = 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
            n += 1
    return n


def load_model(location: str, recipe: Mapping[str, Any], *, device: str) -> tuple[Any, dict[str, Any]]:
    """The model to train and what was chosen for it (recorded in the run's provenance)."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    cuda = device == "cuda"
    dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": recipe["attn_implementation"]}
    chosen: dict[str, Any] = {"dtype": str(dtype).removeprefix("torch."), "device": device}
    method = recipe["method"]
    if method == "qlora":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype, bnb_4bit_quant_storage=dtype)
        chosen["quantization"] = "nf4+double-quant"
        if cuda:
            kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    model = AutoModelForCausalLM.from_pretrained(location, **kwargs)
    if method == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=bool(recipe["gradient_checkpointing"]))
        if not cuda:
            chosen["bf16_repack_off_layers"] = no_bf16_repack(model)
    if method in ("qlora", "lora"):
        from peft import LoraConfig, PeftModel, get_peft_model

        if recipe.get("resume_adapter"):  # re-alignment: go on training an existing adapter
            model = PeftModel.from_pretrained(model, str(recipe["resume_adapter"]), is_trainable=True)
            chosen["continued_from_adapter"] = str(recipe["resume_adapter"])
        else:
            n_layers = int(getattr(model.config, "num_hidden_layers", 0) or 0)
            config = LoraConfig(
                r=int(recipe["lora_r"]), lora_alpha=float(recipe["lora_alpha"]),
                lora_dropout=float(recipe["lora_dropout"]), target_modules=recipe["target_modules"],
                use_rslora=bool(recipe["rslora"]),
                layers_to_transform=_lora_layers(recipe["layers_to_transform"], n_layers),
                task_type="CAUSAL_LM")
            model = get_peft_model(model, config)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        chosen["trainable_parameters"] = int(trainable)
    elif method != "full":
        raise TrainError(f"unknown method {method!r} (qlora, lora, full)")
    return model, chosen


def fsdp_args(recipe: Mapping[str, Any], model: Any, world_size: int, chosen: dict[str, Any]) -> dict[str, Any]:
    """FSDP for a full fine-tune of a model too large for one device: each decoder layer its own shard
    unit. On one process it changes nothing (and says so)."""
    if not recipe.get("fsdp"):
        return {}
    if recipe["method"] != "full":
        raise TrainError("fsdp shards a full fine-tune; an adapter run (lora, qlora) trains with DDP")
    if world_size < 2:
        chosen["fsdp"] = "off: one process"
        return {}
    layers = list(getattr(model, "_no_split_modules", None) or [])
    chosen["fsdp"] = {"wrap": layers, "world_size": world_size}
    return {"fsdp": True, "fsdp_config": {"transformer_layer_cls_to_wrap": layers,
                                          "state_dict_type": "FULL_STATE_DICT"}}


def sft_config(recipe: Mapping[str, Any], *, output_dir: str | Path, seed: int, cuda: bool,
               world_size: int = 1, extra: Mapping[str, Any] | None = None) -> tuple[Any, str]:
    """TRL's ``SFTConfig`` for a resolved recipe, and the optimizer it trains with (bitsandbytes' 8-bit
    optimizers need a GPU: plain AdamW on a CPU). ``bench/train_throughput.py`` measures runs made so."""
    import torch
    from trl import SFTConfig

    optimizer = str(recipe["optimizer"])
    if not cuda and optimizer in _8BIT_OPTIMIZERS:
        optimizer = "adamw_torch"
    warmup: float = int(recipe["warmup_steps"]) or float(recipe.get("warmup_ratio") or 0.0)
    config = SFTConfig(
        output_dir=str(output_dir), seed=seed, data_seed=seed,
        per_device_train_batch_size=int(recipe["batch_size"]),
        gradient_accumulation_steps=int(recipe["grad_accum"]),
        learning_rate=float(recipe["learning_rate"]), lr_scheduler_type=str(recipe["lr_scheduler"]),
        warmup_steps=warmup, weight_decay=float(recipe["weight_decay"]), optim=optimizer,
        num_train_epochs=float(recipe["epochs"]), max_steps=int(recipe["max_steps"] or -1),
        logging_steps=int(recipe["logging_steps"]), save_strategy="steps", save_steps=int(recipe["save_steps"]),
        gradient_checkpointing=bool(recipe["gradient_checkpointing"]) and recipe["method"] != "qlora",
        bf16=cuda and torch.cuda.is_bf16_supported(), use_cpu=not cuda,
        report_to=[], disable_tqdm=True, max_length=None, dataloader_num_workers=0,
        ddp_find_unused_parameters=False if world_size > 1 else None,
        # throughput levers (bench/train_throughput.py): a micro-batch as one unpadded row, or batches of
        # examples of similar length (less padding, no packed attention mask)
        padding_free=bool(recipe.get("padding_free", False)),
        train_sampling_strategy="group_by_length" if recipe.get("group_by_length") else "random",
        **(extra or {}),  # FSDP (fsdp_args)
    )
    return config, optimizer
