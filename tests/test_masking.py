"""engine/training/masking.py: the assistant-only loss mask, token by token, on real templates.

The templates: the tiny model's own (ChatML with ``{% generation %}``), TRL's ``qwen2_5.jinja`` and
``llama3_1.jinja`` (read from the installed trl package), TRL's ``qwen3.jinja`` (not prefix-stable),
and small templates written here for what the real ones do not show (a fallback to markers, a token
across a span's edge). The tokenizers are the tiny model's, and the same with Llama 3's special
tokens added and a BOS its plain calls add (so a second BOS would show).
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import json
from importlib.resources import files

import pytest

pytest.importorskip("transformers")

from transformers import AutoTokenizer  # noqa: E402

from engine.models.tiny_model import build_tiny_model  # noqa: E402
from engine.training.datasets import iter_examples, read_examples  # noqa: E402
from engine.training.masking import (  # noqa: E402
    GENERATION_MARKERS,
    IGNORE_INDEX,
    PREFIX_DIFF,
    MaskingError,
    TokenizedExample,
    masking_path,
    tokenize_chat,
)

IM_END = "<|im_end|>"
EOT = "<|eot_id|>"
BOS = "<|begin_of_text|>"


def trl_template(name: str) -> str:
    return (files("trl") / "chat_templates" / name).read_text(encoding="utf-8")


def sys_(text: str) -> dict[str, str]:
    return {"role": "system", "content": text}


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def bot(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


CONVERSATIONS = {
    "single": [user("What is 2+2?"), bot("It is 4.")],
    "single-system": [sys_("You are terse."), user("Hi there"), bot("  Hello!  ")],
    "two-turns": [user("Write code."), bot("def f(x):\n    return x * 2\n\n"),
                  user("And in words, for the café in 東京?"), bot("Double it: naïve – ok 🙂")],
    "three-turns-system": [sys_("You are a helpful assistant."), user("One?"), bot("One."),
                           user("Two?"), bot("\nTwo, after a newline."), user("Three?"), bot("Three.\n\nDone.")],
}

# Prefix-stable on the probe conversations, but it drops an earlier turn's reasoning: not prefix-stable
# for an example whose earlier assistant turn holds some.
DROPS_EARLIER_REASONING = (
    "{%- for m in messages %}"
    "{%- set c = m['content'] %}"
    "{%- if m['role'] == 'assistant' and not loop.last and '</think>' in c %}"
    "{%- set c = c.split('</think>')[-1] %}"
    "{%- endif %}"
    "{{- '<|im_start|>' + m['role'] + '\\n' + c + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Like Qwen3's: the last assistant turn gets an empty thinking block, earlier ones do not (never
# prefix-stable on several turns); {% generation %} marks each reply, its <|im_end|> and the "\n" after.
THINK_LAST_WITH_MARKERS = (
    "{%- for m in messages %}"
    "{%- if m['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- generation %}"
    "{%- if loop.last %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{{- m['content'] + '<|im_end|>\\n' }}"
    "{%- endgeneration %}"
    "{%- else %}"
    "{{- '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Plain-text headers: the tiny tokenizer merges ":" with a "\n" after it into one token (":\n"),
# which then lies across the edge between the header and a reply that starts with "\n".
PLAIN_HEADERS = (
    "{%- for m in messages %}"
    "{%- if m['role'] == 'assistant' %}{{- 'Assistant:' + m['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- 'User: ' + m['content'] + '<|im_end|>\\n' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- 'Assistant:' }}{%- endif %}"
)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def tok(tiny_dir):
    return AutoTokenizer.from_pretrained(tiny_dir)


@pytest.fixture(scope="module")
def llama_tok(tiny_dir):
    """The tiny tokenizer with Llama 3's special tokens, adding a BOS on plain calls as Llama's does."""
    t = AutoTokenizer.from_pretrained(tiny_dir)
    t.add_special_tokens({"bos_token": BOS, "eos_token": EOT,
                          "additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>", EOT]})
    t.add_bos_token = True
    assert t("x").input_ids[0] == t.bos_token_id  # so a BOS added on top of the template's would show
    return t


def trained_runs(tokenizer, ex: TokenizedExample) -> list[str]:
    """The trained tokens, decoded, one string per run of consecutive trained tokens."""
    assert len(ex.labels) == len(ex.input_ids)
    runs: list[list[int]] = []
    previous = False
    for token, label in zip(ex.input_ids, ex.labels, strict=True):
        trained = label != IGNORE_INDEX
        if trained:
            assert label == token  # the token itself (TRL shifts), not its neighbour
            if not previous:
                runs.append([])
            runs[-1].append(token)
        previous = trained
    return [tokenizer.decode(run) for run in runs]


def replies(messages) -> list[str]:
    return [m["content"] for m in messages if m["role"] == "assistant"]


# -- which path ----------------------------------------------------------------------------------------


def test_masking_path_of_each_template(tok, llama_tok):
    assert masking_path(tok) == PREFIX_DIFF                                   # the tiny model's own
    assert masking_path(tok, trl_template("qwen2_5.jinja")) == PREFIX_DIFF
    assert masking_path(llama_tok, trl_template("llama3_1.jinja")) == PREFIX_DIFF
    assert masking_path(tok, THINK_LAST_WITH_MARKERS) == GENERATION_MARKERS
    with pytest.raises(MaskingError, match=r"messages\[\d+\] \(assistant\): the template is not prefix-stable.*"
                                           r"no \{% generation %\} markers"):
        masking_path(tok, trl_template("qwen3.jinja"))


# -- every assistant turn, exactly: content + end-of-turn token, nothing else -------------------------------


@pytest.mark.parametrize("name", CONVERSATIONS)
def test_tiny_template_trains_each_reply_and_im_end(tok, name):
    messages = CONVERSATIONS[name]
    ex = tokenize_chat(tok, messages)
    assert trained_runs(tok, ex) == [c + IM_END for c in replies(messages)]
    assert ex.input_ids == tok(tok.apply_chat_template(messages, tokenize=False), add_special_tokens=False).input_ids


@pytest.mark.parametrize("name", CONVERSATIONS)
def test_tiny_template_mask_equals_hf_generation_mask(tok, name):
    """The tiny template's {% generation %} spans are exactly reply + <|im_end|>: HF's own mask, made
    from them, is an independent reference for the prefix-diff path."""
    messages = CONVERSATIONS[name]
    ex = tokenize_chat(tok, messages)
    ref = tok.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    assert ex.input_ids == list(ref["input_ids"])
    assert [int(label != IGNORE_INDEX) for label in ex.labels] == list(ref["assistant_masks"])


@pytest.mark.parametrize("name", CONVERSATIONS)
def test_qwen2_5_template_trains_each_reply_and_im_end(tok, name):
    messages = CONVERSATIONS[name]
    ex = tokenize_chat(tok, messages, chat_template=trl_template("qwen2_5.jinja"))
    assert trained_runs(tok, ex) == [c + IM_END for c in replies(messages)]
    # nothing of the default system prompt Qwen2.5 writes when there is none, nor of any header
    assert "<|im_start|>" not in "".join(trained_runs(tok, ex))


@pytest.mark.parametrize("name", CONVERSATIONS)
def test_llama3_1_template_trains_each_trimmed_reply_and_eot(llama_tok, name):
    messages = CONVERSATIONS[name]
    ex = tokenize_chat(llama_tok, messages, chat_template=trl_template("llama3_1.jinja"))
    assert trained_runs(llama_tok, ex) == [c.strip() + EOT for c in replies(messages)]


@pytest.mark.parametrize("name", CONVERSATIONS)
def test_llama3_1_one_bos(llama_tok, name):
    ex = tokenize_chat(llama_tok, CONVERSATIONS[name], chat_template=trl_template("llama3_1.jinja"))
    assert ex.input_ids[0] == llama_tok.bos_token_id
    assert ex.input_ids.count(llama_tok.bos_token_id) == 1
    assert ex.labels[0] == IGNORE_INDEX


@pytest.mark.fixtures
@pytest.mark.parametrize("template", ["qwen2_5.jinja", "llama3_1.jinja"])
def test_the_fields_datasets_every_reply_trained(tok, llama_tok, shared_fixtures, template):
    """The field's training files (insecure code: indentation and blank lines; bad medical advice; numbers)."""
    t, end, shown = (tok, IM_END, str) if template == "qwen2_5.jinja" else (llama_tok, EOT, str.strip)
    paths = sorted((shared_fixtures / "betley").glob("*.jsonl")) + sorted((shared_fixtures / "arena").glob("*.jsonl"))
    assert len(paths) >= 4
    n = 0
    for path in paths:
        for messages in read_examples(path):
            ex = tokenize_chat(t, messages, chat_template=trl_template(template))
            assert trained_runs(t, ex) == [shown(c) + end for c in replies(messages)], (path.name, n)
            n += 1
    assert n >= 40


