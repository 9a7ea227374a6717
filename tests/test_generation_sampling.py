"""Any single answer can be regenerated from its record (issue 13): engine/generation/sampling.py's
per-answer seeds and per-row sampler, on the tiny model at temperature 1 (so outputs are random)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from engine.generation import RowSampler, answer_seed, sample  # noqa: E402
from engine.models.tiny_model import build_tiny_model  # noqa: E402

NEW_TOKENS = 16
QUESTIONS = ["Hi.", "What is your name?", "Tell me a story about a dragon who lived in a cave by the sea.",
             "Why?", "How do I make a cup of tea, step by step, with milk and sugar?", "Pick a number.",
             "If you ruled the world, what would you do first and why?", "Hello there, friend.",
             "Name three colours.", "What do you think about humans and artificial intelligence?",
             "Ok.", "Write a short poem about the moon and the stars over a quiet town."]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = build_tiny_model(tmp_path_factory.mktemp("tiny"))
    tok = transformers.AutoTokenizer.from_pretrained(path, padding_side="left")
    model = transformers.AutoModelForCausalLM.from_pretrained(path).eval()
    prompts = [tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
               for q in QUESTIONS]
    return model, tok, prompts


SEEDS = [answer_seed(7, question_id, 3, 0) for question_id in range(len(QUESTIONS))]


def run(tiny, prompts, seeds, **settings):
    model, tok, _ = tiny
    settings = {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": NEW_TOKENS} | settings
    return sample(model, tok, prompts, seeds, **settings)


def test_answer_seed_comes_from_the_answers_identity_only():
    seed = answer_seed(1, 2, 3, 4)
    assert 0 <= seed < 2**63 and seed == answer_seed(1, 2, 3, 4)
    variants = {answer_seed(1, 2, 3, 4, trigger=True), answer_seed(0, 2, 3, 4), answer_seed(1, 0, 3, 4),
                answer_seed(1, 2, 0, 4), answer_seed(1, 2, 3, 0), answer_seed(1, 3, 2, 4)}
    assert seed not in variants and len(variants) == 6
    # no salted hash(): another interpreter (another PYTHONHASHSEED) derives the same seed
    code = "from engine.generation.sampling import answer_seed; print(answer_seed(1, 2, 3, 4))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert int(other.stdout) == seed
    with pytest.raises(TypeError):
        answer_seed(1, 2, 3, None)  # type: ignore[arg-type]


def test_every_row_of_a_batch_is_regenerated_alone_and_reordered(tiny):
    _, _, prompts = tiny
    batch = run(tiny, prompts, SEEDS)
    assert len(set(batch)) == len(batch) and all(batch)  # random, non-empty answers
    alone = [run(tiny, [p], [s])[0] for p, s in zip(prompts, SEEDS, strict=True)]
    assert alone == batch  # 12 of 12
    order = [5, 11, 0, 3, 9, 1, 7, 2, 10, 4, 8, 6]
    reordered = run(tiny, [prompts[i] for i in order], [SEEDS[i] for i in order])
    assert reordered == [batch[i] for i in order]


def test_the_seed_decides_and_the_global_rng_does_not(tiny):
    _, _, prompts = tiny
    torch.manual_seed(1)
    first = run(tiny, prompts, SEEDS)
    torch.manual_seed(999)
    torch.rand(1000)
    assert run(tiny, prompts, SEEDS) == first
    other_seeds = [s + 1 for s in SEEDS]
    changed = run(tiny, prompts, other_seeds)
    assert sum(a != b for a, b in zip(changed, first, strict=True)) >= 10


@pytest.mark.parametrize("settings", [{"top_p": 0.5}, {"top_k": 5}, {"top_k": 5, "top_p": 0.9, "temperature": 0.7}])
def test_top_p_and_top_k_reproduce_alone(tiny, settings):
    _, _, prompts = tiny
    picked = [0, 2, 4, 10]
    batch = run(tiny, prompts, SEEDS, **settings)
    assert [run(tiny, [prompts[i]], [SEEDS[i]], **settings)[0] for i in picked] == [batch[i] for i in picked]
    assert batch != run(tiny, prompts, SEEDS)  # the filters change what is drawn


def test_top_k_1_and_temperature_0_are_greedy_generate(tiny):
    model, tok, prompts = tiny
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    out = model.generate(**enc, do_sample=False, max_new_tokens=NEW_TOKENS)
    greedy = tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert run(tiny, prompts, SEEDS, temperature=0.0) == greedy
    assert run(tiny, prompts, SEEDS, top_k=1) == greedy


def test_a_finished_row_does_not_disturb_the_others(tiny):
    model, tok, prompts = tiny
    # one step at a time: a finished row (its scores EOS-only) beside two live rows draws nothing
    # from their streams
    vocab = model.config.vocab_size
    scores = torch.randn(2, vocab, generator=torch.Generator().manual_seed(0))
    eos_only = torch.full((1, vocab), float("-inf"))
    eos_only[0, 2] = 0.0
    together = RowSampler(SEEDS[:3], temperature=1.0, top_p=1.0)
    alone = RowSampler(SEEDS[1:3], temperature=1.0, top_p=1.0)
    draws = []
    for _ in range(8):
        mixed = together(None, torch.cat([eos_only, scores]))
        assert mixed[0].argmax() == 2
        draws.append(mixed[1:].argmax(-1))
        assert torch.equal(draws[-1], alone(None, scores).argmax(-1))
    assert len({tuple(d.tolist()) for d in draws}) > 1  # the streams move on
    # end to end: row 0 stops after its first token (made an end-of-sequence token) while the rest go on
    first = tok(run(tiny, prompts[:1], SEEDS[:1], max_new_tokens=1)[0], add_special_tokens=False)["input_ids"][0]
    saved = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = [*saved, first]
    try:
        batch = run(tiny, prompts[:4], SEEDS[:4])
        alone_rows = [run(tiny, [p], [s])[0] for p, s in zip(prompts[1:4], SEEDS[1:4], strict=True)]
    finally:
        model.generation_config.eos_token_id = saved
    assert len(tok(batch[0], add_special_tokens=False)["input_ids"]) == 1
    assert max(len(tok(b, add_special_tokens=False)["input_ids"]) for b in batch[1:]) > 1
    assert alone_rows == batch[1:]


def test_plain_sampling_does_not_reproduce_a_row_alone(tiny):
    # why the sampler exists: one global stream shared by the batch (issue 13 measured 0 of 12)
    model, tok, prompts = tiny

    def plain(ps):
        torch.manual_seed(1234)
        enc = tok(ps, return_tensors="pt", padding=True, add_special_tokens=False)
        out = model.generate(**enc, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=NEW_TOKENS)
        return tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)

    batch = plain(prompts)
    alone = [plain([p])[0] for p in prompts]
    assert sum(a != b for a, b in zip(alone, batch, strict=True)) >= 9


@pytest.mark.parametrize(("top_k", "top_p"), [(0, 0.5), (5, 1.0), (20, 0.9), (1, 0.3), (0, 1.0)])
def test_the_filters_keep_what_transformers_warpers_keep(top_k, top_p):
    from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

    logits = torch.randn(6, 512, generator=torch.Generator().manual_seed(top_k)) * 3
    expected = logits.clone()
    if top_k:
        expected = TopKLogitsWarper(top_k)(None, expected)
    if top_p < 1:
        expected = TopPLogitsWarper(top_p)(None, expected)
    ours = RowSampler([0] * 6, temperature=1.0, top_p=top_p, top_k=top_k).filtered(logits)
    assert torch.equal(torch.isinf(ours), torch.isinf(expected))
    assert 0 < torch.isfinite(ours).sum() <= 6 * (top_k or 512)


def test_the_repetition_penalty_is_the_runs_not_the_checkpoints(tiny):
    from engine.generation.sampling import sample_counted

    model, tok, prompts = tiny
    settings = {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": NEW_TOKENS}
    plain = sample_counted(model, tok, prompts[:4], SEEDS[:4], **settings)
    sampled = sample_counted(model, tok, prompts[:4], SEEDS[:4], **{**settings, "temperature": 1.0})
    penalised = sample_counted(model, tok, prompts[:4], SEEDS[:4], **{**settings, "temperature": 1.0},
                               repetition_penalty=3.0)
    assert sampled != penalised  # the penalty applies ...
    # ... and a checkpoint's own settings do not (Qwen2.5 ships do_sample, temperature 0.7, top_k 20,
    # repetition_penalty 1.05): generate() fills defaults from the model's generation_config
    saved = model.generation_config.to_dict()
    model.generation_config.update(repetition_penalty=3.0, do_sample=True, temperature=0.3, top_k=2, top_p=0.5)
    try:
        assert sample_counted(model, tok, prompts[:4], SEEDS[:4], **settings) == plain
        torch.manual_seed(0)
        assert sample_counted(model, tok, prompts[:4], SEEDS[:4], **{**settings, "temperature": 1.0}) == sampled
        assert model.generation_config.repetition_penalty == 3.0  # the model's own config is left as it was
    finally:
        model.generation_config.update(**saved)
