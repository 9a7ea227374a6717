"""Tests for engine/models/tiny_model.py: the offline tiny Qwen2 checkpoint used by tests and the demo.

Everything is real: the checkpoint is built into a temporary directory and loaded back through
the ordinary ``Auto*.from_pretrained`` path with the hub switched off.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import json
import math
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from engine.models.tiny_model import (  # noqa: E402
    CHAT_TEMPLATE,
    ENDOFTEXT,
    IM_END,
    IM_START,
    QWEN2_PRETOKENIZE_REGEX,
    build_tiny_model,
    tiny_model_info,
)

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]

ROUND_TRIP = [
    "Hello, world! This is a plain ASCII sentence.",
    "a , b . c 's don't  double  spaces   and trailing ",
    "def f(x):\n    if x:\n        return [i ** 2 for i in x]\n\treturn None\n\n",
    "windows\r\nline endings\r\n",
    "naïve café – 東京",
    "Zoë says 🙂 👍 — prices: 5 € / £4.50 / ¥800",
    "numbers 1234567890 and 3.14159",
    f"{IM_START}user\nhi there{IM_END}\n{IM_START}assistant\n",
    "",
]

CHAT = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "It is 4."},
    {"role": "user", "content": "And in words, for the café in 東京?"},
    {"role": "assistant", "content": "Four.\n    (indented) naïve – ok"},
]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny") / "model"
    t0 = time.perf_counter()
    path = build_tiny_model(out)
    elapsed = time.perf_counter() - t0
    return path, elapsed


@pytest.fixture(scope="module")
def tok(built):
    return AutoTokenizer.from_pretrained(built[0], padding_side="left")


@pytest.fixture(scope="module")
def model(built):
    m = AutoModelForCausalLM.from_pretrained(built[0])
    m.eval()
    return m


def _raw(path):
    return tokenizers.Tokenizer.from_file(str(Path(path) / "tokenizer.json"))


# ----------------------------------------------------------------------------------------------
# build / files
# ----------------------------------------------------------------------------------------------


def test_build_writes_a_complete_checkpoint_quickly(built):
    path, elapsed = built
    assert path.is_dir()
    names = {p.name for p in path.iterdir()}
    for required in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                     "tokenizer_config.json"):
        assert required in names, names
    assert not any(n.endswith(".bin") for n in names), "weights must be safetensors"
    # torch/transformers are already imported by this module; this includes transformers' lazy
    # import of the Qwen2 modules (~2 s on 2 CPU cores), a rebuild takes ~0.2 s.
    assert elapsed < 10.0, f"build took {elapsed:.1f}s"


def test_config_matches_tokenizer(built, tok, model):
    cfg = json.loads((built[0] / "config.json").read_text())
    assert cfg["model_type"] == "qwen2"
    assert cfg["architectures"] == ["Qwen2ForCausalLM"]
    assert cfg["vocab_size"] == 512 == len(tok)
    assert cfg["hidden_size"] == 64 and cfg["num_hidden_layers"] == 2 and cfg["num_attention_heads"] == 4
    assert cfg["max_position_embeddings"] == 1024
    assert cfg["tie_word_embeddings"] is True
    assert cfg["pad_token_id"] == tok.pad_token_id == tok.convert_tokens_to_ids(ENDOFTEXT) == 0
    assert cfg["eos_token_id"] == tok.eos_token_id == tok.convert_tokens_to_ids(IM_END)
    assert cfg["bos_token_id"] is None and tok.bos_token is None
    assert tok.convert_tokens_to_ids(IM_START) == 1
    assert tok.model_max_length == 1024

    gen = model.generation_config
    assert set(gen.eos_token_id) == {tok.convert_tokens_to_ids(IM_END), tok.convert_tokens_to_ids(ENDOFTEXT)}
    assert gen.pad_token_id == tok.pad_token_id
    assert gen.do_sample is False

    # tied embeddings really are tied after loading
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


def test_padding_side_is_not_saved(built):
    # Documented behaviour: callers must ask for left padding themselves.
    assert AutoTokenizer.from_pretrained(built[0]).padding_side == "right"
    assert AutoTokenizer.from_pretrained(built[0], padding_side="left").padding_side == "left"


def test_tiny_model_info_matches_real_parameter_count(built, model):
    info = tiny_model_info(built[0])
    assert info["num_parameters"] == model.num_parameters()
    assert info["vocab_size"] == 512
    assert info["hidden_size"] == 64 and info["num_layers"] == 2 and info["num_heads"] == 4
    assert info["tie_word_embeddings"] is True
    assert info["size_bytes"] == 4 * model.num_parameters()
    # also accepts the config.json path itself
    assert tiny_model_info(built[0] / "config.json") == info


def test_tiny_model_info_untied_and_other_sizes(tmp_path):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=300, hidden_size=48, intermediate_size=100, num_hidden_layers=3,
                      num_attention_heads=6, num_key_value_heads=3, tie_word_embeddings=False)
    cfg.save_pretrained(tmp_path)
    n = Qwen2ForCausalLM(cfg).num_parameters()
    assert tiny_model_info(tmp_path)["num_parameters"] == n


def test_module_import_is_cheap():
    code = (
        "import sys, engine.models.tiny_model\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'transformers', 'tokenizers', 'textual', 'emtui'))\n"
        "print(','.join(bad))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT,
                         env=env, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == ""


# ----------------------------------------------------------------------------------------------
# tokenizer
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_round_trip(tok, text):
    ids = tok(text, add_special_tokens=True)["input_ids"]
    assert tok.decode(ids) == text


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_loaded_ids_equal_raw_tokenizer_json_ids(built, tok, text):
    raw = _raw(built[0])
    assert tok(text)["input_ids"] == raw.encode(text).ids
    assert tok.encode(text) == raw.encode(text).ids


def test_nfd_input_is_normalised_to_nfc(built, tok):
    nfc = "naïve café – 東京 Zoë"
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfd != nfc
    raw = _raw(built[0])
    assert tok(nfd)["input_ids"] == tok(nfc)["input_ids"] == raw.encode(nfd).ids
    assert tok.decode(tok(nfd)["input_ids"]) == nfc


def test_pipeline_matches_transformers_qwen2(built, tok):
    """The saved pipeline is the one transformers' Qwen2Tokenizer rebuilds (the transformers-5 trap)."""
    from transformers.models.qwen2 import tokenization_qwen2

    assert QWEN2_PRETOKENIZE_REGEX == tokenization_qwen2.PRETOKENIZE_REGEX
    assert type(tok).__name__ == "Qwen2Tokenizer"
    saved = json.loads((built[0] / "tokenizer.json").read_text())
    loaded = json.loads(tok.backend_tokenizer.to_str())
    reference = json.loads(tokenization_qwen2.Qwen2Tokenizer().backend_tokenizer.to_str())
    for key in ("normalizer", "pre_tokenizer", "decoder"):
        assert saved[key] == loaded[key] == reference[key], key
    assert saved["model"]["vocab"] == loaded["model"]["vocab"]
    assert saved["model"]["merges"] == loaded["model"]["merges"]


