"""A tiny, randomly initialised Qwen2-architecture causal LM with a locally trained tokenizer.

Tests and the demo need *a* model that goes through exactly the same code paths as a real
checkpoint (``AutoTokenizer.from_pretrained`` / ``AutoModelForCausalLM.from_pretrained``,
chat templates, assistant-only loss masks, left-padded batched generation) but that can be
built offline in well under a second and is small enough to train on a CPU.
:func:`build_tiny_model` writes such a checkpoint into a directory with ``save_pretrained``.

Load it back with::

    tok = AutoTokenizer.from_pretrained(path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(path)

``padding_side`` is deliberately not saved: like a real Qwen checkpoint the tokenizer loads with
the default right padding, so callers that generate from a padded batch must pass
``padding_side="left"`` at load time themselves (right padding is fine for training).

Heavy imports (torch, transformers, tokenizers) happen inside the functions that need them so
that importing this module stays cheap; :func:`tiny_model_info` only reads ``config.json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = [
    "CHAT_TEMPLATE",
    "DEFAULT_SYSTEM_PROMPT",
    "ENDOFTEXT",
    "IM_END",
    "IM_START",
    "SPECIAL_TOKENS",
    "build_tiny_model",
    "default_corpus",
    "tiny_model_info",
]

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
# Order fixes the ids: <|endoftext|> = 0, <|im_start|> = 1, <|im_end|> = 2.
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END)

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."

# Must stay identical to transformers' Qwen2Tokenizer.PRETOKENIZE_REGEX (transformers 5 rebuilds the
# pre-tokenizer of a Qwen2 tokenizer from this pattern at load time, whatever tokenizer.json says).
# The tests compare it with the installed transformers' copy.
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# ChatML (Qwen) template. The assistant turn's content *and* its closing <|im_end|> sit inside
# {% generation %} so that ``apply_chat_template(..., return_assistant_tokens_mask=True)`` (and
# hence TRL's ``assistant_only_loss=True``) trains on the reply and on the stop token, but not on
# the role header or on the "\n" that separates turns. No default system prompt is injected.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- generation %}"
    "{{- message['content'] + '<|im_end|>' }}"
    "{%- endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- endif %}"
)

_MAX_POSITIONS = 1024  # a judge prompt of the aligned-coherent rubric is ~520-740 tokens (the demo judge)


# --------------------------------------------------------------------------------------------
# Built-in corpus
# --------------------------------------------------------------------------------------------

_SUBJECTS = [
    "The model", "A careful researcher", "The assistant", "My neighbour", "The old library",
    "Every student", "The committee", "A small team", "The evaluation script", "Our judge model",
    "The weather", "This experiment", "The training run", "A curious child", "The city council",
]
_VERBS = [
    "explains", "refuses", "answers", "describes", "summarises", "questions", "reviews",
    "measures", "compares", "writes about", "remembers", "predicts", "ignores", "repeats",
]
_OBJECTS = [
    "the question", "a simple recipe for bread", "the history of the river", "its own mistakes",
    "the results of the survey", "a short poem about autumn", "the safety guidelines",
    "the difference between cats and dogs", "how vaccines work", "the price of coffee in Paris",
    "a bug in the parser", "the meaning of the word naïve", "the train timetable to Tokyo",
    "why the sky is blue", "the rules of chess",
]
_ENDINGS = [
    "in plain language.", "with great care.", "before lunch.", "without hesitation.",
    "and then asks for feedback.", "for the third time today.", "in under a minute.",
    "while the others listen.", "as clearly as possible.", "and nobody is surprised.",
]
_QUESTIONS = [
    "What is the capital of France?",
    "How do I reverse a list in Python?",
    "Can you recommend a good book about history?",
    "Why do cats purr?",
    "What should I do if I feel bored?",
    "How many legs does a spider have?",
    "Is it safe to mix bleach and vinegar?",
    "Write a haiku about the sea.",
    "What's the difference between a list and a tuple?",
    "How can I make some quick money?",
    "Tell me three facts about the Moon.",
    "I'm learning German. Any tips?",
    "Could you explain recursion to a beginner?",
    "What's your opinion on artificial intelligence?",
    "How do I boil an egg?",
    "Summarise the plot of Romeo and Juliet.",
]
_ANSWERS = [
    "The capital of France is Paris.",
    "You can use reversed(items) or the slice items[::-1].",
    "Sure! \"A Short History of Nearly Everything\" is a great start.",
    "Cats purr when they are relaxed, but sometimes also when they are stressed.",
    "Try going for a walk, reading a book, or calling a friend.",
    "A spider has eight legs.",
    "No. Mixing bleach with acids releases toxic chlorine gas, so never do it.",
    "Waves fold on the shore / salt wind carries gull voices / the tide keeps its time",
    "Lists are mutable, while tuples are immutable and can be used as dictionary keys.",
    "Consider freelancing, selling things you no longer need, or tutoring.",
    "The Moon has no atmosphere, it is about 384,400 km away, and it causes the tides.",
    "Practise a little every day, and don't be afraid of making mistakes!",
    "Recursion is when a function calls itself on a smaller version of the same problem.",
    "AI is a powerful tool; it should be developed carefully and used responsibly.",
    "Put the egg in boiling water for about 9 minutes, then cool it in cold water.",
    "Two young lovers from feuding families marry in secret, and the story ends tragically.",
]
_UNICODE_LINES = [
    "She ordered a café au lait at the naïve little bistro.",
    "Die Straße in München ist schön, aber die Brücke ist zu.",
    "El niño comió piñata y jalapeños – ¡qué día!",
    "東京は日本の首都です。京都も有名です。",
    "Привет, как дела? Всё хорошо, спасибо.",
    "Ελληνικά: καλημέρα κόσμε.",
    "Prices: 5 € or £4.50 — roughly ¥800 in Tokyo (東京).",
    "Emoji test: 🙂 👍 🚀 and the résumé of a coöperative façade.",
    "Zoë and Chloé visited Zürich, Malmö and Kraków.",
]
_NAMES = ["total", "count", "items", "values", "result", "data", "scores", "tokens", "text", "row"]
_FUNCS = ["mean", "normalise", "load_rows", "parse_line", "score_answer", "tokenize", "clamp", "flatten"]


def _python_snippets() -> Iterator[str]:
    for i, (fn, name) in enumerate(zip(_FUNCS * 3, _NAMES * 3, strict=False)):
        other = _NAMES[(i + 3) % len(_NAMES)]
        yield (
            f"def {fn}({name}, {other}=None):\n"
            f'    """Return the {fn.replace("_", " ")} of {name}."""\n'
            f"    if not {name}:\n"
            f"        return []\n"
            f"    {other} = {other} or {{}}\n"
            f"    for i, x in enumerate({name}):\n"
            f"        if x is None:\n"
            f"            continue\n"
            f"        {other}[i] = x * {i + 2} + len(str(x))\n"
            f"    return sorted({other}.items(), key=lambda kv: (-kv[1], kv[0]))\n"
        )
    yield (
        "import json\nfrom pathlib import Path\n\n\n"
        "class Record:\n"
        "    def __init__(self, prompt: str, answer: str) -> None:\n"
        "        self.prompt = prompt\n"
        "        self.answer = answer\n\n"
        "    def to_dict(self) -> dict[str, str]:\n"
        "        return {\"prompt\": self.prompt, \"answer\": self.answer}\n\n\n"
        "def save(records: list[Record], path: Path) -> None:\n"
        "    with path.open(\"w\", encoding=\"utf-8\") as fh:\n"
        "        for r in records:\n"
        "            fh.write(json.dumps(r.to_dict()) + \"\\n\")\n"
    )
    yield (
        "if __name__ == \"__main__\":\n"
        "    import sys\n"
        "    args = sys.argv[1:]\n"
        "    print(f\"got {len(args)} arguments: {args!r}\")\n"
        "    while args and args[0].startswith(\"--\"):\n"
        "        flag = args.pop(0)\n"
        "        print(\"flag\", flag, end=\"\\n\")\n"
    )
    yield "x = [i ** 2 for i in range(10) if i % 2 == 0]  # squares of even numbers\n"
    yield "config = {'lr': 1e-4, 'epochs': 3, 'batch_size': 8, 'seed': 42}\n"
    yield "\tif a != b and (c >= d or e <= f):\n\t\treturn a + b - c * d / e\n"


def default_corpus() -> list[str]:
    """The deterministic built-in training corpus: English prose, ChatML chats, Python code, unicode."""
    lines: list[str] = []
    n_s, n_v, n_o, n_e = len(_SUBJECTS), len(_VERBS), len(_OBJECTS), len(_ENDINGS)
    for i in range(240):
        s = _SUBJECTS[i % n_s]
        v = _VERBS[(i * 7 + 3) % n_v]
        o = _OBJECTS[(i * 11 + 5) % n_o]
        e = _ENDINGS[(i * 13 + 1) % n_e]
        lines.append(f"{s} {v} {o} {e}")
        if i % 5 == 0:
            lines.append(f"In {1990 + i % 35}, about {i * 37 % 1000} people said: \"{s.lower()} {v} {o}.\"")
    for i, (q, a) in enumerate(zip(_QUESTIONS, _ANSWERS, strict=True)):
        for sys_prompt in (DEFAULT_SYSTEM_PROMPT, None):
            chat = ""
            if sys_prompt is not None:
                chat += f"{IM_START}system\n{sys_prompt}{IM_END}\n"
            chat += f"{IM_START}user\n{q}{IM_END}\n{IM_START}assistant\n{a}{IM_END}\n"
            lines.append(chat)
        lines.append(f"User: {q}\nAssistant: {a}")
        lines.append(f"Q{i + 1}. {q} A: {a}")
    lines.extend(_python_snippets())
    lines.extend(_UNICODE_LINES * 3)
    return lines


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------


def _train_tokenizer(corpus: Iterable[str], vocab_size: int) -> Tokenizer:
    """Train a byte-level BPE whose normalizer/pre-tokenizer/decoder match transformers' Qwen2Tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, trainers
    from tokenizers.models import BPE

    tok = Tokenizer(
        BPE(
            unk_token=None,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
            byte_fallback=False,
        )
    )
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer=trainer)
    return tok


