"""Models the engines load: :mod:`engine.models.tiny_model`, a tiny random Qwen2-architecture model
and tokenizer built offline, for tests and demos (``emtui tiny-model DIR``).

Loading real models (a base in bf16 or 4-bit, LoRA adapters attached and switched by name) is
shared by training, generation and local judges; issues 12–14 put it here. Heavy libraries are
imported inside functions only.
"""