def test_bpe_was_trained_with_the_qwen2_split():
    """Merges must come from Qwen2's pre-tokenization (single digits), not e.g. GPT-2's (digit runs)."""
    from engine.models.tiny_model import _train_tokenizer, default_corpus

    raw = _train_tokenizer(default_corpus(), 512)
    vocab = raw.get_vocab()
    assert len(vocab) == 512
    multi_digit = [t for t in vocab if sum(c.isdigit() for c in t) >= 2]
    assert multi_digit == []
    # merges do happen: common words are single tokens
    assert "Ġthe" in vocab


def test_trained_tokenizer_equals_loaded_tokenizer(tok):
    from engine.models.tiny_model import _train_tokenizer, default_corpus

    raw = _train_tokenizer(default_corpus(), 512)
    texts = ROUND_TRIP + default_corpus()[::17]
    for text in texts + [unicodedata.normalize("NFD", t) for t in texts]:
        assert tok(text)["input_ids"] == raw.encode(text).ids, text


def test_special_tokens_are_atomic(tok):
    ids = tok(f"{IM_START}assistant\nhi{IM_END}")["input_ids"]
    assert ids[0] == tok.convert_tokens_to_ids(IM_START)
    assert ids[-1] == tok.convert_tokens_to_ids(IM_END)
    assert tok.decode(ids, skip_special_tokens=True) == "assistant\nhi"