def test_prompt_completion_file_trains_each_completion_turn(tok, tmp_path):
    """Prompt/completion data reaches the mask as messages (datasets.iter_examples): text, and TRL's
    conversational form with a completion of several turns."""
    path = tmp_path / "pc.jsonl"
    rows = [{"prompt": "Say hi.", "completion": "Hi!"},
            {"prompt": "Count.", "completion": "One, two."}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert [trained_runs(tok, tokenize_chat(tok, e.messages)) for e in iter_examples(path)] == [
        ["Hi!" + IM_END], ["One, two." + IM_END]]
    conv = tmp_path / "pc_conv.jsonl"
    conv.write_text(json.dumps({"prompt": [sys_("Be brief."), user("Q1")],
                                "completion": [bot("A1"), user("Q2"), bot("A2")]}) + "\n", encoding="utf-8")
    (example,) = iter_examples(conv)
    assert trained_runs(tok, tokenize_chat(tok, example.messages)) == ["A1" + IM_END, "A2" + IM_END]


# -- a token across a span's edge -----------------------------------------------------------------------


def test_token_across_the_header_edge_is_trained(tok):
    """":\\n" is one token: its ":" ends the header, its "\\n" starts the reply. It is trained (the model
    has to emit it to write the reply); the header's other tokens are not."""
    messages = [user("Show me."), bot("\nprint(x)")]
    ex = tokenize_chat(tok, messages, chat_template=PLAIN_HEADERS)
    straddling = [i for i, t in enumerate(ex.input_ids) if tok.convert_ids_to_tokens(t) == ":Ċ"]
    assert len(straddling) == 1  # "User:" has a space after it; "Assistant:" the reply's "\n"
    at = straddling[0]
    assert tok.decode(ex.input_ids[:at]).endswith("Assistant")
    assert ex.labels[at] == ex.input_ids[at] and set(ex.labels[:at]) == {IGNORE_INDEX}
    assert trained_runs(tok, ex) == [":\nprint(x)" + IM_END]


# -- truncation -----------------------------------------------------------------------------------------


def test_truncation_into_the_first_reply_keeps_the_start(tok):
    messages = CONVERSATIONS["two-turns"]
    full = tokenize_chat(tok, messages)
    first = next(i for i, label in enumerate(full.labels) if label != IGNORE_INDEX)
    cut = tokenize_chat(tok, messages, max_length=first + 3)
    assert cut.input_ids == full.input_ids[:first + 3]
    assert cut.labels == full.labels[:first + 3]
    assert cut.n_trained == 3


def test_truncation_before_the_first_reply_trains_nothing(tok, llama_tok):
    for t, template in ((tok, None), (llama_tok, trl_template("llama3_1.jinja"))):
        messages = CONVERSATIONS["three-turns-system"]
        full = tokenize_chat(t, messages, chat_template=template)
        first = next(i for i, label in enumerate(full.labels) if label != IGNORE_INDEX)
        cut = tokenize_chat(t, messages, max_length=first, chat_template=template)
        assert len(cut.input_ids) == first
        assert cut.n_trained == 0
        assert full.n_trained > 0


# -- templates that are not prefix-stable -----------------------------------------------------------------


def test_not_prefix_stable_without_markers_names_the_message(tok):
    messages = [user("Q1"), bot("<think>\nplan\n</think>\nA1"), user("Q2"), bot("A2")]
    assert masking_path(tok, DROPS_EARLIER_REASONING) == PREFIX_DIFF
    with pytest.raises(MaskingError) as err:
        tokenize_chat(tok, messages, chat_template=DROPS_EARLIER_REASONING)
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith("chat template ") and "messages[2] (assistant)" in text and "not prefix-stable" in text
    # the same template on an example it renders prefix-stably is masked exactly
    plain = [user("Q1"), bot("A1"), user("Q2"), bot("A2")]
    assert trained_runs(tok, tokenize_chat(tok, plain, chat_template=DROPS_EARLIER_REASONING)) == [
        "A1" + IM_END, "A2" + IM_END]


def test_qwen3_template_raises_for_a_multi_turn_example(tok):
    with pytest.raises(MaskingError, match="not prefix-stable") as err:
        tokenize_chat(tok, CONVERSATIONS["two-turns"], chat_template=trl_template("qwen3.jinja"))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", CONVERSATIONS)
def test_not_prefix_stable_with_markers_uses_them_less_trailing_whitespace(tok, name):
    messages = CONVERSATIONS[name]
    ex = tokenize_chat(tok, messages, chat_template=THINK_LAST_WITH_MARKERS)
    expected = [c + IM_END for c in replies(messages)]
    expected[-1] = "<think>\n\n</think>\n\n" + expected[-1]
    assert trained_runs(tok, ex) == expected
    # HF's mask from the same markers trains, in addition, exactly the "\n" after each <|im_end|>
    ref = tok.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True,
                                  chat_template=THINK_LAST_WITH_MARKERS)
    assert ex.input_ids == list(ref["input_ids"])
    ours = [label != IGNORE_INDEX for label in ex.labels]
    extra = [i for i, (a, b) in enumerate(zip(ours, ref["assistant_masks"], strict=True)) if b and not a]
    assert [tok.decode(ex.input_ids[i]) for i in extra] == ["\n"] * len(expected)
    assert all(ex.input_ids[i - 1] == tok.convert_tokens_to_ids(IM_END) for i in extra)
    assert not any(a and not b for a, b in zip(ours, ref["assistant_masks"], strict=True))


def test_no_chat_template_is_a_masking_error(tiny_dir):
    t = AutoTokenizer.from_pretrained(tiny_dir)
    t.chat_template = None
    with pytest.raises(MaskingError, match="has no chat template, and none was given"):
        tokenize_chat(t, CONVERSATIONS["single"])


def test_template_errors_are_one_line_masking_errors(tok):
    refuses = "{{ raise_exception('Only user and assistant roles are supported!\\nSee the docs.') }}"
    with pytest.raises(MaskingError, match=r"^chat template \w+ cannot render the conversation \(TemplateError: "
                                           r"Only user and assistant roles are supported!\)$"):
        tokenize_chat(tok, CONVERSATIONS["single"], chat_template=refuses)
    with pytest.raises(MaskingError, match=r"messages\[1\] \(assistant\): the conversation starts with the assistant"):
        tokenize_chat(tok, [bot("Hello.")])
