"""doctor's reads: both systems as they are, for ``reconcile/doctor.py`` to judge. Nothing here writes.

Amplify is asked, within ``amplify.rate_limit_per_minute`` (a progress line says when the limit makes it wait):
one token; the opted-in products, their plans, quotas, plan units and subscriptions, each kind's first listing also
its API version probe (``amplify.api_version: auto``); the newest page of SubscriptionInvoices; the Marketplaces
(who bills each); a team, a user and an org of one subscription's owner; and three Traceability searches (grouped
count, total, oldest). Recurly: the site, the measured units, and the custom field definitions when one is
configured. The journal is read only if it exists.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from rich.console import Console

from amplify_billing.amplify.parse import parse_subscription
from amplify_billing.amplify.resources import ResourceClient
from amplify_billing.collaborators import Clocked, RecurlyAccess
from amplify_billing.config_checks import custom_field_check
from amplify_billing.errors import AmplifyBillingError, ConfigError, UpstreamError
from amplify_billing.gather.doctor_usage import (
    AmplifyReads,
    InvoiceReader,
    JournalReads,
    invoiced_units,
    journal_counts,
    newest_invoices,
    traceability_evidence,
)
from amplify_billing.gather.marketplaces import read_marketplaces
from amplify_billing.gather.options import plan_sync_options
from amplify_billing.models import AmplifySubscription
from amplify_billing.reconcile.doctor import DoctorInputs, KindVersion, Probe, RecurlyEvidence
from amplify_billing.reconcile.doctor_sampling import InvoicedUnits, JournalCounts
from amplify_billing.reconcile.doctor_usage import UsageEvidence
from amplify_billing.snapshots import _chunks, _in

Raw = dict[str, Any]


class DoctorReads(AmplifyReads, JournalReads, RecurlyAccess, Clocked, Protocol):
    """What doctor reads: both systems and the journal, read-only; its progress lines go to ``err_console``, and
    its report counts the requests made (``api_calls``)."""

    @property
    def err_console(self) -> Console: ...
    def api_calls(self) -> dict[str, dict[str, int]]: ...


KINDS = ("products", "productplans", "quotas", "productplanunits", "subscriptions", "subscriptioninvoices")


def _status(error: AmplifyBillingError) -> int | None:
    return error.status if isinstance(error, UpstreamError) else None


class _Catalog:
    """The raw listings, kind by kind; a kind that fails is remembered with its error and the rest go on."""

    def __init__(self, resources: ResourceClient) -> None:
        self.resources = resources
        self.items: dict[str, list[Raw]] = {kind: [] for kind in KINDS}
        self.errors: dict[str, AmplifyBillingError] = {}

    def read(self, plural: str, load: Callable[[], list[Raw]]) -> list[Raw]:
        try:
            self.items[plural] = load()
        except AmplifyBillingError as error:
            self.errors[plural] = error
        return self.items[plural]

    def filtered(self, plural: str, field: str, names: Sequence[str]) -> list[Raw]:
        """One listing per chunk of ``field=in=(names)``; with no names, a one-item page proves the version."""
        if not names:
            return self.read(plural, lambda: self._probe_only(plural))
        return self.read(
            plural,
            lambda: [
                i for chunk in _chunks(sorted(names)) for i in self.resources.list(plural, query=_in(field, chunk))
            ],
        )

    def _probe_only(self, plural: str) -> list[Raw]:
        self.resources.api_version(plural)  # one GET of a one-item page (auto), or none (a pinned version)
        return []

    def versions(self, pinned: str | None) -> tuple[KindVersion, ...]:
        chosen = self.resources.versions.choices()
        found = []
        for plural in KINDS:
            error = self.errors.get(plural)
            if error is not None:
                found.append(KindVersion(plural, None, "", str(error), _status(error)))
            elif plural in chosen:
                found.append(KindVersion(plural, chosen[plural].version, chosen[plural].how))
            elif pinned is not None:
                found.append(KindVersion(plural, pinned, "configured amplify.api_version; it answered"))
            else:
                found.append(KindVersion(plural, None, "not read"))
        return tuple(found)


def _read_catalog(rt: AmplifyReads, invoices: InvoiceReader) -> _Catalog:
    amplify = rt.settings.amplify
    catalog = _Catalog(rt.amplify().resources)
    query = f'attributes.{amplify.opt_in_attribute}=="{amplify.opt_in_value}"'
    products = catalog.read("products", lambda: catalog.resources.list("products", query=query))
    plans = catalog.filtered("productplans", "spec.product", [str(p.get("name")) for p in products])
    plan_names = [str(p.get("name")) for p in plans]
    catalog.filtered("quotas", "scopeResource.name", plan_names)
    catalog.read("productplanunits", lambda: catalog.resources.list("productplanunits"))
    catalog.filtered("subscriptions", "spec.plan.name", plan_names)
    catalog.read("subscriptioninvoices", lambda: invoices(catalog.resources))
    return catalog


def _probe(area: str, read: Callable[[], str]) -> Probe:
    try:
        return Probe(area, True, read())
    except AmplifyBillingError as error:
        return Probe(area, False, str(error), _status(error))


def _owner_probes(rt: AmplifyReads, subscriptions: Sequence[Raw]) -> tuple[Probe, Probe]:
    """A team, and a user and an org, of one subscription's owner: what link-accounts reads for an account."""
    owners = [s for s in map(parse_subscription, subscriptions) if isinstance(s, AmplifySubscription)]
    owner = next((s for s in owners if s.owner_team), None)
    if owner is None:
        why = "no subscription with an owner team to read"
        return Probe("teams", None, why), Probe("consumers", None, why)
    platform = rt.amplify().platform
    team: dict[str, Any] = {}

    def read_team() -> str:
        team.update(platform.get_team(str(owner.owner_team)))
        return f"read team {team.get('name') or owner.owner_team} of subscription {owner.name}"

    def read_consumer() -> str:
        members = [m.get("guid") for m in team.get("users") or () if isinstance(m, Mapping) and m.get("type") == "user"]
        person = owner.owner_user or next((str(g) for g in members if g), None)
        read = []
        if person:
            user = platform.get_user(person)
            read.append(f"user {user.get('email') or person}")
        if owner.owner_org:
            org = platform.get_org(owner.owner_org)
            read.append(f"org {org.get('name') or owner.owner_org}")
        return "read " + " and ".join(read) if read else "the owner names no user or org to read"

    return _probe("teams", read_team), _probe("consumers", read_consumer)


