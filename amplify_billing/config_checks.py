"""The checks of `config check`: the configuration file is valid and, unless ``--offline``, every credential works.

Loading the settings is the first check (the CLI does it; an invalid file stops there with the error
that names the key, exit 2). Then, without touching the network: the service-account credential can be
used (a key pair loads), the journal can be opened or created, and a usage file is valid. Online, each
credential is proved by the cheapest call that needs it: one token and one filtered product listing on
Amplify, one site listing on Recurly, and the custom field definition when ``subscriptions.custom_field``
is set. Every check runs even when an earlier one failed (the systems are independent), and the report
says what was found: the tenant, the Recurly site, the opted-in products.

Exit code: 0 when nothing failed; otherwise the highest code of the failures (2 a configuration problem,
3 a system unreachable or refusing the credential).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from amplify_billing.collaborators import AmplifyAccess, OpensJournal, RecurlyAccess, Settled
from amplify_billing.errors import AmplifyBillingError, ConfigError, ExitCode
from amplify_billing.settings import Settings
from amplify_billing.usage.sources import FileSource
from amplify_billing.usage.windows import WINDOW_SIZES

# Recurly's CustomFieldDefinition.user_access "applies inside Recurly's admin UI" (Recurly API v2021-02-25,
# CustomFieldDefinition): read_only shows the field to admin users, and only the API edits it. The API, and so
# this tool, can always write the field, whatever its user access.
READ_ONLY_WHY = "user access governs Recurly's admin UI only: admins see the Amplify id, and only the API edits it"

# Opted-in products named in the report; more are counted, not listed.
MAX_NAMED_PRODUCTS = 10


class Checkable(Settled, AmplifyAccess, RecurlyAccess, OpensJournal, Protocol):
    """What the checks use: the settings, both systems' clients and the journal."""


class Level(StrEnum):
    OK = "ok"
    WARN = "warn"  # works, but probably not what was meant
    FAIL = "fail"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Check:
    name: str
    level: Level
    detail: str
    exit_code: int = int(ExitCode.OK)


def _run(name: str, probe: Callable[[], tuple[Level, str]]) -> Check:
    """One check; an expected error becomes a failed check with its message and exit code."""
    try:
        level, detail = probe()
    except AmplifyBillingError as error:
        return Check(name, Level.FAIL, str(error), int(error.exit_code))
    return Check(name, level, detail)


# ---- offline ---------------------------------------------------------------------------------------


def describe_settings(settings: Settings) -> str:
    a, r = settings.amplify, settings.recurly
    credential = "key pair" if a.private_key is not None or a.private_key_file is not None else "client secret"
    recurly_at = r.api_url or f"region {r.region}"
    return (
        f"{settings.source} is valid: Amplify tenant {a.tenant_id} at {a.central_url} (API {a.api_version}), "
        f"service account {a.client_id} with a {credential}; Recurly at {recurly_at}; "
        f"products opted in by attribute {a.opt_in_attribute}={a.opt_in_value}; "
        f"usage from {settings.usage.source} in {settings.usage.window} windows; journal {settings.state.path}"
    )


def _credentials(rt: Checkable) -> tuple[Level, str]:
    # building the clients sends nothing, but loads a key pair and refuses a missing secret
    rt.amplify()
    a = rt.settings.amplify
    if a.private_key is not None or a.private_key_file is not None:
        return Level.OK, f"the private key of service account {a.client_id} loads (RS256 client assertion)"
    return Level.OK, f"a client secret is set for service account {a.client_id}"


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def _journal(rt: Checkable) -> tuple[Level, str]:
    path = rt.settings.state.path
    if path.exists():
        journal = rt.journal()  # opening an existing journal checks that it is one, of a known schema
        runs = journal.recent_runs(1)
        last = f"last run: {runs[0].command} at {runs[0].started_at:%Y-%m-%d %H:%M} UTC" if runs else "no run yet"
        return Level.OK, f"{path} is an amplify-billing journal ({last})"
    # the first real run creates it: the nearest existing directory must let it
    base = _nearest_existing(path.parent)
    if not base.is_dir() or not os.access(base, os.W_OK | os.X_OK):
        raise ConfigError(
            f"state.path {path}: cannot be created, {base} is not a writable directory; "
            "make it writable or point state.path at a writable place"
        )
    return Level.OK, f"{path} does not exist yet; the first run creates it"


def _usage_source(rt: Checkable) -> tuple[Level, str]:
    usage = rt.settings.usage
    if usage.source == "file":
        if usage.file_path is None:
            raise ConfigError(
                f"{rt.settings.source}: usage.source is file but usage.file_path is not set; "
                "set usage.file_path to a .csv or .jsonl file of usage rows"
            )
        # reading it validates every row, exactly as report-usage would before posting anything
        source = FileSource(usage.file_path, WINDOW_SIZES[usage.window])
        return Level.OK, f"usage file {usage.file_path}: {source.rows} valid row(s)"
    statuses = ", ".join(usage.statuses) if usage.statuses else "every status"
    return Level.OK, f"Traceability API transaction counts ({statuses})"