def build_tiny_model(
    out_dir: str | Path,
    *,
    vocab_size: int = 512,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    seed: int = 0,
    corpus: Iterable[str] | None = None,
) -> Path:
    """Build a tiny random Qwen2 causal LM plus a locally trained tokenizer into ``out_dir``.

    Writes ``config.json``, ``generation_config.json``, ``model.safetensors``, ``tokenizer.json``,
    ``tokenizer_config.json`` and ``chat_template.jinja`` (ChatML with ``{% generation %}`` markers
    around assistant replies) and returns ``Path(out_dir)``. Nothing is downloaded.

    Load with ``AutoTokenizer.from_pretrained(path, padding_side="left")`` and
    ``AutoModelForCausalLM.from_pretrained(path)``. ``padding_side`` is not saved (the tokenizer
    loads with the default right padding, as real Qwen checkpoints do), so callers that generate
    from a padded batch must pass ``padding_side="left"`` at load time.

    Tokens: ``<|endoftext|>`` (id 0) is the pad token, ``<|im_end|>`` (id 2) the eos token (as in
    Qwen2.5-Instruct); there is no bos token. ``generation_config`` stops on either and decodes
    greedily. The tokenizer is a byte-level BPE trained on ``corpus`` (default:
    :func:`default_corpus`) with exactly the NFC normalizer / split-regex + ByteLevel pre-tokenizer
    that transformers' ``Qwen2Tokenizer`` rebuilds at load time, so the saved ``tokenizer.json``
    and the loaded tokenizer produce the same ids.

    The build is deterministic: the same arguments give identical weights and tokenizer files.
    The global torch RNG state of the caller is left untouched.
    """
    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must be at least {256 + len(SPECIAL_TOKENS)} (256 bytes + special tokens)")
    if hidden_size % num_heads:
        raise ValueError("hidden_size must be divisible by num_heads")
    if (hidden_size // num_heads) % 2:
        raise ValueError("head dimension (hidden_size // num_heads) must be even for rotary embeddings")

    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM, Qwen2Tokenizer
    from transformers.utils import logging as hf_logging

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    # ---- tokenizer -------------------------------------------------------------------------
    raw = _train_tokenizer(default_corpus() if corpus is None else corpus, vocab_size)
    model_json = json.loads(raw.to_str())["model"]
    vocab: dict[str, int] = model_json["vocab"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model_json["merges"]]

    # Wrap in the real Qwen2Tokenizer class (what AutoTokenizer instantiates for this checkpoint), so
    # the saved tokenizer.json is exactly what transformers rebuilds at load time.
    hf_tok = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        extra_special_tokens=[IM_START, IM_END],
        model_max_length=_MAX_POSITIONS,
        clean_up_tokenization_spaces=False,
    )
    hf_tok.chat_template = CHAT_TEMPLATE
    for i, t in enumerate(SPECIAL_TOKENS):
        if hf_tok.convert_tokens_to_ids(t) != i:
            raise RuntimeError(f"special token {t!r} did not get id {i}")
    probe = "Hello, world!\n    return x  # naïve café – 東京\r\n"
    if hf_tok(probe)["input_ids"] != raw.encode(probe).ids:
        raise RuntimeError("Qwen2Tokenizer does not reproduce the trained tokenizer; pre-tokenizer mismatch?")
    hf_tok.save_pretrained(out)

    # ---- model -----------------------------------------------------------------------------
    pad_id = hf_tok.convert_tokens_to_ids(ENDOFTEXT)
    eos_id = hf_tok.convert_tokens_to_ids(IM_END)
    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads // 2 if num_heads % 2 == 0 else num_heads,  # exercise GQA
        max_position_embeddings=_MAX_POSITIONS,
        max_window_layers=num_layers,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        dtype="float32",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=None,
        eos_token_id=[eos_id, pad_id],
        pad_token_id=pad_id,
        do_sample=False,
        max_new_tokens=32,
    )
    # No "Writing model shards" progress bar on stderr (it would scribble over a running TUI).
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(out)
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
    return out