def _recurly(rt: DoctorReads) -> RecurlyEvidence:
    try:
        gateway = rt.recurly()
        site = gateway.get_site()
        units = tuple(sorted(str(u.get("name")) for u in gateway.list_measured_units()))
    except AmplifyBillingError as error:
        return RecurlyEvidence(None, str(error))
    name = rt.settings.subscriptions.custom_field
    field: tuple[str, str] | None = None
    if name:
        try:
            definitions = gateway.list_custom_field_definitions({"related_type": "subscription"})
            level, detail = custom_field_check(definitions, name, rt.settings.source)
            field = (level.value, detail)
        except (ConfigError, AmplifyBillingError) as error:
            field = ("fail", str(error))
    return RecurlyEvidence(site or None, "" if site else "the API key lists no site", units, field)


def _announce_waits(rt: DoctorReads) -> None:
    """A progress line whenever the rate limit makes a request wait (doctor stays within it)."""
    transport = rt.amplify().transport
    per_minute = rt.settings.amplify.rate_limit_per_minute

    def waiting(seconds: float) -> None:
        rt.err_console.print(
            f"Waiting {seconds:.0f} s for Amplify's rate limit ({per_minute} requests a minute); "
            f"{transport.calls} request(s) sent so far",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )

    transport.on_wait = waiting


