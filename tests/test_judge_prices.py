"""What a judge call costs (engine/judging/prices.py): the built-in table, inference profiles and ARNs priced
as their base model, unknown models unknown (said once), and a bad table refused in one line."""

from __future__ import annotations

import logging

import pytest

from engine.common.resources import data_path
from engine.judging import prices
from engine.judging.prices import PriceError, base_model_id, cost_usd, load_prices, price_of

HAIKU = "anthropic.claude-3-5-haiku-20241022-v1:0"


def test_the_builtin_table_is_read_whole():
    table = load_prices()
    assert table.as_of == "2026-11-01" and table.source == str(data_path("prices.toml"))
    assert len(table.prices) == data_path("prices.toml").read_text().count("[[models]]")
    assert table.prices[("bedrock", HAIKU)].input_per_mtok == 0.80


def test_cost_from_tokens():
    assert cost_usd("bedrock", HAIKU, 1_000_000, 0) == pytest.approx(0.80)
    assert cost_usd("bedrock", HAIKU, 1200, 5) == pytest.approx((1200 * 0.80 + 5 * 4.00) / 1e6)
    assert cost_usd("openai", "gpt-4o-mini", 2_000_000, 1_000_000) == pytest.approx(0.30 + 0.60)
    assert cost_usd("bedrock", "amazon.nova-pro-v1:0", 0, 0) == 0.0
    assert cost_usd("local", "/models/qwen-judge", 10_000, 10) == 0.0


@pytest.mark.parametrize("model", [
    f"us.{HAIKU}", f"eu.{HAIKU}", f"apac.{HAIKU}", f"global.{HAIKU}", f"us-gov.{HAIKU}",
    f"arn:aws:bedrock:us-east-1::foundation-model/{HAIKU}",
    f"arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.{HAIKU}",
])
def test_inference_profiles_and_arns_cost_as_their_base_model(model):
    assert base_model_id(model) == HAIKU
    assert price_of("bedrock", model) == price_of("bedrock", HAIKU)
    assert cost_usd("bedrock", model, 1000, 100) == cost_usd("bedrock", HAIKU, 1000, 100)


def test_unknown_models_are_unknown_never_guessed(caplog):
    prices._unpriced.clear()
    with caplog.at_level(logging.WARNING, logger="engine.judging.prices"):
        for model in ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13", "gpt-4o-2024-05-13"):
            assert cost_usd("openai", model, 1000, 10) is None        # a snapshot is not its alias
        assert cost_usd("bedrock", "us.meta.llama3-3-70b-instruct-v1:0", 1000, 10) is None
        app = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3"
        assert base_model_id(app) is None and cost_usd("bedrock", app, 1000, 10) is None
        assert cost_usd("openai", HAIKU, 1000, 10) is None               # priced at another provider only
        assert cost_usd("bedrock", "xx.anthropic.claude-3-5-haiku-20241022-v1:0", 1000, 10) is None
    said = [r.getMessage() for r in caplog.records]
    assert said.count(f"no price for openai model 'gpt-4o-2024-05-13' in {data_path('prices.toml')}: its cost is "
                      "unknown") == 1
    assert len(said) == 5


def _table(tmp_path, text):
    path = tmp_path / "prices.toml"
    path.write_text(text, encoding="utf-8")
    return path


ENTRY = '[[models]]\nprovider = "openai"\nmodel = "m"\ninput_per_mtok = 1\noutput_per_mtok = 2\n'


def test_a_table_of_ones_own(tmp_path):
    table = load_prices(_table(tmp_path, 'as_of = "2030-01-01"\n' + ENTRY))
    assert table.price_of("openai", "m").cost(1_000_000, 1_000_000) == 3.0
    assert table.price_of("openai", "n") is None


def test_batch_prices_are_the_discount_of_on_demand_unless_a_model_has_its_own(tmp_path):
    from engine.judging.prices import batch_cost_usd, cost_usd

    table = load_prices(_table(tmp_path, 'batch_discount = 0.4\n' + ENTRY + ENTRY.replace('"m"', '"b"')
                               + "batch_input_per_mtok = 0.1\nbatch_output_per_mtok = 0.2\n"))
    assert table.price_of("openai", "m").batch_cost(1_000_000, 1_000_000, table.batch_discount) == pytest.approx(1.2)
    assert table.price_of("openai", "b").batch_cost(1_000_000, 1_000_000, table.batch_discount) == pytest.approx(0.3)
    # the built-in table: half the on-demand price (AWS's documented batch discount)
    haiku = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
    assert batch_cost_usd("bedrock", haiku, 1000, 100) == pytest.approx(cost_usd("bedrock", haiku, 1000, 100) / 2)


@pytest.mark.parametrize("text, message", [
    ('as_of = 20300101\n' + ENTRY, "as_of: must be a date as text"),
    ('currency = "EUR"\n' + ENTRY, "currency: unknown key (known: as_of, batch_discount, models)"),
    ('batch_discount = 0\n' + ENTRY, "batch_discount: must be a fraction of the on-demand price, above 0"),
    (ENTRY + "batch_input_per_mtok = 0.5\n", "models[1] (m): give both batch_input_per_mtok and "
                                              "batch_output_per_mtok, or neither"),
    ('as_of = "x"\n', "needs a [[models]] array"),
    (ENTRY + ENTRY, "models[2]: openai 'm' is priced twice"),
    (ENTRY.replace("openai", "azure"), "models[1]: provider must be one of bedrock, openai, not 'azure'"),
    (ENTRY.replace("input_per_mtok = 1", "input_per_mtok = -1"),
     "models[1] (m): input_per_mtok must be a number of USD, 0 or more, not -1"),
    (ENTRY.replace("input_per_mtok = 1", 'input_per_mtok = "1"'), "input_per_mtok must be a number of USD"),
    (ENTRY.replace("output_per_mtok = 2", "output_per_mtok = true"), "output_per_mtok must be a number of USD"),
    (ENTRY.replace("output_per_mtok = 2\n", ""), "models[1]: needs output_per_mtok"),
    (ENTRY + "region = 'us-east-1'\n", "models[1]: region: unknown key"),
    (ENTRY.replace('model = "m"', 'model = ""'), "models[1]: model is empty"),
    ('models = [1]\n', "models[1]: expected a table ([[models]]), not int"),
    ("[[models]\n", "prices.toml: "),
    (ENTRY.replace("= 1\n", "= inf\n"), "not a finite number"),
])
def test_a_bad_table_is_one_line(tmp_path, text, message):
    path = _table(tmp_path, text)
    with pytest.raises(PriceError) as info:
        load_prices(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text, text


def test_a_missing_table_is_one_line(tmp_path):
    with pytest.raises(PriceError, match=r"nope\.toml: "):
        load_prices(tmp_path / "nope.toml")