def test_custom_corpus(tmp_path):
    corpus = ["zzyzx qwxqwx zzyzx qwxqwx"] * 50 + ["hello world"] * 10
    path = build_tiny_model(tmp_path / "custom", vocab_size=300, hidden_size=32, num_layers=1, num_heads=2,
                            corpus=corpus)
    vocab = _raw(path).get_vocab()
    assert "zzyzx" in vocab and "Ġqwxqwx" in vocab
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["vocab_size"] == 300 and cfg["num_hidden_layers"] == 1 and cfg["hidden_size"] == 32


def test_invalid_arguments(tmp_path):
    with pytest.raises(ValueError):
        build_tiny_model(tmp_path / "a", vocab_size=100)
    with pytest.raises(ValueError):
        build_tiny_model(tmp_path / "b", hidden_size=30, num_heads=4)


# ----------------------------------------------------------------------------------------------
# chat template
# ----------------------------------------------------------------------------------------------


def test_chat_template_survives_save_and_load(built, tok):
    assert tok.chat_template == CHAT_TEMPLATE
    assert "{%- generation %}" in tok.chat_template
    text = tok.apply_chat_template(CHAT, tokenize=False)
    assert text == (
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\nIt is 4.<|im_end|>\n"
        "<|im_start|>user\nAnd in words, for the café in 東京?<|im_end|>\n"
        "<|im_start|>assistant\nFour.\n    (indented) naïve – ok<|im_end|>\n"
    )
    prompt = tok.apply_chat_template(CHAT[:2], tokenize=False, add_generation_prompt=True)
    assert prompt == "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n" \
                     "<|im_start|>assistant\n"
    # prefix-preserving: the prompt is a prefix of the full conversation
    assert text.startswith(prompt)


