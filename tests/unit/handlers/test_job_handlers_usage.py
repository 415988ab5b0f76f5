"""Usage and costs go into the row exactly as MBJM writes them (openeo 0.53 ``_format_usage_stat``), one column
per usage key, and read back by ``parse_usage``."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from openeo.extra.job_management._manager import _format_usage_stat

from airflow_provider_openeo.job_table._usage import (
    UsageAmount,
    format_usage,
    parse_costs,
    parse_usage,
    usage_row_values,
)

USAGE_CASES: list[dict[str, Any]] = [
    {"cpu": {"value": 1.5, "unit": "cpu-seconds"}},
    {"cpu": {"value": 40, "unit": "cpu-seconds"}},
    {"cpu": {"value": 40.0, "unit": "cpu-seconds"}},
    {"memory": {"value": 2048, "unit": "mb-seconds"}},
    {"duration": {"value": 12}},
    {"duration": {"unit": "seconds"}},
    {"cpu": {}},
    {"cpu": {"value": 1e-07, "unit": "cpu-hours"}},
]


@pytest.mark.parametrize("usage", USAGE_CASES)
def test_usage_text_is_what_mbjm_writes(usage: dict[str, Any]) -> None:
    metadata = {"id": "j-1", "usage": usage}
    for field in usage:
        assert format_usage(usage[field]) == _format_usage_stat(metadata, field)


@pytest.mark.parametrize("usage", USAGE_CASES)
def test_usage_text_parses_back_to_value_and_unit(usage: dict[str, Any]) -> None:
    for entry in usage.values():
        amount = parse_usage(format_usage(entry))
        assert amount == UsageAmount(float(entry.get("value", 0)), entry.get("unit", ""))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12.5 cpu-seconds", UsageAmount(12.5, "cpu-seconds")),
        ("40", UsageAmount(40.0, "")),
        ("1e3 mb-seconds", UsageAmount(1000.0, "mb-seconds")),
        ("0.25 sentinelhub_processing_unit", UsageAmount(0.25, "sentinelhub_processing_unit")),
        (" 3 mega pixel ", UsageAmount(3.0, "mega pixel")),
        (3, UsageAmount(3.0, "")),
        (None, None),
        (float("nan"), None),
        ("n/a", None),
        ("", None),
        ("inf seconds", None),
        (True, None),
    ],
)
def test_parse_usage(text: Any, expected: UsageAmount | None) -> None:
    assert parse_usage(text) == expected


def test_usage_row_values_have_a_column_per_reported_key() -> None:
    metadata = {
        "id": "j-1",
        "usage": {
            "cpu": {"value": 2.5, "unit": "cpu-seconds"},
            "duration": {"value": 7, "unit": "seconds"},
            "input_pixel": {"value": 1.0, "unit": "mega-pixel"},
        },
        "costs": 3,
    }
    assert usage_row_values(metadata, job_id="j-1") == {
        "cpu": "2.5 cpu-seconds",
        "duration": "7 seconds",
        "input_pixel": "1.0 mega-pixel",
        "costs": 3.0,
    }


def test_a_usage_key_named_costs_never_overwrites_the_costs() -> None:
    metadata = {"usage": {"costs": {"value": 9, "unit": "EUR"}, "cpu": {"value": 1}}, "costs": 2}
    assert usage_row_values(metadata, job_id="j-1") == {"cpu": "1", "costs": 2.0}


def test_missing_usage_writes_nothing() -> None:
    assert usage_row_values({"id": "j-1", "status": "finished"}, job_id="j-1") == {}


def test_bare_number_usage_keeps_the_number() -> None:
    assert usage_row_values({"usage": {"cpu": 12}}, job_id="j-1") == {"cpu": "12"}


@pytest.mark.parametrize("raw", ["n/a", float("nan"), float("inf"), [1], True])
def test_bad_costs_are_ignored_with_a_warning(raw: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    assert parse_costs(raw, job_id="j-7") is None
    if raw is not True:
        assert "j-7" in caplog.text


@pytest.mark.parametrize(("raw", "expected"), [(1, 1.0), ("2.5", 2.5), (0, 0.0), (None, None)])
def test_costs_become_floats(raw: Any, expected: float | None) -> None:
    assert parse_costs(raw, job_id="j-1") == expected


def test_malformed_usage_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    assert usage_row_values({"usage": "lots", "costs": 1}, job_id="j-9") == {"costs": 1.0}
    assert "j-9" in caplog.text
