"""What a judge call costs, from the price table ``data/prices.toml`` (USD per million tokens, in and out).

A model the table does not hold costs ``None`` (unknown), never a guess: a dated OpenAI snapshot is not
its alias (``gpt-4o-2024-05-13`` was priced apart from ``gpt-4o``), and a missing model is logged once per
process so that a run's log says which judge has no price. Bedrock calls may name a cross-region inference
profile (``us.anthropic.claude-3-5-haiku-20241022-v1:0``; ``eu.``, ``apac.``, ``global.``, ...) or an ARN of
a foundation model or of a system-defined inference profile: each is priced as its base model (AWS bills a
cross-region profile at the source region's price). An application inference profile's ARN names no
model, so it has no price. A ``local`` judge costs nothing (0.0).

Bedrock batch inference (engine/judging/bedrock_batch.py) is billed at a model's own batch price
(``batch_input_per_mtok`` / ``batch_output_per_mtok`` of its entry) when the table gives one, else at the
table's ``batch_discount`` (a fraction of the on-demand price; default 0.5: AWS prices batch inference at 50%
of on-demand for the models that support it) — :func:`batch_cost_usd`.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.common.resources import data_path
from engine.common.safe_load import LoadError
from engine.common.untrusted import decode, label_problem, parse_toml, read_bytes

__all__ = ["Price", "PriceError", "PriceTable", "base_model_id", "batch_cost_usd", "cost_usd", "load_prices",
           "price_of"]

log = logging.getLogger(__name__)

TOP_KEYS = ("as_of", "batch_discount", "models")
MODEL_KEYS = ("provider", "model", "input_per_mtok", "output_per_mtok")
BATCH_KEYS = ("batch_input_per_mtok", "batch_output_per_mtok")   # optional, both or neither
DEFAULT_BATCH_DISCOUNT = 0.5
PROVIDERS = ("bedrock", "openai")      # what the table prices; "local" costs nothing
FREE_PROVIDERS = ("local",)
# the geography prefixes of Bedrock's system-defined cross-region inference profiles
_PROFILE = re.compile(r"\A(?:us|us-gov|eu|apac|ap|jp|au|ca|global)\.(?=[a-z0-9-]+\.)")
_ARN = re.compile(r"\Aarn:aws[a-z-]*:bedrock:[^:]*:[^:]*:(foundation-model|inference-profile|[a-z-]+)/(.+)\Z")


class PriceError(ValueError):
    """A price table that cannot be used; one line naming the file and the entry."""


@dataclass(frozen=True)
class Price:
    provider: str
    model: str
    input_per_mtok: float
    output_per_mtok: float
    batch_input_per_mtok: float | None = None
    batch_output_per_mtok: float | None = None

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1e6

    def batch_cost(self, input_tokens: int, output_tokens: int, discount: float) -> float:
        """Batch inference: the model's own batch price, else ``discount`` of the on-demand price."""
        if self.batch_input_per_mtok is not None and self.batch_output_per_mtok is not None:
            return (input_tokens * self.batch_input_per_mtok + output_tokens * self.batch_output_per_mtok) / 1e6
        return self.cost(input_tokens, output_tokens) * discount


@dataclass(frozen=True)
class PriceTable:
    as_of: str
    prices: dict[tuple[str, str], Price]
    source: str
    batch_discount: float = DEFAULT_BATCH_DISCOUNT

    def price_of(self, provider: str, model: str) -> Price | None:
        """The price of ``model`` at ``provider`` (an inference profile or ARN as its base model), or None."""
        found = self.prices.get((provider, model))
        if found is None and provider == "bedrock":
            base = base_model_id(model)
            found = self.prices.get((provider, base)) if base else None
        return found


def base_model_id(model: str) -> str | None:
    """The base model id a Bedrock model id, inference profile id or ARN stands for; None for an
    application inference profile (its ARN names no model)."""
    arn = _ARN.match(model)
    if arn:
        if arn.group(1) not in ("foundation-model", "inference-profile"):
            return None
        model = arn.group(2)
    return _PROFILE.sub("", model, count=1)


