"""Configuration loading: YAML + environment -> frozen settings, and every error's exact message."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from amplify_billing.errors import ConfigError, ExitCode
from amplify_billing.settings import (
    REGION_URLS,
    AccountSettings,
    AmplifySettings,
    CatalogSettings,
    RecurlySettings,
    SafetySettings,
    Secret,
    Settings,
    StateSettings,
    SubscriptionSettings,
    UsageSettings,
    load_settings,
    parse_settings,
    resolve_config_path,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config.example.yaml"

RECURLY_KEY = "rk-5ecret-value-0123"
CLIENT_SECRET = "cs-5ecret-value-4567"
ENV = {"RECURLY_API_KEY": RECURLY_KEY, "AMPLIFY_CLIENT_SECRET": CLIENT_SECRET}
BASE = Path("/etc/amplify-billing")
PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"

# the sections as the Settings model declares them (every field but `source`), not a copy of the loader's table
SECTIONS: dict[str, type[BaseModel]] = {
    name: field.annotation
    for name, field in Settings.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
}


def config(**sections: dict[str, Any]) -> dict[str, Any]:
    """The smallest valid configuration; ``sections`` add keys, and a key set to ``...`` is removed."""
    data: dict[str, Any] = {
        "amplify": {"tenant_id": "100000000000001", "client_id": "sa_1", "client_secret": "${AMPLIFY_CLIENT_SECRET}"},
        "recurly": {"api_key": "${RECURLY_API_KEY}"},
    }
    for name, values in sections.items():
        section = data.setdefault(name, {})
        for key, value in values.items():
            if value is ...:
                section.pop(key, None)
            else:
                section[key] = value
    return data


def parse(data: Any, env: dict[str, str] | None = None, base_dir: Path = BASE) -> Settings:
    return parse_settings(data, ENV if env is None else env, source="config.yaml", base_dir=base_dir)


def error(data: Any, env: dict[str, str] | None = None, base_dir: Path = BASE) -> str:
    with pytest.raises(ConfigError) as info:
        parse(data, env, base_dir)
    assert info.value.exit_code == ExitCode.CONFIG
    return str(info.value)


def write(directory: Path, text: str, name: str = "config.yaml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def file_error(path: Path, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(path, ENV if env is None else env)
    return str(info.value)


# ---- defaults and filling ----------------------------------------------------------------------------


def test_minimal_configuration_takes_every_default() -> None:
    settings = parse(config())

    us = REGION_URLS["us"]
    assert settings == Settings(
        amplify=AmplifySettings(
            central_url=us[0],
            platform_url=us[1],
            auth_url=us[2],
            tenant_id="100000000000001",
            client_id="sa_1",
            client_secret=Secret(CLIENT_SECRET),
        ),
        recurly=RecurlySettings(api_key=Secret(RECURLY_KEY)),
        # a default path is relative to the configuration's directory like an explicit one
        state=StateSettings(path=BASE / "state" / "amplify-billing.db"),
        source="config.yaml",
    )
    assert settings.usage.settle_delay == timedelta(hours=2)
    assert settings.safety.max_destructive_fraction == Decimal("0.20")


def test_settings_are_frozen() -> None:
    settings = parse(config())
    with pytest.raises(ValidationError, match="frozen"):
        settings.recurly.concurrency = 8  # type: ignore[misc]
    # a changed copy is made on purpose, and validated like any other
    assert settings.recurly.model_copy(update={"concurrency": 8}).concurrency == 8


@pytest.mark.parametrize("region", ["us", "eu", "ap", "eu2"])
def test_region_fills_the_three_urls(region: str) -> None:
    amplify = parse(config(amplify={"region": region})).amplify
    assert (amplify.central_url, amplify.platform_url, amplify.auth_url) == REGION_URLS[region]
    assert amplify.region == region


def test_an_explicit_url_wins_over_the_region_one_by_one() -> None:
    amplify = parse(config(amplify={"region": "eu2", "central_url": "https://central.example.com"})).amplify
    assert amplify.central_url == "https://central.example.com"
    assert amplify.platform_url == "https://platform.eu-fr.axway.com"
    assert amplify.auth_url == "https://login.eu-fr.axway.com/auth"


def test_values_of_every_type_are_converted() -> None:
    settings = parse(
        config(
            amplify={"api_version": "v1alpha1", "page_size": "500", "timeout_seconds": 5, "tenant_id": 100000000000001},
            recurly={"region": "eu", "api_url": "http://127.0.0.1:8080", "concurrency": 16, "max_retries": 0},
            catalog={"plan_code_prefix": "amp_", "sync_free_plans": True},
            accounts={"owner": "org", "create_missing": "true"},
            subscriptions={"custom_field": "Amplify_Sub-Id", "on_cancel": "terminate"},
            usage={"window": "hourly", "settle_delay": 0, "lookback": "90m", "statuses": ["Success", "Failure"]},
            safety={"max_destructive_fraction": "35%", "min_destructive_count": 0},
        )
    )
    assert settings.amplify.api_version == "v1alpha1"
    assert settings.amplify.page_size == 500
    assert settings.amplify.timeout_seconds == 5.0 and isinstance(settings.amplify.timeout_seconds, float)
    assert settings.amplify.tenant_id == "100000000000001"
    assert settings.recurly == RecurlySettings(
        api_key=Secret(RECURLY_KEY), region="eu", api_url="http://127.0.0.1:8080", concurrency=16, max_retries=0
    )
    assert settings.catalog == CatalogSettings(plan_code_prefix="amp_", sync_free_plans=True)
    assert settings.accounts == AccountSettings(owner="org", create_missing=True)
    assert settings.subscriptions == SubscriptionSettings(custom_field="Amplify_Sub-Id", on_cancel="terminate")
    assert settings.usage == UsageSettings(
        window="hourly", settle_delay=timedelta(0), lookback=timedelta(minutes=90), statuses=("Success", "Failure")
    )
    assert settings.safety == SafetySettings(max_destructive_fraction=Decimal("0.35"), min_destructive_count=0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("45s", timedelta(seconds=45)),
        ("90m", timedelta(minutes=90)),
        ("2h", timedelta(hours=2)),
        ("3d", timedelta(days=3)),
        (7200, timedelta(hours=2)),
        ("600", timedelta(minutes=10)),
        ("0", timedelta(0)),
    ],
)
def test_durations(text: Any, expected: timedelta) -> None:
    assert parse(config(usage={"settle_delay": text})).usage.settle_delay == expected


@pytest.mark.parametrize(("value", "expected"), [(0.2, "0.2"), ("20%", "0.2"), (0, "0"), (1, "1"), ("0.05", "0.05")])
def test_destructive_fraction(value: Any, expected: str) -> None:
    fraction = parse(config(safety={"max_destructive_fraction": value})).safety.max_destructive_fraction
    assert fraction == Decimal(expected)
    assert isinstance(fraction, Decimal)


def test_an_empty_value_means_the_default() -> None:
    data = config(amplify={"page_size": None}, usage={"statuses": None})
    data["catalog"] = None  # a section whose keys are all commented out
    settings = parse(data)
    assert settings.catalog == CatalogSettings()
    assert settings.amplify.page_size == 100
    assert settings.usage.statuses == ()


# ---- environment and files ---------------------------------------------------------------------------


def test_environment_references_anywhere_in_a_string() -> None:
    settings = parse(
        config(
            amplify={"tenant_id": "${ORG}", "client_id": "sa_${NAME}_x", "realm": "$${LITERAL}", "page_size": "${PAGE}"}
        ),
        env={**ENV, "ORG": "42", "NAME": "billing", "PAGE": "250"},
    )
    assert settings.amplify.tenant_id == "42"
    assert settings.amplify.client_id == "sa_billing_x"
    assert settings.amplify.realm == "${LITERAL}"
    assert settings.amplify.page_size == 250


def test_an_unset_environment_variable_names_the_key() -> None:
    assert error(config(), env={"AMPLIFY_CLIENT_SECRET": "x"}) == (
        "config.yaml: recurly.api_key: environment variable RECURLY_API_KEY is not set; "
        "export it, or use recurly.api_key_file instead"
    )
    assert error(config(catalog={"plan_code_prefix": "${PREFIX}"})) == (
        "config.yaml: catalog.plan_code_prefix: environment variable PREFIX is not set; export it"
    )


def test_an_empty_environment_variable_for_a_secret() -> None:
    assert error(config(), env={**ENV, "RECURLY_API_KEY": ""}) == (
        "config.yaml: recurly.api_key: environment variable RECURLY_API_KEY is empty; set it to the value"
    )


@pytest.mark.parametrize("value", ["${1ABC}", "pre-${UNCLOSED", "${}"])
def test_a_malformed_reference(value: str) -> None:
    assert error(config(amplify={"client_id": value})) == (
        "config.yaml: amplify.client_id: contains '${' that does not start a ${NAME} reference "
        "(NAME: letters, digits and _, closed by '}'); write $${ for a literal ${"
    )


def test_secrets_from_files_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "recurly").write_text(RECURLY_KEY + "\n")
    (tmp_path / "secrets" / "recurly").chmod(0o600)  # a key file is private: a readable one is refused
    (tmp_path / "secrets" / "amplify").write_text(CLIENT_SECRET + "\r\n")
    (tmp_path / "secrets" / "amplify").chmod(0o600)  # a key file is private: a readable one is refused
    data = config(
        amplify={"client_secret": ..., "client_secret_file": str(tmp_path / "secrets" / "amplify")},
        recurly={"api_key": ..., "api_key_file": "secrets/recurly"},
    )
    settings = parse(data, env={}, base_dir=tmp_path)
    assert settings.recurly.api_key.reveal() == RECURLY_KEY
    assert settings.amplify.client_secret == Secret(CLIENT_SECRET)


def test_a_file_path_may_use_the_environment(tmp_path: Path) -> None:
    (tmp_path / "recurly").write_text(RECURLY_KEY)
    (tmp_path / "recurly").chmod(0o600)  # a key file is private: a readable one is refused
    data = config(recurly={"api_key": ..., "api_key_file": "${CREDENTIALS_DIRECTORY}/recurly"})
    settings = parse(data, env={**ENV, "CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert settings.recurly.api_key.reveal() == RECURLY_KEY


def test_private_key_file_fills_the_key_and_keeps_the_path(tmp_path: Path) -> None:
    (tmp_path / "key.pem").write_text(PEM)
    (tmp_path / "key.pem").chmod(0o600)  # a key file is private: a readable one is refused
    settings = parse(config(amplify={"client_secret": ..., "private_key_file": "key.pem"}), base_dir=tmp_path)
    assert settings.amplify.private_key_file == tmp_path / "key.pem"
    assert settings.amplify.private_key == Secret(PEM)
    assert settings.amplify.client_secret is None


def test_private_key_as_text() -> None:
    settings = parse(config(amplify={"client_secret": ..., "private_key": "${KEY}"}), env={**ENV, "KEY": PEM})
    assert settings.amplify.private_key == Secret(PEM)
    assert settings.amplify.private_key_file is None


def test_a_missing_secret_file(tmp_path: Path) -> None:
    data = config(recurly={"api_key": ..., "api_key_file": "nope/recurly"})
    assert error(data, base_dir=tmp_path) == (
        f"config.yaml: recurly.api_key_file: cannot read {tmp_path}/nope/recurly: No such file or directory; "
        "check the path (relative paths start at the configuration file's directory) and its permissions"
    )


def test_an_empty_secret_file(tmp_path: Path) -> None:
    (tmp_path / "recurly").write_text("\n")
    data = config(recurly={"api_key": ..., "api_key_file": "recurly"})
    assert error(data, base_dir=tmp_path) == (
        f"config.yaml: recurly.api_key_file: {tmp_path}/recurly is empty; put the api_key in it"
    )


def test_a_private_key_file_that_is_not_a_key(tmp_path: Path) -> None:
    (tmp_path / "key.pem").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    data = config(amplify={"client_secret": ..., "private_key_file": "key.pem"})
    assert error(data, base_dir=tmp_path) == (
        f"config.yaml: amplify.private_key_file: {tmp_path}/key.pem is not a PEM private key "
        "(no '-----BEGIN PRIVATE KEY-----' line); use the private key of the service account's key pair"
    )


def test_a_key_and_its_file_form_together() -> None:
    data = config(recurly={"api_key_file": "/run/secrets/recurly"})
    assert error(data) == (
        "config.yaml: recurly.api_key_file: both recurly.api_key and recurly.api_key_file are set; keep one"
    )


# ---- required keys and credentials -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "key", "message"),
    [
        ("amplify", "tenant_id", "config.yaml: amplify.tenant_id: missing; set it to your Amplify organization id"),
        ("amplify", "client_id", "config.yaml: amplify.client_id: missing; set it to the service account's client id"),
        (
            "recurly",
            "api_key",
            "config.yaml: recurly.api_key: missing; set it to a Recurly private API key, "
            "e.g. ${RECURLY_API_KEY}, or use recurly.api_key_file",
        ),
    ],
)
def test_required_keys(section: str, key: str, message: str) -> None:
    assert error(config(**{section: {key: ...}})) == message


def test_no_amplify_credential() -> None:
    assert error(config(amplify={"client_secret": ...})) == (
        "config.yaml: amplify.client_secret: missing; set amplify.client_secret (or client_secret_file) for a "
        "service account with a client secret, or amplify.private_key_file for one with a key pair"
    )


def test_two_amplify_credentials(tmp_path: Path) -> None:
    (tmp_path / "key.pem").write_text(PEM)
    assert error(config(amplify={"private_key_file": "key.pem"}), base_dir=tmp_path) == (
        "config.yaml: amplify.private_key_file: amplify.client_secret and amplify.private_key_file are both set; "
        "a service account authenticates with one of them: keep the one that matches its type"
    )


# ---- types and ranges ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        (
            {"accounts": {"create_missing": "yes"}},
            "accounts.create_missing: expected true or false, got 'yes'; write true or false without quotes",
        ),
        ({"catalog": {"sync_free_plans": 1}}, "catalog.sync_free_plans: expected true or false, got a number"),
        ({"amplify": {"page_size": 2.5}}, "amplify.page_size: expected a whole number, got 2.5"),
        ({"amplify": {"page_size": "many"}}, "amplify.page_size: expected a whole number, got 'many'"),
        ({"amplify": {"page_size": True}}, "amplify.page_size: expected a whole number, got true/false"),
        (
            {"amplify": {"page_size": 0}},
            "amplify.page_size: must be from 1 to 1000, got 0 (the SDK pages by 100; the server maximum is not documented)",
        ),
        (
            {"amplify": {"page_size": 1001}},
            "amplify.page_size: must be from 1 to 1000, got 1001 (the SDK pages by 100; the server maximum is not documented)",
        ),
        ({"amplify": {"rate_limit_per_minute": 0}}, "amplify.rate_limit_per_minute: must be 1 or more, got 0"),
        ({"amplify": {"timeout_seconds": 0}}, "amplify.timeout_seconds: must be more than 0, got 0"),
        ({"amplify": {"timeout_seconds": float("nan")}}, "amplify.timeout_seconds: expected a finite number"),
        ({"amplify": {"timeout_seconds": "inf"}}, "amplify.timeout_seconds: expected a finite number"),
        ({"amplify": {"timeout_seconds": [1]}}, "amplify.timeout_seconds: expected a number, got a list"),
        ({"recurly": {"timeout_seconds": -1.5}}, "recurly.timeout_seconds: must be more than 0, got -1.5"),
        ({"recurly": {"concurrency": 17}}, "recurly.concurrency: must be from 1 to 16, got 17"),
        ({"recurly": {"max_retries": -1}}, "recurly.max_retries: must be 0 or more, got -1"),
        ({"safety": {"min_destructive_count": -1}}, "safety.min_destructive_count: must be 0 or more, got -1"),
        ({"amplify": {"region": "mars"}}, "amplify.region: expected one of us, eu, ap, eu2, got 'mars'"),
        ({"amplify": {"api_version": "v2"}}, "amplify.api_version: expected one of auto, v1, v1alpha1, got 'v2'"),
        ({"recurly": {"region": "US"}}, "recurly.region: expected one of us, eu, got 'US'"),
        ({"accounts": {"owner": ["org"]}}, "accounts.owner: expected one of marketplace, org, got a list"),
        (
            {"subscriptions": {"collection_method": "invoice"}},
            "subscriptions.collection_method: expected one of automatic, manual, got 'invoice'",
        ),
        (
            {"subscriptions": {"on_cancel": "now"}},
            "subscriptions.on_cancel: expected one of term_end, terminate, got 'now'",
        ),
        ({"usage": {"source": "logs"}}, "usage.source: expected one of traceability, file, got 'logs'"),
        ({"usage": {"window": "weekly"}}, "usage.window: expected one of hourly, daily, got 'weekly'"),
        (
            {"usage": {"settle_delay": "2 hours"}},
            "usage.settle_delay: expected a duration such as 45s, 90m, 2h or 3d, or a whole number of seconds, got '2 hours'",
        ),
        (
            {"usage": {"lookback": 1.5}},
            "usage.lookback: expected a duration such as 45s, 90m, 2h or 3d, or a whole number of seconds, got a number",
        ),
        ({"usage": {"lookback": -60}}, "usage.lookback: must be 0 or more, got -60 seconds"),
        ({"usage": {"settle_delay": -1}}, "usage.settle_delay: must be 0 or more, got -1 seconds"),
        ({"usage": {"max_backfill": "0d"}}, "usage.max_backfill: must be more than 0, got 0 seconds"),
        (
            {"usage": {"statuses": "Success"}},
            "usage.statuses: expected a list of strings, got a string; write it as [Success]",
        ),
        ({"usage": {"statuses": ["Success", ["x"]]}}, "usage.statuses[1]: expected a string, got a list"),
        ({"usage": {"statuses": [""]}}, "usage.statuses[0]: is empty; remove the empty item"),
        (
            {"safety": {"max_destructive_fraction": 1.5}},
            "safety.max_destructive_fraction: expected a fraction from 0 to 1 such as 0.2, or a percentage such as 20%, got 1.5",
        ),
        (
            {"safety": {"max_destructive_fraction": "120%"}},
            "safety.max_destructive_fraction: expected a fraction from 0 to 1 such as 0.2, or a percentage such as 20%, got '120%'",
        ),
        (
            {"safety": {"max_destructive_fraction": "a fifth"}},
            "safety.max_destructive_fraction: expected a fraction from 0 to 1 such as 0.2, or a percentage such as 20%, got 'a fifth'",
        ),
        ({"amplify": {"opt_in_value": 1.5}}, "amplify.opt_in_value: expected a string, got a number"),
        ({"amplify": {"realm": ""}}, "amplify.realm: is empty; give it a value, or remove the key to use the default"),
        (
            {"catalog": {"plan_code_prefix": ""}},
            "catalog.plan_code_prefix: is empty; give it a value, or remove the key to use the default",
        ),
        ({"amplify": {"tenant_id": ""}}, "amplify.tenant_id: is empty; set it to your Amplify organization id"),
        ({"recurly": {"api_key": ""}}, "recurly.api_key: is empty; give it a value"),
        (
            {"catalog": {"plan_code_prefix": "Amplify-"}},
            "catalog.plan_code_prefix: 'Amplify-' must be 1 to 20 characters of a-z, 0-9, _ and - (codes are the prefix + 32 hex, ≤ 50)",
        ),
        (
            {"catalog": {"add_on_code_prefix": "a" * 21}},
            f"catalog.add_on_code_prefix: '{'a' * 21}' must be 1 to 20 characters of a-z, 0-9, _ and - (codes are the prefix + 32 hex, ≤ 50)",
        ),
        (
            {"subscriptions": {"custom_field": "amplify subscription"}},
            "subscriptions.custom_field: 'amplify subscription' must be 1 to 50 characters of letters, digits, _ and - (a Recurly custom field name)",
        ),
        (
            {"subscriptions": {"custom_field": "f" * 51}},
            f"subscriptions.custom_field: '{'f' * 51}' must be 1 to 50 characters of letters, digits, _ and - (a Recurly custom field name)",
        ),
        (
            {"usage": {"source": "file"}},
            "usage.file_path: missing; usage.source is file, so set usage.file_path to a .csv or .jsonl file",
        ),
        (
            {"usage": {"file_path": "rows.csv"}},
            "usage.file_path: is read only when usage.source is file (it is traceability); set usage.source: file, or remove it",
        ),
        ({"recurly": {"api_key": 12345}}, "recurly.api_key: expected a string, got a number; quote it"),
    ],
)
def test_bad_values(sections: dict[str, dict[str, Any]], message: str) -> None:
    assert error(config(**sections)) == f"config.yaml: {message}"


@pytest.mark.parametrize(
    ("key", "url", "problem"),
    [
        (
            "amplify.central_url",
            "http://central.example.com",
            "'http://central.example.com': plain http is allowed only for loopback hosts (127.0.0.0/8, localhost, ::1); use https://",
        ),
        (
            "amplify.auth_url",
            "ftp://login.example.com",
            "'ftp://login.example.com' is not an http(s) URL; use https://host",
        ),
        (
            "amplify.platform_url",
            "platform.example.com",
            "'platform.example.com' is not an http(s) URL; use https://host",
        ),
        (
            "amplify.central_url",
            "https://host:99999",
            "'https://host:99999' has an invalid host or port; use https://host[:port]",
        ),
        ("amplify.central_url", "https://[::1", "'https://[::1' has an invalid host or port; use https://host[:port]"),
        (
            "amplify.central_url",
            f"https://me:{CLIENT_SECRET}@central.example.com",
            "contains credentials (user:password@); remove them, the tool authenticates on its own",
        ),
        ("amplify.central_url", "https://a b", "'https://a b' contains whitespace; remove it"),
        (
            "recurly.api_url",
            "http://10.0.0.1:8080",
            "'http://10.0.0.1:8080': plain http is allowed only for loopback hosts "
            "(127.0.0.0/8, localhost, ::1); use https://",
        ),
        (
            "recurly.api_url",
            "http://127.0.0.1:8080/v3",
            "'http://127.0.0.1:8080/v3': only the scheme, host and port are used; remove the path '/v3'",
        ),
        (
            "recurly.api_url",
            "https://recurly.example.com?x=1",
            "'https://recurly.example.com?x=1': remove the query or fragment",
        ),
    ],
)
def test_bad_urls(key: str, url: str, problem: str) -> None:
    section, name = key.split(".")
    assert error(config(**{section: {name: url}})) == f"config.yaml: {key}: {problem}"


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9000", "http://127.8.0.3", "http://localhost:1234/auth", "http://[::1]:80"]
)
def test_plain_http_to_loopback_is_allowed(url: str) -> None:
    assert parse(config(amplify={"auth_url": url})).amplify.auth_url == url


def test_https_urls_keep_their_path() -> None:
    amplify = parse(config(amplify={"auth_url": "https://login.example.com/auth/"})).amplify
    assert amplify.auth_url == "https://login.example.com/auth/"


# ---- structure ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (config(recurly={"apikey": "x"}), "recurly.apikey: unknown key; did you mean recurly.api_key?"),
        (
            config(amplify={"Client_Secret_File": "x"}),
            "amplify.Client_Secret_File: unknown key; did you mean amplify.client_secret_file?",
        ),
        (config(amplify={"api_key": "x"}), "amplify.api_key: unknown key; did you mean recurly.api_key?"),
        (config(state={"journal": "x"}), "state.journal: unknown key; the keys of state are path, verify_sample"),
        ({**config(), "recurlly": {}}, "recurlly: unknown key; did you mean recurly?"),
        ({**config(), "page_size": 5}, "page_size: unknown key; did you mean amplify.page_size?"),
        (
            {**config(), "logging": {}},
            "logging: unknown section; the sections are amplify, recurly, catalog, accounts, subscriptions, usage, safety, state, billing, security, findings",
        ),
        ({**config(), "usage": ["hourly"]}, "usage: expected a mapping of keys, got a list; indent its keys below it"),
        ({**config(), "safety": "off"}, "safety: expected a mapping of keys, got a string; indent its keys below it"),
        (dict([*config().items(), (1, {})]), "found a key that is a number, not a name; quote it or remove it"),
        (
            {**config(), "catalog": {True: "x"}},
            "catalog: found a key that is true/false, not a name; quote it or remove it",
        ),
        (None, "the configuration is empty; copy config.example.yaml and fill it in"),
        (
            ["amplify"],
            "expected a mapping of sections (amplify, recurly, catalog, accounts, subscriptions, usage, safety, state, billing, security, findings), got a list",
        ),
    ],
)
def test_structure_errors(data: Any, message: str) -> None:
    assert error(data) == f"config.yaml: {message}"


# ---- files --------------------------------------------------------------------------------------------


def test_messages_carry_the_line_of_the_key(tmp_path: Path) -> None:
    text = (
        "amplify:\n"
        "  tenant_id: '1'\n"
        "  client_id: sa_1\n"
        "  client_secret: ${AMPLIFY_CLIENT_SECRET}\n"
        "recurly:\n"
        "  api_key: ${RECURLY_API_KEY}\n"
        "\n"
        "usage:\n"
        "  statuses:\n"
        "    - Success\n"
        "    - 7.5\n"
    )
    path = write(tmp_path, text)
    assert file_error(path) == f"{path}:11: usage.statuses[1]: expected a string, got a number"
    # every problem is reported, not only the first
    assert file_error(path, env={"AMPLIFY_CLIENT_SECRET": "x"}).splitlines() == [
        f"{path}:6: recurly.api_key: environment variable RECURLY_API_KEY is not set; "
        "export it, or use recurly.api_key_file instead",
        f"{path}:11: usage.statuses[1]: expected a string, got a number",
    ]
    valid = text.replace("    - 7.5\n", "")
    path = write(tmp_path, valid.replace("  api_key", "  apikey"))
    # the misspelt key and the key it leaves missing (which has no line of its own: its section's)
    assert file_error(path).splitlines() == [
        f"{path}:5: recurly.api_key: missing; set it to a Recurly private API key, e.g. ${{RECURLY_API_KEY}}, "
        "or use recurly.api_key_file",
        f"{path}:6: recurly.apikey: unknown key; did you mean recurly.api_key?",
    ]
    path = write(tmp_path, valid.replace("  client_id: sa_1\n", ""))
    assert file_error(path) == f"{path}:1: amplify.client_id: missing; set it to the service account's client id"


def test_a_bad_file_reports_every_problem_at_once_sorted_by_line(tmp_path: Path) -> None:
    # three independent mistakes, written out of the sections' declared order: one error names them all
    text = (
        "usage:\n"
        "  window: weekly\n"
        "amplify:\n"
        "  tenant_id: '1'\n"
        "  client_id: sa_1\n"
        "  client_secret: ${AMPLIFY_CLIENT_SECRET}\n"
        "  page_size: many\n"
        "recurly:\n"
        "  api_key: ${RECURLY_API_KEY}\n"
        "  retries: 3\n"
    )
    path = write(tmp_path, text)
    assert file_error(path).splitlines() == [
        f"{path}:2: usage.window: expected one of hourly, daily, got 'weekly'",
        f"{path}:7: amplify.page_size: expected a whole number, got 'many'",
        f"{path}:10: recurly.retries: unknown key; did you mean recurly.max_retries?",
    ]


def test_cross_key_rules_and_duplicates_are_reported_with_the_other_problems(tmp_path: Path) -> None:
    text = (
        "amplify:\n"
        "  tenant_id: '1'\n"
        "  client_id: sa_1\n"
        "  realm: ''\n"
        "recurly:\n"
        "  api_key: ${RECURLY_API_KEY}\n"
        "  concurrency: 2\n"
        "  concurrency: 99\n"
        "usage:\n"
        "  source: file\n"
    )
    path = write(tmp_path, text)
    assert file_error(path).splitlines() == [
        f"{path}:4: amplify.realm: is empty; give it a value, or remove the key to use the default",
        f"{path}:8: recurly.concurrency: duplicate key (first on line 7); keep one",
        f"{path}:8: recurly.concurrency: must be from 1 to 16, got 99",
        f"{path}:9: usage.file_path: missing; usage.source is file, so set usage.file_path to a .csv or .jsonl file",
    ]


def test_every_missing_required_key_is_named() -> None:
    assert error({"recurly": {}}, env={}).splitlines() == [
        "config.yaml: amplify.tenant_id: missing; set it to your Amplify organization id",
        "config.yaml: amplify.client_id: missing; set it to the service account's client id",
        "config.yaml: recurly.api_key: missing; set it to a Recurly private API key, e.g. ${RECURLY_API_KEY}, "
        "or use recurly.api_key_file",
    ]


def test_importing_the_settings_models_loads_no_yaml() -> None:
    # the pure core imports the settings shapes; only reading a file needs a YAML parser
    code = (
        "import sys, pathlib\n"
        "from amplify_billing.settings import AmplifySettings, parse_settings\n"
        f"parse_settings({config()!r}, {ENV!r}, source='config.yaml', base_dir=pathlib.Path('.'))\n"
        "assert 'yaml' not in sys.modules, 'yaml was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_a_yaml_syntax_error_names_line_and_column_and_never_echoes_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, f"recurly:\n  api_key: {RECURLY_KEY}\n   timeout_seconds: 5\n")
    message = file_error(path)
    assert message == f"{path}:3:19: invalid YAML: mapping values are not allowed here; fix the syntax there"
    assert RECURLY_KEY not in message


def test_a_duplicate_key(tmp_path: Path) -> None:
    path = write(tmp_path, "recurly:\n  api_key: a\n  timeout_seconds: 5\n  api_key: b\n")
    # the missing section's keys have no line: they come first
    assert file_error(path).splitlines() == [
        f"{path}: amplify.tenant_id: missing; set it to your Amplify organization id",
        f"{path}: amplify.client_id: missing; set it to the service account's client id",
        f"{path}:4: recurly.api_key: duplicate key (first on line 2); keep one",
    ]


def test_an_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path, "# nothing yet\n")
    assert file_error(path) == f"{path}: the configuration is empty; copy config.example.yaml and fill it in"


def test_an_unprintable_character(tmp_path: Path) -> None:
    path = write(tmp_path, "amplify:\n  realm: a\x00b\n")
    assert file_error(path) == f"{path}:2: invalid YAML: unacceptable character #x0000; remove it"


def test_a_yaml_tag_that_safe_loading_refuses(tmp_path: Path) -> None:
    path = write(tmp_path, "amplify:\n  realm: !!python/object/apply:os.system [echo]\n")
    assert file_error(path) == (
        f"{path}:2:10: invalid YAML: could not determine a constructor for the tag "
        "'tag:yaml.org,2002:python/object/apply:os.system'; fix the syntax there"
    )


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"amplify:\n  realm: \xff\xfe\n")
    assert file_error(path) == f"{path}: not UTF-8 text; save the file as UTF-8"


def test_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "gone.yaml"
    assert file_error(path) == f"{path}: no such file; check the path, or copy config.example.yaml there"


def test_relative_paths_start_at_the_config_directory(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    text = yaml.safe_dump(
        config(usage={"source": "file", "file_path": "usage/rows.csv"}, state={"path": "../var/journal.db"})
    )
    settings = load_settings(write(tmp_path / "conf", text), ENV)
    assert settings.usage.file_path == tmp_path / "conf" / "usage" / "rows.csv"
    assert settings.state.path == tmp_path / "conf" / ".." / "var" / "journal.db"
    assert settings.source == str(tmp_path / "conf" / "config.yaml")


def test_absolute_and_home_paths_are_kept(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert parse(config(state={"path": "/var/lib/ab/journal.db"})).state.path == Path("/var/lib/ab/journal.db")
    assert parse(config(state={"path": "~/journal.db"})).state.path == tmp_path / "journal.db"


def test_the_sandbox_harness_configuration_loads(tmp_path: Path) -> None:
    # the real Sandbox.config()/write_config(), with stand-ins for the emulators (only their URLs are read)
    from amplify_billing.sandbox.harness import CUSTOM_FIELD, SANDBOX_CLIENT_SECRET, SANDBOX_RECURLY_KEY, Sandbox

    amplify, recurly = SimpleNamespace(url="http://127.0.0.1:41001"), SimpleNamespace(url="http://127.0.0.1:41002")
    sandbox = Sandbox(amplify, recurly, clock=lambda: datetime(2025, 1, 1, tzinfo=UTC), state_dir=tmp_path)  # type: ignore[arg-type]
    settings = sandbox.settings(usage={"window": "hourly"}, safety={"max_destructive_fraction": "50%"})

    assert settings.source == str(tmp_path / "config.yaml")
    assert settings.amplify.central_url == "http://127.0.0.1:41001"
    assert settings.amplify.auth_url == "http://127.0.0.1:41001/auth"
    assert settings.amplify.platform_url == "http://127.0.0.1:41001"
    assert settings.amplify.client_secret == Secret(SANDBOX_CLIENT_SECRET)
    assert settings.amplify.page_size == 500
    assert settings.amplify.rate_limit_per_minute == 100000
    assert settings.recurly.api_url == "http://127.0.0.1:41002"
    assert settings.recurly.api_key == Secret(SANDBOX_RECURLY_KEY)
    assert settings.accounts.create_missing is True
    assert settings.subscriptions.custom_field == CUSTOM_FIELD
    assert settings.subscriptions.collection_method == "manual"
    assert settings.usage.window == "hourly"
    assert settings.safety.max_destructive_fraction == Decimal("0.5")
    assert settings.state.path == tmp_path / "amplify-billing.db"


# ---- secrets ------------------------------------------------------------------------------------------


def test_secrets_never_appear_in_repr_or_str(tmp_path: Path) -> None:
    (tmp_path / "key.pem").write_text(PEM)
    (tmp_path / "key.pem").chmod(0o600)  # a key file is private: a readable one is refused
    settings = parse(config())
    keyed = parse(config(amplify={"client_secret": ..., "private_key_file": "key.pem"}), base_dir=tmp_path)
    for text in (repr(settings), str(settings), repr(settings.recurly), str(settings.recurly.api_key), repr(keyed)):
        assert RECURLY_KEY not in text
        assert CLIENT_SECRET not in text
        assert "BEGIN PRIVATE KEY" not in text
    assert "api_key=Secret(<hidden>)" in repr(settings.recurly)
    assert str(settings.amplify.client_secret) == "<hidden>"
    assert settings.recurly.api_key.reveal() == RECURLY_KEY


@pytest.mark.parametrize(
    "sections",
    [
        {"recurly": {"api_key": [RECURLY_KEY]}},
        {"recurly": {"api_key": {RECURLY_KEY: 1}}},
        {"amplify": {"client_secret": ..., "private_key": RECURLY_KEY}},
        {"amplify": {"client_secret": f"{RECURLY_KEY}${{BROKEN"}},
        {"amplify": {"client_secret": f"{RECURLY_KEY}${{UNSET}}"}},
    ],
)
def test_secrets_never_appear_in_errors(sections: dict[str, dict[str, Any]]) -> None:
    message = error(config(**sections))
    assert message.startswith("config.yaml: ")
    assert RECURLY_KEY not in message


def test_a_private_key_given_as_text_that_is_not_one() -> None:
    assert error(config(amplify={"client_secret": ..., "private_key": "not a key"})) == (
        "config.yaml: amplify.private_key: the value (not shown) is not a PEM private key "
        "(no '-----BEGIN PRIVATE KEY-----' line); use the private key of the service account's key pair"
    )


# ---- the example --------------------------------------------------------------------------------------

EXAMPLE_ENV = {
    "AMPLIFY_TENANT_ID": "100000000000001",
    "AMPLIFY_CLIENT_ID": "sa_billing",
    "AMPLIFY_CLIENT_SECRET": CLIENT_SECRET,
    "RECURLY_API_KEY": RECURLY_KEY,
}


def test_the_example_loads_and_holds_exactly_the_defaults() -> None:
    settings = load_settings(EXAMPLE, EXAMPLE_ENV)

    us = REGION_URLS["us"]
    assert settings.amplify == AmplifySettings(
        central_url=us[0],
        platform_url=us[1],
        auth_url=us[2],
        tenant_id="100000000000001",
        client_id="sa_billing",
        client_secret=Secret(CLIENT_SECRET),
    )
    assert settings.recurly == RecurlySettings(api_key=Secret(RECURLY_KEY))
    for name, cls in SECTIONS.items():
        if name in ("amplify", "recurly", "state"):
            continue
        assert getattr(settings, name) == cls(), name
    assert settings.state.path == EXAMPLE.parent / StateSettings().path


def _example_sections() -> dict[str, str]:
    sections: dict[str, str] = {}
    current = ""
    for line in EXAMPLE.read_text().splitlines():
        header = re.fullmatch(r"([a-z_]+):\s*", line)
        if header:
            current = header.group(1)
            sections[current] = ""
        elif current:
            sections[current] += line + "\n"
    return sections


def test_the_example_shows_every_key_in_its_section() -> None:
    sections = _example_sections()
    assert list(sections) == list(SECTIONS)
    extra = {"amplify": ["client_secret_file"], "recurly": ["api_key_file"]}
    for name, cls in SECTIONS.items():
        for key in [*cls.model_fields, *extra.get(name, [])]:
            # a key is shown set, or commented out when it is optional or an alternative
            assert re.search(rf"^  (# )?{key}:", sections[name], re.MULTILINE), f"{name}.{key} is not in the example"


def test_the_example_alternatives_load_when_uncommented(tmp_path: Path) -> None:
    # the commented-out lines are valid values, so uncommenting one never fails on its syntax
    text = EXAMPLE.read_text()
    uncommented = text.replace("  # custom_field:", "  custom_field:").replace("  # api_url:", "  api_url:")
    uncommented = uncommented.replace("  # central_url:", "  central_url:").replace(
        "statuses: []", "statuses: [Success]"
    )
    settings = load_settings(write(tmp_path, uncommented), EXAMPLE_ENV)
    assert settings.subscriptions.custom_field == "amplify_subscription_id"
    assert settings.recurly.api_url == "http://127.0.0.1:8080"
    assert settings.usage.statuses == ("Success",)


# ---- where the file is found --------------------------------------------------------------------------


def test_config_path_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cli = write(tmp_path, "x: 1\n", "cli.yaml")
    from_env = write(tmp_path, "x: 1\n", "env.yaml")
    write(tmp_path, "x: 1\n")
    monkeypatch.chdir(tmp_path)
    env = {"AMPLIFY_BILLING_CONFIG": str(from_env)}
    assert resolve_config_path(cli, env) == cli
    assert resolve_config_path(None, env) == from_env
    assert resolve_config_path(None, {}) == Path("config.yaml")
    assert resolve_config_path(None, {"AMPLIFY_BILLING_CONFIG": ""}) == Path("config.yaml")


def test_config_path_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        resolve_config_path(None, {})
    assert str(info.value) == (
        f"no configuration file: {tmp_path}/config.yaml does not exist and neither --config nor "
        "$AMPLIFY_BILLING_CONFIG is set; copy config.example.yaml to config.yaml and fill it in, or pass --config PATH"
    )
    with pytest.raises(ConfigError) as info:
        resolve_config_path(Path("other.yaml"), {})
    assert str(info.value) == (
        "--config other.yaml: no such file; check the path, or copy config.example.yaml there and fill it in"
    )
    with pytest.raises(ConfigError) as info:
        resolve_config_path(None, {"AMPLIFY_BILLING_CONFIG": "/nowhere/c.yaml"})
    assert str(info.value) == (
        "$AMPLIFY_BILLING_CONFIG=/nowhere/c.yaml: no such file; fix $AMPLIFY_BILLING_CONFIG, or pass --config PATH"
    )
    (tmp_path / "config.yaml").mkdir()
    with pytest.raises(ConfigError) as info:
        resolve_config_path(None, {})
    assert str(info.value) == ("./config.yaml: not a file; replace it with a configuration file, or pass --config PATH")
