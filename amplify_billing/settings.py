"""Settings: YAML + environment -> frozen, validated dataclasses.

The shapes below are the contract every other module relies on. ``load_settings`` turns a YAML
file into them; every error it raises is a ``ConfigError`` naming the file and the dotted key.
Secrets are ``Secret`` values whose ``repr``/``str`` never show the value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Literal


class Secret:
    """A credential. Only ``reveal()`` gives the value; ``repr``/``str`` print ``<hidden>``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(<hidden>)"

    def __str__(self) -> str:
        return "<hidden>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


AmplifyRegion = Literal["us", "eu", "ap", "eu2"]

# Regional endpoints (reference/amplify-api.md §1.5): central, platform, auth.
REGION_URLS: Mapping[str, tuple[str, str, str]] = {
    "us": ("https://apicentral.axway.com", "https://platform.axway.com", "https://login.axway.com/auth"),
    "eu": ("https://central.eu-fr.axway.com", "https://platform.axway.com", "https://login.axway.com/auth"),
    "ap": ("https://central.ap-sg.axway.com", "https://platform.axway.com", "https://login.axway.com/auth"),
    "eu2": (
        "https://engage.eu-fr.axway.com",
        "https://platform.eu-fr.axway.com",
        "https://login.eu-fr.axway.com/auth",
    ),
}


@dataclass(frozen=True)
class AmplifySettings:
    central_url: str
    auth_url: str
    platform_url: str
    tenant_id: str
    client_id: str
    client_secret: Secret | None = None
    private_key_file: Path | None = None
    # the private key's PEM text, read from private_key_file at load time
    private_key: Secret | None = None
    region: AmplifyRegion = "us"
    api_version: Literal["v1", "v1alpha1"] = "v1"
    page_size: int = 100
    rate_limit_per_minute: int = 25
    timeout_seconds: float = 30.0
    opt_in_attribute: str = "billingSystem"
    opt_in_value: str = "recurly"
    realm: str = "Broker"


@dataclass(frozen=True)
class RecurlySettings:
    api_key: Secret
    region: Literal["us", "eu"] = "us"
    # None means the public endpoint of ``region``; http://127.0.0.1:PORT for the sandbox and tests
    api_url: str | None = None
    timeout_seconds: float = 30.0
    max_retries: int = 5
    concurrency: int = 4


@dataclass(frozen=True)
class CatalogSettings:
    plan_code_prefix: str = "amplify-"
    add_on_code_prefix: str = "amplify-"
    sync_free_plans: bool = False
    plan_link_attribute: str = "recurlyPlanCode"
    quota_link_attribute: str = "recurlyAddOnCode"


@dataclass(frozen=True)
class AccountSettings:
    # "marketplace": amplify-user-{guid} when the marketplace owner is a user, else amplify-team-{guid};
    # "org": amplify-org-{org id}
    owner: Literal["marketplace", "org"] = "marketplace"
    create_missing: bool = False
    link_attribute: str = "recurlyAccountCode"


@dataclass(frozen=True)
class SubscriptionSettings:
    custom_field: str | None = None
    collection_method: Literal["automatic", "manual"] = "automatic"
    approve_pending: bool = True
    on_cancel: Literal["term_end", "terminate"] = "term_end"
    link_attribute: str = "recurlySubscriptionUuid"
    account_link_attribute: str = "recurlyAccountCode"


@dataclass(frozen=True)
class UsageSettings:
    source: Literal["traceability", "file"] = "traceability"
    file_path: Path | None = None
    window: Literal["hourly", "daily"] = "daily"
    settle_delay: timedelta = timedelta(hours=2)
    lookback: timedelta = timedelta(hours=72)
    skip_zero: bool = True
    # transaction statuses to count (empty: all), e.g. ["Success"]
    statuses: tuple[str, ...] = ()
    # how far back a first run looks for usage when nothing is journaled yet
    max_backfill: timedelta = timedelta(days=35)


@dataclass(frozen=True)
class SafetySettings:
    max_destructive_fraction: Decimal = Decimal("0.20")
    min_destructive_count: int = 5


@dataclass(frozen=True)
class StateSettings:
    path: Path = Path("./state/amplify-billing.db")


@dataclass(frozen=True)
class Settings:
    amplify: AmplifySettings
    recurly: RecurlySettings
    catalog: CatalogSettings = field(default_factory=CatalogSettings)
    accounts: AccountSettings = field(default_factory=AccountSettings)
    subscriptions: SubscriptionSettings = field(default_factory=SubscriptionSettings)
    usage: UsageSettings = field(default_factory=UsageSettings)
    safety: SafetySettings = field(default_factory=SafetySettings)
    state: StateSettings = field(default_factory=StateSettings)
    # where the settings came from, for messages
    source: str = "<defaults>"


def load_settings(path: Path, env: Mapping[str, str]) -> Settings:
    """Read and validate ``path``; ``env`` supplies ``${NAME}`` values. Raises ``ConfigError``."""
    raise NotImplementedError