def _traceability_probe(usage: UsageEvidence, token: bool) -> Probe:
    if not token:
        return Probe("traceability", None, "no token")
    if usage.error:
        return Probe("traceability", False, usage.error, usage.status)
    return Probe("traceability", True, f"counted the last settled window: {usage.total} transaction(s)")


def _sampling_inputs(
    rt: DoctorReads, items: Mapping[str, list[Raw]], invoice_error: AmplifyBillingError | None
) -> tuple[tuple[InvoicedUnits, ...] | None, JournalCounts | None, str]:
    """The invoices' metered units and the journal's counts for the sampling verdict, and why they are missing."""
    journal, why = journal_counts(rt)
    if invoice_error is not None:
        return None, journal, f"the SubscriptionInvoices could not be read: {invoice_error}"
    invoiced = tuple(invoiced_units(items["subscriptioninvoices"], items["subscriptions"], items["quotas"]))
    if not invoiced:
        why = (
            "no SubscriptionInvoice holds metered units (Amplify makes them only where the Marketplace bills "
            "with vendor Custom, for consumer organizations)"
        )
    return invoiced, journal, why


def gather_doctor(rt: DoctorReads, *, invoices: InvoiceReader = newest_invoices) -> DoctorInputs:
    settings = rt.settings
    now = rt.clock()
    pinned = None if settings.amplify.api_version == "auto" else settings.amplify.api_version
    _announce_waits(rt)
    token = _probe("token", lambda: (rt.amplify().transport.tokens.token(), "the token endpoint answered")[1])
    items: dict[str, list[Raw]] = {kind: [] for kind in KINDS}
    versions: tuple[KindVersion, ...] = ()
    catalog_error, invoice_error = "no token", None
    probes = [Probe(area, None, "no token") for area in ("catalog", "teams", "consumers")]
    marketplaces = None
    if token.ok:
        marketplaces = read_marketplaces(rt.amplify().resources)
        catalog = _read_catalog(rt, invoices)
        failed = catalog.errors.get("products")
        listed = f"listed {len(catalog.items['products'])} opted-in product(s)"
        probes = [Probe("catalog", False, str(failed), _status(failed)) if failed else Probe("catalog", True, listed)]
        probes += _owner_probes(rt, catalog.items["subscriptions"])
        items, versions = catalog.items, catalog.versions(pinned)
        catalog_error = "; ".join(f"{k}: {e}" for k, e in catalog.errors.items() if k != "subscriptioninvoices")
        invoice_error = catalog.errors.get("subscriptioninvoices")
    if token.ok or settings.usage.source == "file":
        usage = traceability_evidence(rt, now)
    else:
        usage = UsageEvidence("traceability", settings.usage.retention, error="no token", now=now)
    if settings.usage.source == "traceability":
        probes.append(_traceability_probe(usage, bool(token.ok)))
    recurly = _recurly(rt)
    invoiced, journal, why = _sampling_inputs(rt, items, invoice_error)
    options = plan_sync_options(settings)
    site_settings = (recurly.site or {}).get("settings") or {}
    default = site_settings.get("default_currency") if settings.catalog.sync_free_plans else None
    mapping = replace(options.mapping, default_currency=str(default).upper()) if default else options.mapping
    return DoctorInputs(
        tenant_id=settings.amplify.tenant_id,
        client_id=settings.amplify.client_id,
        pinned_version=pinned,
        token=token,
        probes=tuple(probes),
        versions=versions,
        products=tuple(items["products"]),
        plans=tuple(items["productplans"]),
        quotas=tuple(items["quotas"]),
        units=tuple(items["productplanunits"]),
        subscriptions=tuple(items["subscriptions"]),
        catalog_error=catalog_error,
        usage=usage,
        invoiced=invoiced,
        journal=journal,
        sampling_why=why,
        recurly=recurly,
        options=options,
        mapping=mapping,
        now=now,
        billing=settings.billing,
        marketplaces=marketplaces,
        requests=rt.api_calls(),
    )
