"""The settings: frozen pydantic models every other module relies on.

A field's ``Annotated`` metadata says how a configuration file may write it and which rule it must meet
(``values``). Rules across keys of one section (one Amplify credential; a usage file only with
``usage.source: file``) run when the values come from a file, so settings built in code, as tests do, are
taken as given. Importing this module loads no YAML: only reading a file does (``loader``).
"""

from __future__ import annotations

import shlex
import stat
from collections.abc import Mapping
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ModelWrapValidatorHandler, ValidationInfo, model_validator

from amplify_billing.settings.billing import BillingSettings
from amplify_billing.settings.rules import (
    CodePrefix,
    CustomFieldName,
    Longer,
    Positive,
    ZeroOrLonger,
    between,
    http_url,
)
from amplify_billing.settings.secret import Secret
from amplify_billing.settings.values import (
    Day,
    Duration,
    FilePath,
    Flag,
    Fraction,
    ListItem,
    Number,
    Problem,
    TextList,
    Whole,
    expand,
    file_context,
    one_of,
    secret,
    secret_files,
    text,
)

AmplifyRegion = Literal["us", "eu", "ap", "eu2"]
AmplifyApiVersion = Literal["auto", "v1", "v1alpha1"]
RecurlyRegion = Literal["us", "eu"]
AccountOwner = Literal["marketplace", "org"]
CollectionMethod = Literal["automatic", "manual"]
OnCancel = Literal["term_end", "terminate"]
UsageSource = Literal["traceability", "file"]
UsageWindow = Literal["hourly", "daily"]
BeforeBillingStart = Literal["bill", "report"]
FindingKind = Literal["finding", "unsupported", "waiting", "orphan"]

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
# Filled from amplify.region when not given, in the order of REGION_URLS' tuples.
REGION_FILLED = ("central_url", "platform_url", "auth_url")

# What to do about a required key that is missing (or empty), by dotted key.
REQUIRED_HINTS: Mapping[str, str] = {
    "amplify.tenant_id": "set it to your Amplify organization id",
    "amplify.client_id": "set it to the service account's client id",
    "recurly.api_key": "set it to a Recurly private API key, e.g. ${RECURLY_API_KEY}, or use recurly.api_key_file",
}

# Per section: each secret field and the key that reads it from a file instead.
SECRET_FILES: Mapping[str, Mapping[str, str]] = {
    "amplify": {"client_secret": "client_secret_file", "private_key": "private_key_file"},
    "recurly": {"api_key": "api_key_file"},
}

# A URL the tool calls; Amplify's keep their path (the auth URL has one).
AmplifyUrl = Annotated[str, text(), http_url(path_allowed=True)]


class _Frozen(BaseModel):
    # frozen: validated once, then passed around and shared without copies; forbid: a misspelt key is an
    # error with a suggestion, never silently ignored
    model_config = ConfigDict(frozen=True, extra="forbid")


_CLIENT_SECRET = secret("amplify", "client_secret", file_key="client_secret_file")
_PRIVATE_KEY = secret("amplify", "private_key", file_key="private_key_file", pem=True)
_PAGE_SIZE = between(1, 1000, "the SDK pages by 100; the server maximum is not documented")
# Timeouts bound each wait for bytes; a deadline and a size bound one whole answer (http_limits.py).
_RESPONSE_SIZE = between(4096, None, "an error answer alone may take a few kilobytes")


