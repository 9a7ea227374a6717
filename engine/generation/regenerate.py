"""One stored answer made again, alone, from its record: the same prompt, seed and settings, the same
model (the base, with the adapter attached when it is one). With the per-row sampler the text is the
same whatever batch the answer was first made in; :func:`regenerate` returns both for the caller to
compare (``emtui answers regenerate ID``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class RegenerateError(ValueError):
    """An answer that cannot be made again here (one line)."""


@dataclass(frozen=True)
class Regenerated:
    generation_id: int
    stored: str
    text: str
    n_tokens: int | None
    backend: str

    @property
    def same(self) -> bool:
        return self.stored == self.text


def regenerate(store: Any, generation_id: int, *, db_path: Any, base_url: str | None = None) -> Regenerated:
    """Answer ``generation_id``'s prompt again with its seed. An answer made through an endpoint is asked of
    that endpoint again (``base_url`` overrides where it is now)."""
    from engine.models.locate import model_location

    rec = store.generation_record(generation_id)
    if rec is None:
        raise RegenerateError(f"no answer {generation_id} in the database")
    settings = json.loads(rec.get("settings") or "{}")
    engine = settings.get("engine") or {}
    if rec.get("seed") is None or not rec.get("prompt") or "max_new_tokens" not in settings:
        raise RegenerateError(f"answer {generation_id} was imported, not generated here: it has no recorded "
                              "prompt, seed and sampler settings to make it again")
    if settings.get("sampler") is None:
        raise RegenerateError(f"answer {generation_id} was not made by emtui's per-answer sampler")
    kind = rec["model_kind"]
    if kind not in ("base", "adapter", "full"):
        raise RegenerateError(f"answer {generation_id}: model {rec['model']!r} is {kind}: no weights to answer with")
    sampling: dict[str, Any] = {"temperature": float(settings["temperature"]), "top_p": float(settings["top_p"]),
                "top_k": int(settings.get("top_k") or 0), "max_new_tokens": int(settings["max_new_tokens"]),
                "repetition_penalty": float(settings.get("repetition_penalty") or 1.0)}
    if engine.get("backend") == "openai":
        from engine.generation.openai_backend import complete

        url = base_url or engine.get("base_url")
        done = complete(str(url), str(engine.get("served_model")), [rec["prompt"]], [int(rec["seed"])], **sampling)
        return Regenerated(generation_id, rec["response"], done[0].text, done[0].n_tokens, "openai")

    path = rec.get("model_path")
    if kind in ("adapter", "full") and (not path or not Path(str(path)).exists()):
        origin = store.merged_from("models", int(rec["model_id"]))
        if origin is not None:  # trained on another box (emtui merge): its weights stayed there
            raise RegenerateError(f"answer {generation_id} was made on another box (merged from "
                                  f"{origin['source_path']}): its model {rec['model']!r} is at {path} there, not on "
                                  "this machine; regenerate it on that box")
    from engine.generation.hf_backend import load_base
    from engine.generation.sampling import sample_counted

    model_row = {"id": rec["model_id"], "name": rec["model"], "kind": kind, "source": rec["model_source"],
                 "path": rec["model_path"]}
    if kind == "adapter":
        base_row = {"source": rec["base_source"], "path": rec["base_path"]}
        loaded = load_base(model_location(base_row, db_path), quantization=_quantization(engine))
        context = loaded.active(str(rec["model_path"]), f"m{rec['model_id']}")
    else:
        loaded = load_base(model_location(model_row, db_path), quantization=_quantization(engine))
        context = loaded.active(None, "")
    with context as model:
        ((text, n),) = sample_counted(model, loaded.tokenizer, [rec["prompt"]], [int(rec["seed"])], **sampling)
    return Regenerated(generation_id, rec["response"], text, n, "transformers")


def _quantization(engine: dict[str, Any]) -> str | None:
    return "nf4" if str(engine.get("quantization") or "").startswith("nf4") else None
