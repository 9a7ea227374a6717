"""The local judge (engine/judging/local_judge.py) on the tiny model: the chat template applied, greedy text,
the first token's top logprobs from the model's own next-token distribution, one load shared by threads."""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from engine.judging.backend import Call, CallFailed  # noqa: E402
from engine.judging.local_judge import LocalJudgeBackend  # noqa: E402
from engine.judging.parse import score_logprobs  # noqa: E402
from engine.models.tiny_model import build_tiny_model  # noqa: E402
from engine.study.rubrics import Metric  # noqa: E402

PROMPT = "Rate this answer from 0 to 100: the sun is bigger than the moon."
SYSTEM = "You are a strict judge."


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def judge(tiny_dir):
    return LocalJudgeBackend(tiny_dir, device="cpu")


def by_hand(tiny_dir, prompt: str, system: str | None, n_new: int, top_n: int):
    """Greedy decoding one forward pass at a time, and the first step's top-N log-softmax: what the
    judge must return, computed without generate()."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(tiny_dir))
    model = transformers.AutoModelForCausalLM.from_pretrained(str(tiny_dir)).eval()
    chat = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    n_prompt = ids.shape[1]
    first = None
    with torch.no_grad():
        for _ in range(n_new):
            logits = model(ids).logits[0, -1]
            if first is None:
                first = torch.log_softmax(logits.float(), -1)
            nxt = int(torch.argmax(logits))
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
            if nxt == tokenizer.convert_tokens_to_ids("<|im_end|>"):
                break
    values, top_ids = torch.topk(first, top_n)
    tops: dict[str, float] = {}
    for lp, i in zip(values.tolist(), top_ids.tolist(), strict=True):
        token = tokenizer.decode([i])
        tops[token] = math.log(math.exp(tops[token]) + math.exp(lp)) if token in tops else lp
    new = ids[0, n_prompt:].tolist()
    return tokenizer.decode(new, skip_special_tokens=True), tops, n_prompt, len(new)


def test_greedy_text_and_first_token_logprobs(tiny_dir, judge):
    reply = judge.call("tiny", Call(PROMPT, max_tokens=6, system=SYSTEM, top_logprobs=10), timeout_s=120)
    text, tops, n_prompt, n_new = by_hand(tiny_dir, PROMPT, SYSTEM, 6, 10)
    assert reply.text == text
    assert (reply.input_tokens, reply.output_tokens) == (n_prompt, n_new)
    assert reply.stop_reason in ("stop", "length")
    assert reply.top_logprobs.keys() == tops.keys()
    for token, lp in tops.items():
        assert reply.top_logprobs[token] == pytest.approx(lp, abs=1e-4)
    assert reply.extra == {"dtype": "float32", "device": "cpu"}


def test_no_logprobs_unless_asked_and_the_system_prompt_counts(judge):
    plain = judge.call("tiny", Call(PROMPT, max_tokens=4), timeout_s=120)
    assert plain.top_logprobs is None
    with_system = judge.call("tiny", Call(PROMPT, max_tokens=4, system=SYSTEM), timeout_s=120)
    assert with_system.input_tokens > plain.input_tokens


def test_the_logprobs_score_a_metric(judge):
    """The tiny model says no numbers: score_logprobs says so instead of inventing a score."""
    reply = judge.call("tiny", Call(PROMPT, max_tokens=1, top_logprobs=20), timeout_s=120)
    parsed = score_logprobs(Metric("aligned", (0.0, 100.0), "better", "p"), reply.top_logprobs)
    assert parsed.score is not None or parsed.error.startswith("the number tokens hold")


def test_one_load_shared_by_threads(tiny_dir, monkeypatch):
    from engine.generation import hf_backend

    loads = []
    real = hf_backend.load_base

    def counted(*args, **kwargs):
        loads.append(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(hf_backend, "load_base", counted)
    judge = LocalJudgeBackend(tiny_dir, device="cpu")
    prompts = [f"{PROMPT} ({i})" for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda p: judge.call("tiny", Call(p, 4, top_logprobs=3), timeout_s=120), prompts))
    assert len(loads) == 1
    alone = [judge.call("tiny", Call(p, 4, top_logprobs=3), timeout_s=120) for p in prompts]
    assert replies == alone


def test_a_model_that_cannot_load_fails_for_good_once(tmp_path):
    judge = LocalJudgeBackend(tmp_path / "nothing-here", device="cpu")
    with pytest.raises(CallFailed) as exc:
        judge.call("x", Call("p", 4), timeout_s=30)
    assert (exc.value.retryable, exc.value.sent) == (False, False)
    first = str(exc.value)
    assert first.startswith("local judge: cannot load model ") and "\n" not in first
    with pytest.raises(CallFailed) as again:
        judge.call("x", Call("p", 4), timeout_s=30)
    assert str(again.value) == first


def test_a_busy_judge_times_out_retryably(judge):
    judge.call("tiny", Call("warm up", 1), timeout_s=120)
    with judge._lock:      # another call holds the model
        with pytest.raises(CallFailed) as exc:
            judge.call("tiny", Call("p", 4), timeout_s=0.2)
    assert (exc.value.retryable, exc.value.sent) == (True, False)
    assert "busy" in str(exc.value)
