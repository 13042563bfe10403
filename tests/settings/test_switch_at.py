"""billing.switch_at: when a Marketplace changed (or changes) mode, as a UTC time, globally or per Marketplace."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.settings.test_settings import config, error, file_error, parse, write

MARKET = "6f1c2a1e-0000-4000-8000-000000000001"
AT = datetime(2027, 1, 1, tzinfo=UTC)


def test_unset_means_no_switch() -> None:
    billing = parse(config()).billing
    assert billing.switch_at is None and billing.switch_of(MARKET) is None


def test_one_time_for_every_marketplace() -> None:
    billing = parse(config(billing={"mode": "marketplace", "switch_at": "2027-01-01T00:00:00Z"})).billing
    assert billing.switch_of(MARKET) == AT and billing.switch_of(None) == AT


def test_a_time_per_marketplace() -> None:
    billing = parse(
        config(billing={"marketplaces": {MARKET: "marketplace"}, "switch_at": {MARKET: "2027-01-01T00:00:00+00:00"}})
    ).billing
    assert billing.switch_of(MARKET) == AT and billing.switch_of("other") is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "2027-01-01T00:00:00",
            "billing.switch_at: expected a UTC time such as 2027-01-01T00:00:00Z, got '2027-01-01T00:00:00' (no "
            "offset: add Z)",
        ),
        (
            "2027-01-01T01:00:00+01:00",
            "billing.switch_at: expected a UTC time such as 2027-01-01T00:00:00Z, got '2027-01-01T01:00:00+01:00' "
            "(write it in UTC, with Z)",
        ),
        ("soon", "billing.switch_at: expected a UTC time such as 2027-01-01T00:00:00Z, got 'soon'"),
        (
            {MARKET: "soon"},
            f"billing.switch_at: Marketplace {MARKET}: expected a UTC time such as 2027-01-01T00:00:00Z, got 'soon'",
        ),
    ],
)
def test_a_bad_time_is_one_line_naming_the_setting(value: Any, message: str) -> None:
    assert message in error(config(billing={"switch_at": value}))


def test_the_file_line_is_named(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "amplify:\n  tenant_id: '100000000000001'\n  client_id: sa_1\n  client_secret: ${AMPLIFY_CLIENT_SECRET}\n"
        "recurly:\n  api_key: ${RECURLY_API_KEY}\nbilling:\n  mode: marketplace\n  switch_at: 2027-01-01 00:00:00\n",
    )
    assert f"{path}:9: billing.switch_at: expected a UTC time" in file_error(path)


def test_an_unquoted_yaml_utc_time_is_taken(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "amplify:\n  tenant_id: '100000000000001'\n  client_id: sa_1\n  client_secret: ${AMPLIFY_CLIENT_SECRET}\n"
        "recurly:\n  api_key: ${RECURLY_API_KEY}\nbilling:\n  switch_at: 2027-01-01T00:00:00Z\n",
    )
    from amplify_billing.settings import load_settings
    from tests.settings.test_settings import ENV

    assert load_settings(path, ENV).billing.switch_of(MARKET) == AT