class AmplifySettings(_Frozen):
    central_url: AmplifyUrl
    auth_url: AmplifyUrl
    platform_url: AmplifyUrl
    tenant_id: Annotated[str, text(empty=REQUIRED_HINTS["amplify.tenant_id"])]
    client_id: Annotated[str, text(empty=REQUIRED_HINTS["amplify.client_id"])]
    client_secret: Annotated[Secret | None, _CLIENT_SECRET] = None
    private_key_file: Annotated[Path | None, FilePath] = None
    # the private key's PEM text, read from private_key_file at load time
    private_key: Annotated[Secret | None, _PRIVATE_KEY] = None
    region: Annotated[AmplifyRegion, one_of(AmplifyRegion)] = "us"
    # auto: each catalog kind at the version the tenant serves it (v1, else v1alpha1), probed once per run
    api_version: Annotated[AmplifyApiVersion, one_of(AmplifyApiVersion)] = "auto"
    page_size: Annotated[int, Whole, _PAGE_SIZE] = 100
    rate_limit_per_minute: Annotated[int, Whole, between(1, None)] = 25
    timeout_seconds: Annotated[float, Number, Positive] = 30.0
    connect_timeout_seconds: Annotated[float, Number, Positive] = 10.0
    deadline_seconds: Annotated[float, Number, Positive] = 120.0
    max_response_bytes: Annotated[int, Whole, _RESPONSE_SIZE] = 64 * 1024 * 1024
    opt_in_attribute: Annotated[str, text()] = "billingSystem"
    opt_in_value: Annotated[str, text()] = "recurly"
    realm: Annotated[str, text()] = "Broker"

    @model_validator(mode="wrap")
    @classmethod
    def _from_file(
        cls, data: Any, handler: ModelWrapValidatorHandler[AmplifySettings], info: ValidationInfo
    ) -> AmplifySettings:
        if not isinstance(data, Mapping):
            return handler(data)
        context = file_context(info)
        values = _with_region_urls(data, context)
        if context is not None:
            values = secret_files(values, SECRET_FILES["amplify"], cls.model_fields)
        settings = handler(values)
        if context is not None:
            _one_credential(settings, data)
        return settings


def _with_region_urls(data: Mapping[str, Any], context: Any) -> dict[str, Any]:
    # an explicit URL wins over the region, one by one
    try:
        region = expand(data["region"], context) if isinstance(data.get("region"), str) else data.get("region", "us")
    except Problem:
        region = "us"  # the region's own validator reports the reference; fill anyway, so no URL is "missing"
    urls = REGION_URLS.get(region, REGION_URLS["us"]) if isinstance(region, str) else REGION_URLS["us"]
    values = dict(data)
    for name, url in zip(REGION_FILLED, urls, strict=True):
        if values.get(name) is None:
            values[name] = url
    return values


def _one_credential(settings: AmplifySettings, data: Mapping[str, Any]) -> None:
    if settings.client_secret is not None and settings.private_key is not None:
        one = "client_secret_file" if data.get("client_secret_file") is not None else "client_secret"
        other = "private_key_file" if data.get("private_key_file") is not None else "private_key"
        raise Problem(
            f"amplify.{one} and amplify.{other} are both set; a service account authenticates with one of them: "
            "keep the one that matches its type",
            at=other,
        ).for_pydantic()
    if settings.client_secret is None and settings.private_key is None:
        raise Problem(
            "missing; set amplify.client_secret (or client_secret_file) for a service account with a client "
            "secret, or amplify.private_key_file for one with a key pair",
            at="client_secret",
        ).for_pydantic()


class RecurlySettings(_Frozen):
    api_key: Annotated[Secret, secret("recurly", "api_key", file_key="api_key_file")]
    region: Annotated[RecurlyRegion, one_of(RecurlyRegion)] = "us"
    # None means the public endpoint of ``region``; http://127.0.0.1:PORT for the sandbox and tests.
    # The gateway points the client's connection at a host and port: a path would be ignored.
    api_url: Annotated[str | None, text(), http_url(path_allowed=False)] = None
    timeout_seconds: Annotated[float, Number, Positive] = 30.0
    connect_timeout_seconds: Annotated[float, Number, Positive] = 10.0
    deadline_seconds: Annotated[float, Number, Positive] = 120.0
    max_response_bytes: Annotated[int, Whole, _RESPONSE_SIZE] = 64 * 1024 * 1024
    max_retries: Annotated[int, Whole, between(0, None)] = 5
    concurrency: Annotated[int, Whole, between(1, 16)] = 4

    @model_validator(mode="wrap")
    @classmethod
    def _from_file(
        cls, data: Any, handler: ModelWrapValidatorHandler[RecurlySettings], info: ValidationInfo
    ) -> RecurlySettings:
        if isinstance(data, Mapping) and file_context(info) is not None:
            data = secret_files(data, SECRET_FILES["recurly"], cls.model_fields)
        return handler(data)


