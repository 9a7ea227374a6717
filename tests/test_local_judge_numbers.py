"""A local judge whose tokenizer writes numbers digit by digit (the tiny model's, like Qwen2.5's: one token a
digit) is scored from P(n) for every n of the scale, walked through the digit tree
(engine/judging/number_tree.py), not from the first token (which can only say 0..9)."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from engine.judging.backend import Call  # noqa: E402
from engine.judging.local_judge import LocalJudgeBackend  # noqa: E402
from engine.judging.logprob import score_from_logprobs  # noqa: E402
from engine.judging.number_tree import DigitVocab, number_logprobs, numbers_one_token  # noqa: E402
from engine.judging.parse import score_reply  # noqa: E402
from engine.judging.prompts import rubric_calls  # noqa: E402
from engine.models.tiny_model import build_tiny_model  # noqa: E402
from engine.study.rubrics import load_rubric  # noqa: E402

PROMPT = "Rate this answer from 0 to 100."
REPLIES = ("75", "80", "100", "7")   # what the judge is trained to say, in equal parts


def _chat(tokenizer, prompt: str, reply: str | None = None) -> list[int]:
    messages = [{"role": "user", "content": prompt}]
    if reply is None:
        return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                  return_dict=True)["input_ids"])
    head = _chat(tokenizer, prompt)
    return head + tokenizer.encode(reply, add_special_tokens=False) + [tokenizer.convert_tokens_to_ids("<|im_end|>")]


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory):
    """The tiny model trained for a few seconds to answer the prompt with one of REPLIES: a judge that means
    numbers past 9, so the true scores are far from any single digit."""
    folder = build_tiny_model(tmp_path_factory.mktemp("numbers"))
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    model = transformers.AutoModelForCausalLM.from_pretrained(str(folder))
    head = len(_chat(tokenizer, PROMPT))
    rows = [_chat(tokenizer, PROMPT, r) for r in REPLIES]
    width = max(map(len, rows))
    ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
    labels = torch.tensor([[-100] * head + r[head:] + [-100] * (width - len(r)) for r in rows])
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # a tiny model on a shared box: one thread is ~40x faster than two contended
    try:
        for _ in range(40):
            loss = model(input_ids=ids, labels=labels).loss
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        model.save_pretrained(folder)
        yield folder
    finally:
        torch.set_num_threads(threads)


def brute_force(folder, prompt: str, low: int, high: int) -> dict[int, float]:
    """log P(n) for each n: a plain forward pass over prompt + n's tokens, and the probability that the next
    token starts no digit — no tree, no cache, no mask."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    model = transformers.AutoModelForCausalLM.from_pretrained(str(folder)).eval()
    digit_led = torch.tensor([tokenizer.decode([i])[:1].isdigit() for i in range(model.config.vocab_size)])
    head = _chat(tokenizer, prompt)
    out = {}
    with torch.no_grad():
        for n in range(low, high + 1):
            tokens = tokenizer.encode(str(n), add_special_tokens=False)
            lp = torch.log_softmax(model(input_ids=torch.tensor([head + tokens])).logits[0].float(), -1)
            said = sum(float(lp[len(head) - 1 + k, t]) for k, t in enumerate(tokens))
            out[n] = said + math.log1p(-float(lp[-1][digit_led].exp().sum()))
    return out


def test_the_path_is_decided_from_the_tokenizer_and_whole_number_tokens_keep_the_first_token(judge_dir, tmp_path):
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(judge_dir))
    assert [tokenizer.decode([t]) for t in tokenizer.encode("75", add_special_tokens=False)] == ["7", "5"]
    assert not numbers_one_token(tokenizer, 0, 100)
    assert numbers_one_token(tokenizer, 0, 9)          # single digits are one token each
    # a GPT-4o-like vocabulary, every number of 0..100 one token: the judge keeps the paper's first-token path
    tokenizer.add_tokens([str(n) for n in range(10, 101)])
    assert numbers_one_token(tokenizer, 0, 100)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(judge_dir))
    model.resize_token_embeddings(len(tokenizer))
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    reply = LocalJudgeBackend(tmp_path, device="cpu").call(
        "judge", Call(PROMPT, max_tokens=2, top_logprobs=20, number_scale=(0, 100)), timeout_s=120)
    assert reply.numbers_one_token is True and reply.number_logprobs is None and reply.top_logprobs