def _spans(mask):
    spans, start = [], None
    for i, m in enumerate(list(mask) + [0]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            spans.append((start, i))
            start = None
    return spans


def test_assistant_mask_marks_exactly_the_assistant_replies(tok):
    out = tok.apply_chat_template(CHAT, return_assistant_tokens_mask=True, return_dict=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    assert len(ids) == len(mask)
    assert set(mask) == {0, 1}
    replies = [m["content"] for m in CHAT if m["role"] == "assistant"]
    spans = _spans(mask)
    assert len(spans) == len(replies)
    for (a, b), reply in zip(spans, replies, strict=True):
        # the reply plus its closing <|im_end|> (so the model learns to stop), nothing else:
        # not the "<|im_start|>assistant\n" header and not the "\n" after <|im_end|>
        assert tok.decode(ids[a:b]) == reply + IM_END
        assert tok.decode(ids[a:b], skip_special_tokens=True) == reply
        assert tok.decode(ids[a - 1 : a]) == "\n"
        assert tok.decode(ids[a - 2 : a - 1]) == "assistant"
        assert ids[b - 1] == tok.convert_tokens_to_ids(IM_END)
    # tokens are identical to tokenising the rendered text
    assert ids == tok(tok.apply_chat_template(CHAT, tokenize=False))["input_ids"]


def test_assistant_mask_empty_for_prompt_only(tok):
    out = tok.apply_chat_template(CHAT[:2], add_generation_prompt=True, return_assistant_tokens_mask=True,
                                  return_dict=True)
    assert set(out["assistant_masks"]) == {0}


# ----------------------------------------------------------------------------------------------
# model
# ----------------------------------------------------------------------------------------------


def _prompts(tok):
    short = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                    add_generation_prompt=True)
    long = tok.apply_chat_template(CHAT[:4], tokenize=False, add_generation_prompt=True)
    return [short, long]


def test_forward_pass_is_a_random_untrained_lm(tok, model):
    batch = tok(_prompts(tok), padding=True, return_tensors="pt")
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    with torch.no_grad():
        out = model(**batch, labels=labels)
    assert out.logits.shape == (*batch["input_ids"].shape, 512)
    assert torch.isfinite(out.logits).all()
    # freshly initialised: loss is close to uniform over the vocabulary
    assert abs(out.loss.item() - math.log(512)) < 0.5


def test_left_padded_batch_generation(tok, model):
    prompts = _prompts(tok)
    batch = tok(prompts, padding=True, return_tensors="pt")
    ids, attn = batch["input_ids"], batch["attention_mask"]
    n_short = len(tok(prompts[0])["input_ids"])
    assert ids.shape[1] > n_short
    # left padding: the short prompt is padded at the front
    assert attn[0, 0] == 0 and attn[0, -1] == 1 and int(attn[0].sum()) == n_short
    assert ids[0, 0] == tok.pad_token_id
    assert attn[1].all()

    with torch.no_grad():
        gen = model.generate(**batch, max_new_tokens=5, do_sample=False)
        alone = model.generate(**tok(prompts[:1], return_tensors="pt"), max_new_tokens=5, do_sample=False)
        logits_batch = model(**batch).logits[0, -1]
        logits_alone = model(**tok(prompts[:1], return_tensors="pt")).logits[0, -1]
    assert gen.shape[0] == 2
    assert ids.shape[1] < gen.shape[1] <= ids.shape[1] + 5
    assert torch.equal(gen[:, : ids.shape[1]], ids)
    # padding must not change what the short prompt sees
    assert torch.allclose(logits_batch, logits_alone, atol=1e-4)
    new_batch = gen[0, ids.shape[1] :].tolist()
    new_alone = alone[0, n_short:].tolist()
    assert new_batch[: len(new_alone)] == new_alone


# ----------------------------------------------------------------------------------------------
# determinism
# ----------------------------------------------------------------------------------------------


def test_build_is_deterministic(built, tmp_path):
    from safetensors.torch import load_file

    rng_before = torch.random.get_rng_state()
    t0 = time.perf_counter()
    again = build_tiny_model(tmp_path / "again", seed=0)
    assert time.perf_counter() - t0 < 5.0
    assert torch.equal(torch.random.get_rng_state(), rng_before), "build must not disturb the global RNG"
    other = build_tiny_model(tmp_path / "other", seed=1)

    first = built[0]
    for name in ("tokenizer.json", "tokenizer_config.json", "config.json", "generation_config.json"):
        assert (again / name).read_bytes() == (first / name).read_bytes(), name
    assert (other / "tokenizer.json").read_bytes() == (first / "tokenizer.json").read_bytes()

    w0, w1, w2 = (load_file(p / "model.safetensors") for p in (first, again, other))
    assert w0.keys() == w1.keys() == w2.keys()
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    assert (first / "model.safetensors").read_bytes() == (again / "model.safetensors").read_bytes()
    assert not torch.equal(w0["model.embed_tokens.weight"], w2["model.embed_tokens.weight"])


# ----------------------------------------------------------------------------------------------
# TRL: what the {% generation %} markers are for
# ----------------------------------------------------------------------------------------------


def test_trl_assistant_only_loss_labels(built, tmp_path):
    pytest.importorskip("trl")
    datasets = pytest.importorskip("datasets")
    from trl import SFTConfig, SFTTrainer

    tok = AutoTokenizer.from_pretrained(built[0])
    model = AutoModelForCausalLM.from_pretrained(built[0])
    rows = [{"messages": [{"role": "user", "content": f"Question {i}?"},
                          {"role": "assistant", "content": f"Answer number {i}."}]} for i in range(4)]
    args = SFTConfig(output_dir=str(tmp_path / "sft"), assistant_only_loss=True, per_device_train_batch_size=4,
                     max_steps=1, report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True)
    trainer = SFTTrainer(model=model, args=args, train_dataset=datasets.Dataset.from_list(rows),
                         processing_class=tok)
    batch = next(iter(trainer.get_train_dataloader()))
    trained_on = set()
    for ids, labels in zip(batch["input_ids"].tolist(), batch["labels"].tolist(), strict=True):
        trained_on.add(tok.decode([i for i, lab in zip(ids, labels, strict=True) if lab != -100]))
    assert trained_on == {f"Answer number {i}.{IM_END}" for i in range(4)}