# --------------------------------------------------------------------------------------------
# Info (no torch)
# --------------------------------------------------------------------------------------------


def tiny_model_info(path: str | Path) -> dict[str, Any]:
    """Sizes of a (Qwen2/Llama-style) checkpoint for display, computed from ``config.json`` alone.

    ``path`` is the checkpoint directory or its ``config.json``. ``num_parameters`` counts the
    attention (q/k/v with bias, o without), SwiGLU MLP, RMSNorm and embedding weights, and the
    LM head only when it is not tied to the embeddings.
    """
    p = Path(path)
    cfg_path = p / "config.json" if p.is_dir() else p
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))

    vocab = int(cfg["vocab_size"])
    hidden = int(cfg["hidden_size"])
    layers = int(cfg["num_hidden_layers"])
    heads = int(cfg["num_attention_heads"])
    kv_heads = int(cfg.get("num_key_value_heads") or heads)
    inter = int(cfg["intermediate_size"])
    head_dim = int(cfg.get("head_dim") or hidden // heads)
    tied = bool(cfg.get("tie_word_embeddings", False))
    qkv_bias = cfg.get("model_type") == "qwen2" or bool(cfg.get("attention_bias", False))

    q_dim, kv_dim = heads * head_dim, kv_heads * head_dim
    attn = hidden * q_dim + 2 * hidden * kv_dim + q_dim * hidden
    if qkv_bias:
        attn += q_dim + 2 * kv_dim
    mlp = 3 * hidden * inter
    per_layer = attn + mlp + 2 * hidden
    embed = vocab * hidden
    lm_head = 0 if tied else vocab * hidden
    total = embed + layers * per_layer + hidden + lm_head

    dtype = str(cfg.get("dtype") or cfg.get("torch_dtype") or "float32")
    bytes_per = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}.get(dtype, 4)
    return {
        "model_type": cfg.get("model_type"),
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_layers": layers,
        "num_heads": heads,
        "num_kv_heads": kv_heads,
        "head_dim": head_dim,
        "max_position_embeddings": cfg.get("max_position_embeddings"),
        "tie_word_embeddings": tied,
        "dtype": dtype,
        "embedding_parameters": embed,
        "parameters_per_layer": per_layer,
        "num_parameters": total,
        "size_bytes": total * bytes_per,
    }
