"""One judge call as a record of a Bedrock batch inference job, and its reply read back (issue 14).

A batch job's input is JSONL, one ``{"recordId": ..., "modelInput": {...}}`` a line; its output one
``{"recordId", "modelInput", "modelOutput"}`` (or ``"error": {"errorCode", "errorMessage"}`` instead of
``modelOutput``) a line, in any order (docs.aws.amazon.com/bedrock/latest/userguide/batch-inference-data.html,
batch-inference-results.html). ``modelInput`` is what the job's ``modelInvocationType`` takes:

- ``InvokeModel`` (AWS's default): the model's own InvokeModel body. We write it for the two families whose
  bodies we know and test: **Anthropic** (the Messages API: ``anthropic_version`` ``bedrock-2023-05-31``,
  ``max_tokens``, ``temperature``, ``system``, ``messages[].content[]{type: text}``; the reply's
  ``content[].text``, ``usage.input_tokens/output_tokens``, ``stop_reason``) and **Amazon Nova**
  (``schemaVersion`` ``messages-v1``, ``system[].text``, ``messages[].content[].text``,
  ``inferenceConfig.maxTokens/temperature``; the reply's ``output.message.content[].text``,
  ``usage.inputTokens/outputTokens``, ``stopReason``).
- ``Converse``: the Converse request body without ``modelId`` (botocore's bedrock-runtime ``ConverseRequest``,
  the request the on-demand panel sends), its reply a ``ConverseResponse``. Every other family (Meta Llama,
  Mistral, ...) goes this way: one shape for all of them, the same as on demand, instead of a native body
  per family that we could not test against the real service.

The record id is the judgment's idempotent key — answer, judge (model and settings), rubric (its content hash),
the call (metric) — as database ids: ``g<generation>j<judge>r<rubric>u<call>``, alphanumeric as AWS asks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from engine.judging.backend import Call, Reply

__all__ = ["ANTHROPIC_VERSION", "family", "invocation_type", "model_input", "parse_record_id", "record_id",
           "reply_from_output"]

ANTHROPIC_VERSION = "bedrock-2023-05-31"
_RECORD = re.compile(r"\Ag(\d+)j(\d+)r(\d+)u(\d+)\Z")


def family(model: str) -> str:
    """``anthropic``, ``nova`` or ``converse`` (any other family): how a model's records are written."""
    from engine.judging.prices import base_model_id

    base = base_model_id(model) or model
    if base.startswith("anthropic."):
        return "anthropic"
    if base.startswith("amazon.nova"):
        return "nova"
    return "converse"


def invocation_type(model: str) -> str:
    """The job's ``modelInvocationType``: ``InvokeModel`` for a body of the model's own, else ``Converse``."""
    return "Converse" if family(model) == "converse" else "InvokeModel"


def record_id(generation_id: int, judge_id: int, rubric_id: int, unit: int) -> str:
    return f"g{int(generation_id)}j{int(judge_id)}r{int(rubric_id)}u{int(unit)}"


def parse_record_id(text: Any) -> tuple[int, int, int, int] | None:
    """(generation, judge, rubric, call) of a record id, or None when it is not one of ours."""
    match = _RECORD.match(text) if isinstance(text, str) else None
    return None if match is None else (int(match[1]), int(match[2]), int(match[3]), int(match[4]))


def model_input(model: str, call: Call) -> dict[str, Any]:
    """The ``modelInput`` of one call to ``model`` (see the module's doc)."""
    kind = family(model)
    if kind == "anthropic":
        body: dict[str, Any] = {"anthropic_version": ANTHROPIC_VERSION, "max_tokens": call.max_tokens,
                                "temperature": call.temperature,
                                "messages": [{"role": "user", "content": [{"type": "text", "text": call.prompt}]}]}
        if call.system:
            body["system"] = call.system
        return body
    body = {"messages": [{"role": "user", "content": [{"text": call.prompt}]}],
            "inferenceConfig": {"maxTokens": call.max_tokens, "temperature": call.temperature}}
    if kind == "nova":
        body = {"schemaVersion": "messages-v1", **body}
    if call.system:
        body["system"] = [{"text": call.system}]
    return body


def reply_from_output(model: str, output: Any) -> Reply:
    """A record's ``modelOutput`` as a :class:`Reply` (its text blocks joined, tokens, stop reason); a
    ValueError (one line) when it is not the reply the family sends."""
    if not isinstance(output, Mapping):
        raise ValueError(f"modelOutput is {type(output).__name__}, not a JSON object")
    if family(model) == "anthropic":
        blocks = output.get("content")
        usage = _mapping(output.get("usage"))
        tokens = (usage.get("input_tokens"), usage.get("output_tokens"))
        stop = output.get("stop_reason")
        where = "content"
    else:  # Nova's own reply and a ConverseResponse have the same shape
        out = output.get("output")
        message = out.get("message") if isinstance(out, Mapping) else None
        blocks = message.get("content") if isinstance(message, Mapping) else None
        usage = _mapping(output.get("usage"))
        tokens = (usage.get("inputTokens"), usage.get("outputTokens"))
        stop = output.get("stopReason")
        where = "output.message.content"
    if not isinstance(blocks, list):
        raise ValueError(f"modelOutput has no {where} list: not {family(model)}'s reply shape")
    text = "".join(b["text"] for b in blocks if isinstance(b, Mapping) and isinstance(b.get("text"), str))
    return Reply(text=text, input_tokens=_count(tokens[0]), output_tokens=_count(tokens[1]),
                 stop_reason=stop if isinstance(stop, str) else None)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
