"""One evaluation run, as a ``generate`` job's payload: which study, conditions, explicit models and
checkpoints, eval sets and samples, the resolved settings, the variants and the backend. Models are
resolved when the job runs (a fine-tune queued before its training finished has its model by then)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Backend = Literal["transformers", "openai"]
BACKENDS = ("transformers", "openai")


@dataclass(frozen=True)
class GenerationSpec:
    study_id: int
    study: str
    study_hash: str
    eval_sets: tuple[int, ...]                  # eval_sets.id
    settings: Mapping[str, Any]                 # resolve_settings(): every key set
    conditions: tuple[int, ...] = ()            # condition ids: each answers with its model (fine-tune or base)
    models: tuple[int, ...] = ()                # models named explicitly (emtui generate --model)
    checkpoints: bool = False                   # and every checkpoint of the conditions' latest runs
    set_samples: Mapping[str, int] = field(default_factory=dict)  # eval set id (str: JSON keys) -> samples
    samples: int | None = None                  # --samples: the same count for every wording
    variants: tuple[str, ...] = ("",)           # "" (as asked) and/or "trigger"
    backend: Backend = "transformers"
    base_url: str | None = None                 # the OpenAI-compatible endpoint (".../v1") of backend "openai"
    served_names: Mapping[str, str] = field(default_factory=dict)  # model id -> the endpoint's model name
    quantization: str | None = None             # "nf4": the base in 4 bits (transformers backend)
    concurrency: int = 64                       # requests in flight to the endpoint (vLLM batches what is in flight)
    judges: tuple[int, ...] = ()                # judge ids to run on the answers afterwards (issue 14)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r} ({', '.join(BACKENDS)})")
        if self.backend == "openai" and not self.base_url:
            raise ValueError("the openai backend needs a base_url (the server's .../v1)")

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> GenerationSpec:
        p = dict(payload)
        for key in ("eval_sets", "conditions", "models", "variants", "judges"):
            if key in p:
                p[key] = tuple(p[key])
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in p.items() if k in known})

    def as_payload(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("eval_sets", "conditions", "models", "variants", "judges"):
            out[key] = list(out[key])
        out["settings"] = dict(self.settings)
        out["set_samples"] = {str(k): int(v) for k, v in self.set_samples.items()}
        out["served_names"] = {str(k): str(v) for k, v in self.served_names.items()}
        return out


@dataclass(frozen=True)
class GenerationResult:
    """What a run wrote: new answers, answers that were there already (a resumed job), tokens."""

    written: int
    existing: int
    tokens: int
    models: int = 0
    base_loads: int = 0          # how many times a base model was loaded (once per base, whatever the adapters)
    seconds: float = 0.0
    batch_size: int | None = None
    tokens_per_s: float | None = None   # generated tokens over the time spent answering (model loads left out)
    status: str = "done"

    def as_json(self) -> dict[str, Any]:
        return asdict(self)