class CatalogSettings(_Frozen):
    plan_code_prefix: Annotated[str, text(), CodePrefix] = "amplify-"
    add_on_code_prefix: Annotated[str, text(), CodePrefix] = "amplify-"
    sync_free_plans: Annotated[bool, Flag] = False
    plan_link_attribute: Annotated[str, text()] = "recurlyPlanCode"
    quota_link_attribute: Annotated[str, text()] = "recurlyAddOnCode"


class AccountSettings(_Frozen):
    # "marketplace": amplify-user-{guid} when the marketplace owner is a user, else amplify-team-{guid};
    # "org": amplify-org-{org id}
    owner: Annotated[AccountOwner, one_of(AccountOwner)] = "marketplace"
    create_missing: Annotated[bool, Flag] = False
    link_attribute: Annotated[str, text()] = "recurlyAccountCode"


class SubscriptionSettings(_Frozen):
    custom_field: Annotated[str | None, text(), CustomFieldName] = None
    collection_method: Annotated[CollectionMethod, one_of(CollectionMethod)] = "automatic"
    approve_pending: Annotated[bool, Flag] = True
    on_cancel: Annotated[OnCancel, one_of(OnCancel)] = "term_end"
    link_attribute: Annotated[str, text()] = "recurlySubscriptionUuid"
    account_link_attribute: Annotated[str, text()] = "recurlyAccountCode"


class UsageSettings(_Frozen):
    source: Annotated[UsageSource, one_of(UsageSource)] = "traceability"
    file_path: Annotated[Path | None, FilePath] = None
    window: Annotated[UsageWindow, one_of(UsageWindow)] = "daily"
    settle_delay: Annotated[timedelta, Duration, ZeroOrLonger] = timedelta(hours=2)
    lookback: Annotated[timedelta, Duration, ZeroOrLonger] = timedelta(hours=72)
    skip_zero: Annotated[bool, Flag] = True
    # transaction statuses to count (empty: all), e.g. ["Success"]
    statuses: Annotated[tuple[Annotated[str, ListItem], ...], TextList] = ()
    # How far back usage is counted at all (a first run, a backfill). None: the source's retention (Traceability
    # keeps transactions 7 days; a file has no retention). A window older than this is a finding, never skipped.
    max_backfill: Annotated[timedelta | None, Duration, Longer] = None
    # Traceability keeps "Transactions data: 7 Days" with no archival (reference §9.1): a window that starts
    # earlier can no longer be counted, only reported as uncountable.
    retention: Annotated[timedelta, Duration, Longer] = timedelta(days=7)
    # Explicit Lexus group_by limit: the 0.2 schema defaults to 100 terms and says nothing when it cuts.
    group_limit: Annotated[int, Whole, between(2, 65536, "Lexus cuts a grouping at this many terms")] = 1000
    # Traffic from before the Recurly subscription started (approved before the first run, cron down): bill it,
    # dated at that start, or report it as a finding with its units.
    before_billing_start: Annotated[BeforeBillingStart, one_of(BeforeBillingStart)] = "bill"
    # A re-count lower than what was posted is a finding unless this is true (a lost row must not refund usage).
    allow_downward_restatement: Annotated[bool, Flag] = False

    @model_validator(mode="after")
    def _file_only_with_file_source(self, info: ValidationInfo) -> UsageSettings:
        # code may build a file source without a path (a test of the source's own error); a file may not
        if file_context(info) is None:
            return self
        if self.source == "file" and self.file_path is None:
            raise Problem(
                "missing; usage.source is file, so set usage.file_path to a .csv or .jsonl file", at="file_path"
            ).for_pydantic()
        if self.source != "file" and self.file_path is not None:
            raise Problem(
                f"is read only when usage.source is file (it is {self.source}); set usage.source: file, or remove it",
                at="file_path",
            ).for_pydantic()
        return self