def load_prices(path: str | Path | None = None) -> PriceTable:
    """The price table at ``path`` (default: the built-in ``data/prices.toml``), checked; :class:`PriceError`."""
    where = Path(path) if path is not None else data_path("prices.toml")
    try:
        doc = parse_toml(decode(read_bytes(where)))
    except (LoadError, OSError) as exc:
        raise PriceError(f"{where}: {exc}") from None
    unknown = [k for k in doc if k not in TOP_KEYS]
    if unknown:
        raise PriceError(f"{where}: {unknown[0]}: unknown key (known: {', '.join(TOP_KEYS)})")
    as_of = doc.get("as_of", "")
    if not isinstance(as_of, str):
        raise PriceError(f"{where}: as_of: must be a date as text (\"2026-11-01\"), not {as_of!r}")
    discount = doc.get("batch_discount", DEFAULT_BATCH_DISCOUNT)
    if isinstance(discount, bool) or not isinstance(discount, (int, float)) or not 0 < discount <= 1:
        raise PriceError(f"{where}: batch_discount: must be a fraction of the on-demand price, above 0 and at most "
                         f"1 (0.5: half price), not {discount!r}")
    entries = doc.get("models")
    if not isinstance(entries, list) or not entries:
        raise PriceError(f"{where}: needs a [[models]] array")
    prices: dict[tuple[str, str], Price] = {}
    for i, entry in enumerate(entries, 1):
        price = _entry(where, i, entry)
        key = (price.provider, price.model)
        if key in prices:
            raise PriceError(f"{where}: models[{i}]: {price.provider} {price.model!r} is priced twice")
        prices[key] = price
    return PriceTable(as_of, prices, str(where), float(discount))


def _entry(where: Path, i: int, entry: Any) -> Price:
    at = f"{where}: models[{i}]"
    if not isinstance(entry, dict):
        raise PriceError(f"{at}: expected a table ([[models]]), not {type(entry).__name__}")
    unknown = [k for k in entry if k not in MODEL_KEYS + BATCH_KEYS]
    if unknown:
        raise PriceError(f"{at}: {unknown[0]}: unknown key (known: {', '.join(MODEL_KEYS + BATCH_KEYS)})")
    if sum(k in entry for k in BATCH_KEYS) == 1:
        raise PriceError(f"{at} ({entry.get('model')}): give both {' and '.join(BATCH_KEYS)}, or neither (then "
                         "batch_discount of the on-demand price)")
    missing = [k for k in MODEL_KEYS if k not in entry]
    if missing:
        raise PriceError(f"{at}: needs {', '.join(missing)}")
    if entry["provider"] not in PROVIDERS:
        raise PriceError(f"{at}: provider must be one of {', '.join(PROVIDERS)}, not {entry['provider']!r}")
    problem = label_problem(entry["model"], "model")
    if problem:
        raise PriceError(f"{at}: {problem}")
    for key in ("input_per_mtok", "output_per_mtok", *(k for k in BATCH_KEYS if k in entry)):
        value = entry[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise PriceError(f"{at} ({entry['model']}): {key} must be a number of USD, 0 or more, not {value!r}")
    batch = [float(entry[k]) if k in entry else None for k in BATCH_KEYS]
    return Price(entry["provider"], entry["model"], float(entry["input_per_mtok"]), float(entry["output_per_mtok"]),
                 *batch)


_builtin: PriceTable | None = None
_unpriced: set[tuple[str, str]] = set()
_lock = threading.Lock()


def _table() -> PriceTable:
    global _builtin
    with _lock:
        if _builtin is None:
            _builtin = load_prices()
        return _builtin


def price_of(provider: str, model: str) -> Price | None:
    """The built-in table's price of ``model`` at ``provider``, or None."""
    return _table().price_of(provider, model)


def cost_usd(provider: str, model: str, input_tokens: int, output_tokens: int) -> float | None:
    """What a call that read ``input_tokens`` and wrote ``output_tokens`` cost in USD, by the built-in
    table; None when the table has no price for the model (logged once per model), 0.0 for a local judge."""
    if provider in FREE_PROVIDERS:
        return 0.0
    price = price_of(provider, model)
    if price is None:
        with _lock:
            first = (provider, model) not in _unpriced
            _unpriced.add((provider, model))
        if first:
            log.warning("no price for %s model %r in %s: its cost is unknown", provider, model,
                        _table().source)
        return None
    return price.cost(input_tokens, output_tokens)


def batch_cost_usd(provider: str, model: str, input_tokens: int, output_tokens: int) -> float | None:
    """What one record of a Bedrock batch inference job cost in USD, by the built-in table (see the module's
    doc); None when the table has no price for the model."""
    price = price_of(provider, model)
    if price is None:
        return None
    return price.batch_cost(input_tokens, output_tokens, _table().batch_discount)
