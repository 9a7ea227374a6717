"""Fine-tuning (issue 12): QLoRA / LoRA / full / KL-regularised SFT of a chat model on one condition's
dataset, with live metrics, checkpoints and resume.

- :mod:`engine.training.datasets`, :mod:`~engine.training.dataset_stats`: training files read and checked;
- :mod:`engine.training.masking`: the loss on assistant tokens only, for any chat template;
- :mod:`engine.training.recipes`: presets (``data/presets/``) + a study's keys + overrides -> the resolved,
  hashed recipe;
- :mod:`engine.training.queueing`: a study's conditions as ``train`` runs and jobs;
- :mod:`engine.training.trainer`: :func:`~engine.training.trainer.train` one run (TRL + PEFT +
  bitsandbytes), metrics into the database, checkpoints, resume; ``python -m engine.training.trainer``
  is what each rank of ``torchrun`` runs;
- :mod:`engine.training.model_setup`: the model (4-bit / bf16 / full, the LoRA adapter, FSDP) and its
  ``SFTConfig``; :mod:`~engine.training.sft_trainer`: the SFT trainer with the KL term;
  :mod:`~engine.training.metrics_callback`: metrics and checkpoints into the database as it trains;
- :mod:`engine.training.job`: the handler of job kind ``train``.

Importing this package imports none of torch, transformers, peft, trl or bitsandbytes.
"""
