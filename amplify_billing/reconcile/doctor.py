"""doctor: what works on this tenant and this Recurly site, and what needs action, from what was read. Pure.

``gather/doctor.py`` reads (and writes nothing); this module turns the reads into checks, each ok / action needed /
unknown with its evidence and what to do, plus the literal census (``doctor_census``), the plan mapping preview
(``doctor_preview``) and the sampling verdict (``doctor_sampling``). The report is ready (exit 0) unless a check
needs action (exit 4).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from amplify_billing.reconcile.billing_modes import MarketplaceBilling
from amplify_billing.reconcile.doctor_billing import billing_mode_check
from amplify_billing.reconcile.doctor_census import census, census_check
from amplify_billing.reconcile.doctor_checks import Check, DoctorReport, Verdict
from amplify_billing.reconcile.doctor_preview import catalog_from_raw, decide, plan_label, preview, preview_check
from amplify_billing.reconcile.doctor_sampling import InvoicedUnits, JournalCounts, sampling_check
from amplify_billing.reconcile.doctor_usage import UsageEvidence, usage_checks
from amplify_billing.reconcile.plan_inputs import PlanSyncOptions
from amplify_billing.reconcile.plan_mapping import MappingOptions
from amplify_billing.settings.billing import BillingSettings

Raw = Mapping[str, Any]

# The role each read needs, named in the finding when it is refused.
ROLES: Mapping[str, str] = {
    # an admin sees every object; a team-role account only its teams' (docs api_server.md, "Ownership and sharing")
    "catalog": "the Engage (Central) Admin role",
    # the Platform team listing of the org (docs platform-auth-examples.md; Platform API /api/v1/team)
    "teams": "the organization's Administrator role on the Amplify Platform",
    # users and orgs of consumer organizations (Platform API /api/v1/user, /api/v1/org)
    "consumers": "read access to consumer organizations (the provider organization's Administrator role); "
    "with accounts.create_missing false the tool needs none",
    # "Only users with the Central Admin role can query" (docs query-the-traceability-apis-with-lexus.md)
    "traceability": "the Engage (Central) Admin role, which the Traceability API requires",
}
AREA_TITLES = {
    "catalog": "catalog",
    "teams": "Platform teams",
    "consumers": "consumer users and orgs",
    "traceability": "Traceability",
}


@dataclass(frozen=True)
class Probe:
    """One read that proves access: what it read, or why it failed (``ok`` None: not tried)."""

    area: str  # token | catalog | teams | consumers | traceability
    ok: bool | None
    detail: str
    status: int | None = None


@dataclass(frozen=True)
class KindVersion:
    """Which catalog version served a kind, or why none did."""

    plural: str
    version: str | None
    how: str
    error: str = ""
    status: int | None = None


@dataclass(frozen=True)
class RecurlyEvidence:
    site: Mapping[str, Any] | None
    error: str = ""
    measured_units: tuple[str, ...] = ()
    custom_field: tuple[str, str] | None = None  # (ok | warn | fail, what the check found), when one is configured


@dataclass(frozen=True)
class DoctorInputs:
    tenant_id: str
    client_id: str
    pinned_version: str | None  # amplify.api_version when not auto
    token: Probe
    probes: tuple[Probe, ...]
    versions: tuple[KindVersion, ...]
    products: tuple[Raw, ...]
    plans: tuple[Raw, ...]
    quotas: tuple[Raw, ...]
    units: tuple[Raw, ...]
    subscriptions: tuple[Raw, ...]
    catalog_error: str  # "" when the catalog was read
    usage: UsageEvidence
    invoiced: tuple[InvoicedUnits, ...] | None
    journal: JournalCounts | None
    sampling_why: str
    recurly: RecurlyEvidence
    options: PlanSyncOptions
    mapping: MappingOptions
    now: datetime
    requests: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    # who bills each Marketplace: the settings, and Amplify's Marketplaces (None: not read, ``marketplaces_why``)
    billing: BillingSettings = field(default_factory=BillingSettings)
    marketplaces: MarketplaceBilling | None = None
    marketplaces_why: str = "no token"


def credential_checks(inputs: DoctorInputs) -> list[Check]:
    token = inputs.token
    if not token.ok:
        return [
            Check(
                "credentials",
                "token",
                Verdict.ACTION,
                token.detail,
                "fix amplify.client_id and its secret or key (config check proves them)",
            )
        ]
    checks = [
        Check(
            "credentials",
            "token",
            Verdict.OK,
            f"token issued to {inputs.client_id}; tenant {inputs.tenant_id} ({token.detail})",
        )
    ]
    for probe in inputs.probes:
        title = AREA_TITLES.get(probe.area, probe.area)
        if probe.ok is None:
            checks.append(Check("credentials", title, Verdict.UNKNOWN, probe.detail))
        elif probe.ok:
            checks.append(Check("credentials", title, Verdict.OK, probe.detail))
        elif probe.status in (401, 403):
            checks.append(
                Check(
                    "credentials",
                    title,
                    Verdict.ACTION,
                    f"refused: {probe.detail}",
                    f"give the service account {ROLES[probe.area]}",
                )
            )
        else:
            checks.append(Check("credentials", title, Verdict.ACTION, probe.detail, "see the error; then run again"))
    return checks


def version_checks(inputs: DoctorInputs) -> list[Check]:
    checks = []
    for kind in inputs.versions:
        if kind.version is not None:
            checks.append(Check("api version", kind.plural, Verdict.OK, f"catalog/{kind.version} ({kind.how})"))
        elif kind.error and inputs.pinned_version and kind.status == 404:
            checks.append(
                Check(
                    "api version",
                    kind.plural,
                    Verdict.ACTION,
                    f"catalog/{inputs.pinned_version}/{kind.plural} answered 404: the tenant does not serve it there",
                    "set amplify.api_version: auto (each kind at the version the tenant serves)",
                )
            )
        elif kind.error:
            checks.append(Check("api version", kind.plural, Verdict.ACTION, kind.error, "see the error; run again"))
        else:
            checks.append(Check("api version", kind.plural, Verdict.UNKNOWN, kind.how))
    return checks


def recurly_checks(inputs: DoctorInputs, currencies: Mapping[str, Sequence[str]], units: Sequence[str]) -> list[Check]:
    """The site and its mode, the plans' currencies against the site's, the measured units, the custom field.

    ``currencies``: each currency of the plans that would sync, with those plans; ``units``: their measured units."""
    recurly = inputs.recurly
    if recurly.site is None:
        return [Check("recurly", "site", Verdict.ACTION, recurly.error, "check recurly.api_key and recurly.api_url")]
    site = recurly.site
    mode = str(site.get("mode") or "?")
    charged = "test gateway, invoices are not charged" if mode == "sandbox" else "invoices are charged"
    name = site.get("subdomain") or "?"
    checks = [Check("recurly", "site", Verdict.OK, f"site {name} (id {site.get('id') or '?'}), {mode} mode: {charged}")]
    settings = site.get("settings") if isinstance(site.get("settings"), Mapping) else {}
    accepted = sorted(str(c) for c in (settings or {}).get("accepted_currencies") or ())
    refused = {c: plans for c, plans in sorted(currencies.items()) if c not in accepted}
    if not accepted:
        checks.append(Check("recurly", "currencies", Verdict.UNKNOWN, f"site {name} lists no accepted currencies"))
    elif refused:
        listed = "; ".join(f"{c} ({', '.join(plans[:3])})" for c, plans in refused.items())
        checks.append(
            Check(
                "recurly",
                "currencies",
                Verdict.ACTION,
                f"plans bill in currencies site {name} does not accept ({', '.join(accepted)}): {listed}",
                "add the currencies to the site in Recurly (Configuration > Site Settings), or change "
                "the plans' currency in Amplify",
            )
        )
    else:
        used = ", ".join(sorted(currencies)) or "none yet"
        checks.append(
            Check(
                "recurly", "currencies", Verdict.OK, f"plans bill in {used}; site {name} accepts {', '.join(accepted)}"
            )
        )
    missing = sorted(set(units) - set(recurly.measured_units))
    present = sorted(set(units) & set(recurly.measured_units))
    found = f"measured unit(s) {', '.join(present)} exist" if present else "no measured unit exists yet"
    checks.append(
        Check(
            "recurly",
            "measured units",
            Verdict.OK,
            found + (f"; sync-plans creates {', '.join(missing)}" if missing else ""),
        )
    )
    if recurly.custom_field is not None:
        level, detail = recurly.custom_field
        verdict = Verdict.ACTION if level == "fail" else Verdict.OK
        checks.append(
            Check(
                "recurly",
                "custom field",
                verdict,
                detail,
                "create the field as the message says, or remove subscriptions.custom_field"
                if verdict is Verdict.ACTION
                else "",
            )
        )
    return checks


def build_doctor(inputs: DoctorInputs) -> DoctorReport:
    checks = credential_checks(inputs) + version_checks(inputs)
    rows = census(inputs.plans, inputs.quotas, inputs.subscriptions)
    catalog = catalog_from_raw(inputs.products, inputs.plans, inputs.quotas, inputs.units)
    preview_rows = preview(catalog, inputs.options, inputs.mapping)
    if inputs.catalog_error:
        checks.append(
            Check("census", "literals", Verdict.UNKNOWN, f"the catalog could not be read: {inputs.catalog_error}")
        )
        checks.append(Check("plans", "mapping preview", Verdict.UNKNOWN, "the catalog could not be read"))
    else:
        checks.append(census_check(rows))
        checks.append(preview_check(preview_rows, len(inputs.products)))
    checks += usage_checks(inputs.usage)
    if inputs.usage.source == "traceability":
        checks.append(
            sampling_check(
                inputs.invoiced,
                inputs.journal,
                now=inputs.now,
                retention=inputs.usage.retention,
                why_none=inputs.sampling_why,
            )
        )
    currencies: dict[str, list[str]] = {}
    units: set[str] = set()
    for plan in catalog.plans:
        wanted = decide(plan, catalog, inputs.options, inputs.mapping)[2]
        if wanted is not None:
            currencies.setdefault(wanted.currency, []).append(plan_label(plan))
            units |= {a.measured_unit_name for a in wanted.add_ons}
    checks += recurly_checks(inputs, currencies, sorted(units))
    checks.append(billing_mode_check(inputs.billing, inputs.marketplaces, inputs.marketplaces_why, inputs.now))
    return DoctorReport(tuple(checks), tuple(rows), tuple(preview_rows), inputs.requests)


__all__ = [
    "DoctorInputs",
    "InvoicedUnits",
    "JournalCounts",
    "KindVersion",
    "Probe",
    "RecurlyEvidence",
    "UsageEvidence",
    "build_doctor",
]
