"""A judge row's backend: its provider and params (the study file's ``[[judges]]`` keys) to the object that
makes one call (engine/judging/backend.py). Each backend module is imported only when a judge uses it
(boto3 for Bedrock, transformers for a local judge)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.judging.backend import Backend


class BackendError(ValueError):
    """A judge whose backend cannot be made (one line)."""


def make_backend(provider: str, params: Mapping[str, Any]) -> Backend:
    timeout = float(params.get("timeout_s") or 120.0)
    if provider == "bedrock":
        from engine.judging.bedrock import BedrockBackend

        return BedrockBackend(params.get("region"), read_timeout_s=timeout,
                              max_pool_connections=max(64, int(params.get("max_concurrency") or 0)))
    if provider == "openai":
        from engine.judging.openai_judge import OpenAIJudgeBackend

        if not params.get("base_url"):
            raise BackendError("an openai judge needs a base_url (the server's .../v1)")
        return OpenAIJudgeBackend(str(params["base_url"]))
    if provider == "local":
        from engine.judging.local_judge import LocalJudgeBackend

        return LocalJudgeBackend(str(params.get("path") or params.get("model_dir") or ""),
                                 adapter=params.get("adapter_dir"), problem=params.get("problem"))
    raise BackendError(f"unknown judge provider {provider!r} (bedrock, openai, local)")