class SafetySettings(_Frozen):
    max_destructive_fraction: Annotated[Decimal, Fraction] = Decimal("0.20")
    min_destructive_count: Annotated[int, Whole, between(0, None)] = 5


class StateSettings(_Frozen):
    # validate_default: the default path, like an explicit one, starts at the configuration file's directory
    path: Annotated[Path, FilePath] = Field(default=Path("./state/amplify-billing.db"), validate_default=True)
    # pairs whose newest Recurly usage every run compares with the journal (a restored or second journal is stale)
    verify_sample: Annotated[int, Whole, between(0, 1000)] = 5


class SecuritySettings(_Frozen):
    # A key file (a ``*_file`` secret) readable or writable by group or others is refused unless this is true: for
    # mounts whose modes the operator does not control (Kubernetes mounts a secret 0644 by default).
    allow_readable_key_files: Annotated[bool, Flag] = False


# The mode bits of a key file that let another user read or change the credential.
OPEN_TO_OTHERS = 0o077


def key_file_problem(secret: Secret | None, key: str) -> str | None:
    """Why the file ``secret`` was read from may not hold a credential (its mode), or None."""
    path = secret.file if secret is not None else None
    if path is None:
        return None
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None  # it was read a moment ago; a file gone since is not this rule's to report
    if not mode & OPEN_TO_OTHERS:
        return None
    return (
        f"{path} is readable or writable by group or others (mode {mode:04o}) and holds a credential; run "
        f"`chmod 600 {shlex.quote(str(path))}`, or set security.allow_readable_key_files: true where the mode is "
        "not yours to set (a Kubernetes secret is mounted 0644 by default)"
    )


class Acknowledgement(_Frozen):
    """A finding the operator accepts (``acknowledge.py``): by kind and id, with a reason, until ``expires``."""

    kind: Annotated[FindingKind, one_of(FindingKind)]
    id: Annotated[str, text(empty="set it to the finding's id, as the report shows it after its kind")]
    reason: Annotated[str, text(empty="say why the finding is accepted (the report shows it)")]
    # the last day it holds; from the day after, the finding counts again
    expires: Annotated[date | None, Day] = None


class FindingsSettings(_Frozen):
    acknowledge: tuple[Acknowledgement, ...] = ()


class Settings(_Frozen):
    amplify: AmplifySettings
    recurly: RecurlySettings
    catalog: CatalogSettings = Field(default_factory=CatalogSettings)
    accounts: AccountSettings = Field(default_factory=AccountSettings)
    subscriptions: SubscriptionSettings = Field(default_factory=SubscriptionSettings)
    usage: UsageSettings = Field(default_factory=UsageSettings)
    safety: SafetySettings = Field(default_factory=SafetySettings)
    state: StateSettings = Field(default_factory=StateSettings)
    billing: BillingSettings = Field(default_factory=BillingSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    findings: FindingsSettings = Field(default_factory=FindingsSettings)
    # where the settings came from, for messages
    source: str = "<defaults>"

    @model_validator(mode="after")
    def _private_key_files(self, info: ValidationInfo) -> Settings:
        if file_context(info) is None or self.security.allow_readable_key_files:
            return self
        for section, files in SECRET_FILES.items():
            for name, file_key in files.items():
                key = f"{section}.{file_key}"
                problem = key_file_problem(getattr(getattr(self, section), name), key)
                if problem is not None:
                    raise Problem(problem, at=key).for_pydantic()
        return self


# The sections of a configuration file, in the order the example shows them.
SECTIONS: Mapping[str, type[BaseModel]] = {
    name: field.annotation
    for name, field in Settings.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
}


def section_keys(section: str) -> list[str]:
    """The keys a file may set in ``section``: its fields, then the file keys of its secrets."""
    names = list(SECTIONS[section].model_fields)
    return names + [key for key in SECRET_FILES.get(section, {}).values() if key not in names]