# ---- online ----------------------------------------------------------------------------------------


def _product_names(products: Sequence[dict[str, Any]]) -> str:
    names = sorted(str(p.get("name") or "?") for p in products)
    shown = ", ".join(names[:MAX_NAMED_PRODUCTS])
    return shown + (f" and {len(names) - MAX_NAMED_PRODUCTS} more" if len(names) > MAX_NAMED_PRODUCTS else "")


def _amplify(rt: Checkable) -> tuple[Level, str]:
    a = rt.settings.amplify
    clients = rt.amplify()
    clients.transport.tokens.token()
    # the same filtered listing sync-plans starts with: proves the token is good for this tenant's catalog
    query = f'attributes.{a.opt_in_attribute}=="{a.opt_in_value}"'
    products = clients.resources.list("products", query=query)
    found = f"token issued to {a.client_id}; tenant {a.tenant_id} answered"
    if not products:
        return Level.WARN, (
            f"{found}, but no product has attribute {a.opt_in_attribute}={a.opt_in_value}: nothing would be "
            "billed; set the attribute on the products to bill through Recurly"
        )
    return Level.OK, f"{found}; {len(products)} opted-in product(s): {_product_names(products)}"


def _recurly(rt: Checkable) -> tuple[Level, str]:
    site = rt.recurly().get_site()
    if not site:
        return Level.WARN, "the API key was accepted but lists no site; check that it is a private key of a site"
    mode = site.get("mode") or "?"
    detail = f"site {site.get('subdomain') or '?'} (id {site.get('id') or '?'}, {mode} mode)"
    if mode == "sandbox":
        return Level.OK, detail + "; test gateway, invoices are not charged"
    return Level.OK, detail


def custom_field_check(definitions: Sequence[dict[str, Any]], name: str, source: str) -> tuple[Level, str]:
    """The subscription custom field named ``name`` among Recurly's definitions (pure)."""
    live = [
        d
        for d in definitions
        if d.get("related_type") == "subscription" and not d.get("deleted_at") and str(d.get("name")) == name
    ]
    if not live:
        raise ConfigError(
            f"Recurly has no custom field {name!r} on subscriptions (subscriptions.custom_field in {source}); "
            "Recurly's API cannot create one: in the Recurly admin UI open Configuration > Custom Fields, "
            f"add a field with Object type 'Subscription', Field name (API name) {name!r}, any display name, "
            f"and User access 'Read only' ({READ_ONLY_WHY}); or remove subscriptions.custom_field"
        )
    found = live[0]
    access = found.get("user_access") or "?"
    detail = f"subscription custom field {name} exists (display name {found.get('display_name') or '-'!r}, {access})"
    if access in ("write", "set_only"):
        # the field carries the Amplify id that identifies the subscription; an edit by hand breaks the link
        return Level.WARN, detail + f"; admin users can edit it: set its User access to 'Read only' ({READ_ONLY_WHY})"
    if access == "api_only":
        return Level.OK, detail + "; 'Read only' would also show it to admin users"
    return Level.OK, detail


def _custom_field(rt: Checkable) -> tuple[Level, str]:
    name = rt.settings.subscriptions.custom_field
    assert name is not None
    definitions = rt.recurly().list_custom_field_definitions({"related_type": "subscription"})
    return custom_field_check(definitions, name, rt.settings.source)


# ---- the command -----------------------------------------------------------------------------------


def run_checks(rt: Checkable, *, offline: bool) -> list[Check]:
    settings = rt.settings
    checks = [
        Check("configuration", Level.OK, describe_settings(settings)),
        _run("credentials", lambda: _credentials(rt)),
        _run("journal", lambda: _journal(rt)),
        _run("usage source", lambda: _usage_source(rt)),
    ]
    if offline:
        checks.append(Check("amplify", Level.SKIPPED, "--offline: not contacted"))
        checks.append(Check("recurly", Level.SKIPPED, "--offline: not contacted"))
        return checks
    if checks[1].level is Level.FAIL:
        checks.append(Check("amplify", Level.SKIPPED, "no usable credential (see above)"))
    else:
        checks.append(_run("amplify", lambda: _amplify(rt)))
    recurly = _run("recurly", lambda: _recurly(rt))
    checks.append(recurly)
    if settings.subscriptions.custom_field:
        if recurly.level is Level.FAIL:
            checks.append(Check("custom field", Level.SKIPPED, "Recurly not reachable (see above)"))
        else:
            checks.append(_run("custom field", lambda: _custom_field(rt)))
    return checks


def exit_code_for(checks: Sequence[Check]) -> int:
    return max((c.exit_code for c in checks if c.level is Level.FAIL), default=int(ExitCode.OK))


__all__ = ["Check", "Level", "custom_field_check", "describe_settings", "exit_code_for", "run_checks"]