def test_the_digit_tree_is_exact_and_the_judge_scores_what_it_means(judge_dir):
    truth = brute_force(judge_dir, PROMPT, 0, 100)
    judge = LocalJudgeBackend(judge_dir, device="cpu")
    metric = load_rubric("builtin:aligned-coherent").metrics[0]
    call = Call(PROMPT, max_tokens=4, top_logprobs=20, number_scale=(0, 100))
    reply = judge.call("judge", call, timeout_s=120)
    assert reply.numbers_one_token is False
    # every number that holds more than the walk's pruning bound, exact to float32 rounding
    walked = reply.number_logprobs
    assert {n for n, lp in truth.items() if lp > math.log(1e-5)} <= set(walked)
    for n, lp in walked.items():
        assert lp == pytest.approx(truth[n], abs=1e-4), n
    # without pruning: all 101, exact
    loaded = judge._loaded
    inputs = loaded.tokenizer(loaded.tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}],
                                                                    tokenize=False, add_generation_prompt=True),
                              return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = loaded.model(**inputs, use_cache=True)
    full = number_logprobs(loaded.model, out.cache if hasattr(out, "cache") else out.past_key_values,
                           out.logits[0, -1], int(inputs["input_ids"].shape[1]),
                           DigitVocab.of(loaded.tokenizer, loaded.model.config.vocab_size), 0, 100, prune=0.0)
    assert full.keys() == truth.keys()
    assert max(abs(full[n] - truth[n]) for n in truth) < 1e-4
    # the score: the weighted mean over P(n), and what the first token alone would have said
    mass = sum(math.exp(lp) for lp in truth.values())
    expected = sum(n * math.exp(lp) for n, lp in truth.items()) / mass
    (parsed,) = score_reply([metric], reply, logprobs=True).values()
    assert mass > 0.5 and parsed.score == pytest.approx(expected, abs=1e-3)
    assert 40 < parsed.score < 100
    first_token_only = score_from_logprobs(reply.top_logprobs, logprobs=True)
    assert first_token_only is not None and first_token_only <= 9    # the silently wrong number of before


def test_a_scale_of_single_digits_keeps_the_first_token_path(judge_dir):
    judge = LocalJudgeBackend(judge_dir, device="cpu")
    reply = judge.call("judge", Call(PROMPT, max_tokens=2, top_logprobs=20, number_scale=(0, 9)), timeout_s=120)
    assert reply.numbers_one_token is True and reply.number_logprobs is None and reply.top_logprobs


def test_the_rubric_call_carries_its_scale_to_the_judge():
    rubric = load_rubric("builtin:aligned-coherent")
    scored = rubric_calls(rubric, question="q", answer="a", logprobs=True)
    assert {rc.call.number_scale for rc in scored} == {(0, 100)}
    assert {rc.call.number_scale for rc in rubric_calls(rubric, question="q", answer="a")} == {None}


def test_a_plan_says_which_local_judge_reads_numbers_digit_by_digit(judge_dir, store):
    from engine.judging.local_judge import split_numbers_warning

    rubric = load_rubric("builtin:aligned-coherent")
    said = split_numbers_warning(store, {"name": "qwen-like", "model": str(judge_dir)}, rubric)
    assert said is not None and said.startswith("judge 'qwen-like' (local) writes numbers digit by digit: its "
                                                "0..100 scores are read through the digit tree")
    # the tiny model is built by the first job, not by a plan: nothing to read yet, nothing said
    assert split_numbers_warning(store, {"name": "tiny-bare", "model": "tiny"}, rubric) is None
    assert split_numbers_warning(store, {"name": "x", "model": str(judge_dir)}, load_rubric("builtin:factual")) is None
