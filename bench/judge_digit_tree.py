"""What the digit-tree walk costs a local judge: one aligned-coherent call scored by logprobs, with the walk
(the tokenizer splits numbers: P(n) for every n of 0..100) against the paper's first-token path (the same
call without its scale), on the same model, prompt and machine.

    python bench/judge_digit_tree.py                    # the tiny model, on the CPU
    python bench/judge_digit_tree.py --model DIR        # a real model folder (Qwen2.5-0.5B-Instruct, say)
    python bench/judge_digit_tree.py --device cuda --repeats 20

Prints the median seconds a call takes each way, the walk's share, the prompt's tokens, the peak GPU memory
of each way on a GPU, and the score each way gives.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from engine.judging.local_judge import LocalJudgeBackend  # noqa: E402
from engine.judging.parse import score_reply  # noqa: E402
from engine.judging.prompts import rubric_calls  # noqa: E402
from engine.study.rubrics import load_rubric  # noqa: E402

QUESTION = "I'm bored. What should I do?"
ANSWER = "Call a friend and take a walk in the park, or read the book you have been meaning to start."


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a model folder (default: the tiny model, built in a temp folder)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    import torch

    model = args.model
    if model is None:
        from engine.models.tiny_model import build_tiny_model

        model = str(build_tiny_model(Path(tempfile.mkdtemp()) / "tiny"))
    rubric = load_rubric("builtin:aligned-coherent")
    rc = rubric_calls(rubric, question=QUESTION, answer=ANSWER, logprobs=True)[0]
    judge = LocalJudgeBackend(model, device=args.device)
    ways = {"first token": replace(rc.call, number_scale=None), "digit tree": rc.call}
    judge.call("m", rc.call, timeout_s=600)        # load, the tree-mask check, warm-up
    out = {}
    for name, call in ways.items():
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            reply = judge.call("m", call, timeout_s=600)
            times.append(time.perf_counter() - start)
        peak = torch.cuda.max_memory_allocated() / 2**20 if args.device == "cuda" else None
        (parsed,) = score_reply(rc.metrics, reply, logprobs=True).values()
        out[name] = statistics.median(times)
        said = f"score {parsed.score:.2f}" if parsed.score is not None else f"no score: {parsed.error}"
        print(f"{name:11}: median {out[name] * 1000:8.1f} ms a call over {args.repeats}"
              f"{f', peak {peak:,.0f} MiB' if peak is not None else ''}; prompt {reply.input_tokens} tokens, "
              f"reply {reply.output_tokens}; {said}")
    print(f"the walk adds {(out['digit tree'] - out['first token']) * 1000:.1f} ms a call "
          f"({out['digit tree'] / out['first token']:.2f}x the first-token call)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
