"""Listings of both systems, turned into the immutable snapshots the pure reconcilers compare.

Every resource kind is listed (never fetched one by one), at the largest page size, filtered on the
server where the API allows it. ``Snapshots`` memoises each listing for one process, so ``run`` lists
nothing twice; a command that changed something tells it which listing is stale.

Absence proves nothing until the read is proven complete (DESIGN.md §3 Completeness). Each listing says
whether it is (``Completeness``): Amplify's against ``X-Axway-Total-Count``, Recurly's subscriptions against
the total count taken before the walk. The few objects that went missing from a listing are read directly
(memoised too, so ``run`` reads each once).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol
from urllib.parse import quote

from amplify_billing.amplify.parse import (
    ParseProblem,
    parse_plan,
    parse_product,
    parse_quota,
    parse_subscription,
    parse_unit,
    resource_id,
)
from amplify_billing.amplify.resources import ListingProof
from amplify_billing.compact import CompactResource
from amplify_billing.errors import AmplifyBillingError, NotFoundError
from amplify_billing.models import AmplifySubscription, PlanUnit, Product, ProductPlan, Quota, RecurlyPlan
from amplify_billing.reconcile.plans import CatalogSnapshot, RecurlyCatalog
from amplify_billing.recurly.parse import UnreadableRecurlyError, measured_unit_from_recurly, plan_from_recurly
from amplify_billing.settings import Settings

# What `state=live` lists: active, canceled (until term end), future, in trial; NOT paused (reference §9.3)
LISTED_STATES = frozenset({"active", "canceled", "future", "in_trial"})
# The Recurly subscription listing every command reads
LIVE_QUERY = {"state": "live", "sort": "updated_at", "order": "asc"}

# RSQL `=in=` lists are cut to keep the encoded URL well under common 8 KB limits. Cutting by length rather
# than by a count of names fills each query (each one ends with a partial page, so fewer queries, fewer pages).
IN_QUERY_CHARS = 6000
# a quoted, comma-separated name costs its length plus its URL-encoded quotes and comma (%22 %22 %2C)
IN_NAME_OVERHEAD = 9


class ResourceLister(Protocol):
    def listing(
        self, plural: str, *, query: str | None = None, scope: str | None = None, group: str = "catalog"
    ) -> tuple[list[dict[str, Any]], ListingProof]: ...

    def pages(
        self,
        plural: str,
        *,
        query: str | None = None,
        scope: str | None = None,
        group: str = "catalog",
        proof: ListingProof | None = None,
    ) -> Iterator[list[dict[str, Any]]]: ...

    def get(self, plural: str, name: str, *, scope: str | None = None, group: str = "catalog") -> dict[str, Any]: ...


class RecurlyLister(Protocol):
    def list_plans(self, params: dict[str, Any] | None = None) -> list[dict[str, Any]]: ...
    def list_add_ons(self, params: dict[str, Any] | None = None) -> list[dict[str, Any]]: ...
    def list_measured_units(self) -> list[dict[str, Any]]: ...
    def list_subscriptions(self, params: dict[str, Any] | None = None) -> list[dict[str, Any]]: ...
    def count_subscriptions(self, params: dict[str, Any] | None = None) -> int | None: ...
    def get_subscription(self, subscription_id: str) -> dict[str, Any]: ...
    def list_accounts(self, params: dict[str, Any] | None = None) -> list[dict[str, Any]]: ...
    def get_site(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Completeness:
    """Whether a read (one listing, or one per chunk of an ``=in=`` query) is proven complete; if not, why."""

    complete: bool
    why: str = ""

    @staticmethod
    def of(proofs: Iterable[ListingProof]) -> Completeness:
        """Several listings (one per chunk of an ``=in=`` query, or one per kind): complete when each is; else
        what the first kind cut short shows, summed over its chunks."""
        proofs = list(proofs)
        short = next((p for p in proofs if not p.complete), None)
        if short is None:
            return Completeness(True)
        kind = [p for p in proofs if p.plural == short.plural]
        if not all(p.finished and len(set(p.totals)) == 1 and None not in p.totals for p in kind):
            return Completeness(False, f"Amplify {short.describe()}")
        listed, total = sum(p.listed for p in kind), sum(p.total or 0 for p in kind)
        return Completeness(False, f"Amplify listed {listed} of {total} {short.plural} (X-Axway-Total-Count)")


class Missing:
    """A direct read that found nothing (HTTP 404): the object is gone."""


GONE = Missing()
DirectRead = Mapping[str, Any] | Missing | AmplifyBillingError  # found; gone; could not be read


def _chunks(values: Sequence[str], budget: int = IN_QUERY_CHARS) -> Iterator[Sequence[str]]:
    chunk: list[str] = []
    used = 0
    for value in values:
        cost = len(quote(value, safe="")) + IN_NAME_OVERHEAD
        if chunk and used + cost > budget:
            yield chunk
            chunk, used = [], 0
        chunk.append(value)
        used += cost
    if chunk:
        yield chunk


def _in(field_name: str, values: Iterable[str]) -> str:
    quoted = ",".join('"' + v.replace('"', "") + '"' for v in values)
    return f"{field_name}=in=({quoted})"


@dataclass(frozen=True)
class AmplifyCatalog:
    products: tuple[Product, ...]
    snapshot: CatalogSnapshot


@dataclass
class Snapshots:
    """Per-process memo of listings. Clients are passed in; nothing here writes."""

    settings: Settings
    amplify: ResourceLister
    recurly: RecurlyLister
    _cache: dict[str, Any] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    # A fork's own view (``fork``): what planned writes would change, over the shared reads in ``_cache``
    _planned: dict[str, Any] | None = None

    def fork(self) -> Snapshots:
        """A view for planning: it shares every read (a later real pass reads nothing twice), and the planned
        writes recorded on it (``record_*``) stay in the fork (docs/architecture.md, "The whole cycle")."""
        return Snapshots(self.settings, self.amplify, self.recurly, self._cache, self._lock, {})

    def _store(self, name: str, value: Any) -> None:
        (self._planned if self._planned is not None else self._cache)[name] = value

    def record_recurly_subscription(self, data: Mapping[str, Any]) -> None:
        """Keep the memoised subscription listing current with one this run created, cancelled or terminated.

        The write's answer is the subscription as Recurly now holds it, so the next command of the same run
        (report-usage after sync-subscriptions) needs no second listing. Writers may call this from worker
        threads."""
        with self._lock:
            cached = self._lookup("recurly_subscriptions")
            if cached is None:
                return
            uuid = data.get("uuid")
            kept = [s for s in cached if s.get("uuid") != uuid]
            plan_code = str((data.get("plan") or {}).get("code", ""))
            if data.get("state") in LISTED_STATES and plan_code.startswith(self.settings.catalog.plan_code_prefix):
                kept.append(dict(data))
            self._store("recurly_subscriptions", kept)

    def record_recurly_account(
        self, code: str, account_id: str | None, answer: Mapping[str, Any] | None = None
    ) -> None:
        """An account this run created (or plans to): the next phase bills subscriptions to it. ``answer``: the
        account as the create answered it, kept whole as a listing would show it."""
        with self._lock:
            accounts = dict(self.recurly_accounts())
            accounts[code] = {**(answer or {}), "code": code, "id": account_id}
            self._store("recurly_accounts", accounts)

    def record_recurly_plan(self, code: str, change: Callable[[RecurlyPlan | None], RecurlyPlan]) -> None:
        """A plan (with its add-ons) as a planned catalog write leaves it, for the phases after sync-plans."""
        with self._lock:
            catalog = self.recurly_catalog()
            plans = dict(catalog.plans)
            plans[code] = change(plans.get(code))
            self._store("recurly_catalog", replace(catalog, plans=plans))

    def remember(self, key: str, load: Callable[[], Any]) -> Any:
        """A read made once per invocation, whatever the pass (``run`` plans the whole cycle, then applies it
        phase by phase: the second pass reads nothing again). For reads whose answer no write of this run can
        change before it is used again: usage records and counts of settled windows, people and teams."""
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        value = load()
        with self._lock:
            return self._cache.setdefault(key, value)

    def _lookup(self, name: str) -> Any:
        if self._planned is not None and name in self._planned:
            return self._planned[name]
        return self._cache.get(name)

    def _read_once(self, key: str, read: Any) -> DirectRead:
        """A direct read of one object, memoised with its outcome (a failure is not retried within the run)."""
        with self._lock:
            if key in self._cache:
                result: DirectRead = self._cache[key]
                return result
        try:
            found: DirectRead = read()
        except NotFoundError:
            found = GONE
        except AmplifyBillingError as error:
            found = error
        with self._lock:
            self._cache[key] = found
        return found

    def forget(self, *names: str) -> None:
        for name in names:
            self._cache.pop(name, None)
            if self._planned is not None:
                self._planned.pop(name, None)

    def _memo(self, name: str, load: Any) -> Any:
        if self._planned is not None and name in self._planned:
            return self._planned[name]
        if name not in self._cache:
            self._cache[name] = load()
        return self._cache[name]

    # ---- Amplify ---------------------------------------------------------------------------------
    def amplify_catalog(self, product_filter: Sequence[str] = ()) -> AmplifyCatalog:
        key = "amplify_catalog:" + ",".join(sorted(product_filter))
        result: AmplifyCatalog = self._memo(key, lambda: self._load_amplify_catalog(product_filter))
        return result

    def _load_amplify_catalog(self, product_filter: Sequence[str]) -> AmplifyCatalog:
        amplify = self.settings.amplify
        query = f'attributes.{amplify.opt_in_attribute}=="{amplify.opt_in_value}"'
        problems: list[ParseProblem] = []
        products: list[Product] = []
        product_raws, product_proof = self.amplify.listing("products", query=query)
        proofs = [product_proof]
        for raw in product_raws:
            parsed = parse_product(raw)
            if isinstance(parsed, ParseProblem):
                problems.append(parsed)
            elif not product_filter or parsed.name in product_filter:
                products.append(parsed)
        by_name = {p.name: p for p in products}
        plan_raws: list[dict[str, Any]] = []
        for names in _chunks(sorted(by_name)):
            chunk, plan_proof = self.amplify.listing("productplans", query=_in("spec.product", names))
            plan_raws.extend(chunk)
            proofs.append(plan_proof)
        plan_names = sorted({str(r.get("name")) for r in plan_raws})
        quotas_by_plan: dict[str, list[Quota]] = {}
        for names in _chunks(plan_names):
            # scopeResource.name is documented (cli_command_reference.md); metadata.scope.name is not a query field
            quota_raws, quota_proof = self.amplify.listing("quotas", query=_in("scopeResource.name", names))
            proofs.append(quota_proof)
            if not quota_proof.complete:
                # a plan must not be synced (nor its subscriptions billed by it) without every one of its quotas
                for name in names:
                    quotas_by_plan.setdefault(name, []).append(_BROKEN_QUOTA)
            for raw in quota_raws:
                parsed_quota = parse_quota(raw)
                if isinstance(parsed_quota, ParseProblem):
                    scope = raw.get("metadata", {}).get("scope", {}) if isinstance(raw.get("metadata"), dict) else {}
                    plan_name = scope.get("name") if isinstance(scope, dict) else None
                    problems.append(ParseProblem("quota", f"{plan_name}/{parsed_quota.name}", parsed_quota.reason))
                    # a plan with an unreadable quota must not be synced without it
                    quotas_by_plan.setdefault(str(plan_name), []).append(_BROKEN_QUOTA)
                    continue
                quotas_by_plan.setdefault(parsed_quota.plan_name, []).append(parsed_quota)
        units: dict[str, PlanUnit] = {}
        if plan_raws:
            unit_raws, unit_proof = self.amplify.listing("productplanunits")
            proofs.append(unit_proof)
            for raw in unit_raws:
                unit = parse_unit(raw)
                if unit is not None:
                    units[unit.name] = unit
        plans: list[ProductPlan] = []
        for raw in plan_raws:
            product_name = raw.get("spec", {}).get("product") if isinstance(raw.get("spec"), dict) else None
            product = by_name.get(str(product_name))
            if product is None:
                continue
            quotas = quotas_by_plan.get(str(raw.get("name")), [])
            if any(q is _BROKEN_QUOTA for q in quotas):
                problems.append(
                    ParseProblem(
                        "productplan",
                        str(raw.get("name")),
                        "one of its quotas cannot be read (see above)",
                        resource_id(raw),
                    )
                )
                continue
            parsed_plan = parse_plan(raw, product, tuple(sorted(quotas, key=lambda q: q.id)))
            if isinstance(parsed_plan, ParseProblem):
                problems.append(parsed_plan)
            else:
                plans.append(parsed_plan)
        read = Completeness.of(proofs)
        if not read.complete:
            # a listing cut short looks like products, plans or quotas that are gone: they are not (kind "product"
            # keeps sync-plans from deactivating any plan for its absence)
            problems.append(ParseProblem("product", "(catalog listing)", f"{read.why}; absence proves nothing"))
        snapshot = CatalogSnapshot(
            plans=tuple(plans), units=units, problems=tuple(problems), complete=not product_filter and read.complete
        )
        return AmplifyCatalog(tuple(products), snapshot)

    def amplify_subscriptions(self, plan_names: Sequence[str]) -> tuple[list[AmplifySubscription], list[ParseProblem]]:
        subscriptions, problems, _read = self._subscription_listing(plan_names)
        return subscriptions, problems

    def amplify_subscriptions_read(self, plan_names: Sequence[str]) -> Completeness:
        """Whether ``amplify_subscriptions(plan_names)`` is proven complete (X-Axway-Total-Count)."""
        return self._subscription_listing(plan_names)[2]

    def _subscription_listing(
        self, plan_names: Sequence[str]
    ) -> tuple[list[AmplifySubscription], list[ParseProblem], Completeness]:
        key = "amplify_subscriptions:" + ",".join(sorted(plan_names))
        result: tuple[list[AmplifySubscription], list[ParseProblem], Completeness] = self._memo(
            key, lambda: self._load_subscriptions(plan_names)
        )
        return result

    def _load_subscriptions(
        self, plan_names: Sequence[str]
    ) -> tuple[list[AmplifySubscription], list[ParseProblem], Completeness]:
        subscriptions: list[AmplifySubscription] = []
        problems: list[ParseProblem] = []
        proofs: list[ListingProof] = []
        for names in _chunks(sorted(set(plan_names))):
            proof = ListingProof("subscriptions")
            proofs.append(proof)
            # page by page: the parsed subscription keeps its resource as compact JSON (a write-back PUT needs the
            # whole body), so 10,000 decoded resources never sit in memory at once
            for page in self.amplify.pages("subscriptions", query=_in("spec.plan.name", names), proof=proof):
                self._parse_subscriptions(page, subscriptions, problems)
        return subscriptions, problems, Completeness.of(proofs)

    @staticmethod
    def _parse_subscriptions(
        raws: Iterable[Mapping[str, Any]], subscriptions: list[AmplifySubscription], problems: list[ParseProblem]
    ) -> None:
        for raw in raws:
            parsed = parse_subscription(raw)
            if isinstance(parsed, ParseProblem):
                problems.append(parsed)
            else:
                subscriptions.append(replace(parsed, raw=CompactResource.of(raw)))

    def amplify_subscriptions_by_id(
        self, ids: Iterable[str]
    ) -> tuple[dict[str, AmplifySubscription], list[ParseProblem]]:
        """The subscriptions with these metadata ids that Amplify still has, whatever their plan or product: one
        listing per chunk of ids. Only what it finds counts (an id it does not return is read by name, see
        ``amplify_subscription``): an empty answer would also come from a lost permission."""
        wanted = sorted(set(ids))
        found: dict[str, AmplifySubscription] = {}
        problems: list[ParseProblem] = []
        missing = [i for i in wanted if "amplify_subscription_id:" + i not in self._cache]
        for names in _chunks(missing):
            listed: list[AmplifySubscription] = []
            raws, _proof = self.amplify.listing("subscriptions", query=_in("metadata.id", names))
            self._parse_subscriptions(raws, listed, problems)
            with self._lock:
                for name in names:
                    self._cache["amplify_subscription_id:" + name] = None
                for subscription in listed:
                    self._cache["amplify_subscription_id:" + subscription.id] = subscription
        with self._lock:
            for i in wanted:
                hit = self._cache.get("amplify_subscription_id:" + i)
                if hit is not None:
                    found[i] = hit
        return found, problems

    def amplify_subscription(self, name: str) -> DirectRead:
        """GET one subscription by name: its resource, GONE on 404, or the error that kept it from being read."""
        return self._read_once("amplify_subscription:" + name, lambda: self.amplify.get("subscriptions", name))

    # ---- Recurly ---------------------------------------------------------------------------------
    def recurly_subscriptions(self) -> list[dict[str, Any]]:
        """Every Recurly subscription `state=live` lists (active, canceled until term end, future, in trial; not
        paused, reference §9.3) on one of our plans."""
        prefix = self.settings.catalog.plan_code_prefix

        def load() -> list[dict[str, Any]]:
            # the total first: a record that joins during the walk only makes the walk longer, never short
            total = self.recurly.count_subscriptions(dict(LIVE_QUERY))
            listed = self.recurly.list_subscriptions(dict(LIVE_QUERY))
            walked = len({str(s.get("uuid")) for s in listed})
            if total is None:
                read = Completeness(False, f"Recurly listed {walked} live subscriptions but gave no total to check")
            elif walked < total:
                why = f"Recurly listed {walked} of {total} live subscriptions (Recurly-Total-Records)"
                read = Completeness(False, why)
            else:
                read = Completeness(True)
            self._cache["recurly_subscriptions_read"] = read
            return [s for s in listed if str((s.get("plan") or {}).get("code", "")).startswith(prefix)]

        result: list[dict[str, Any]] = self._memo("recurly_subscriptions", load)
        return result

    def recurly_subscriptions_read(self) -> Completeness:
        """Whether ``recurly_subscriptions()`` is proven complete by the total count taken before its walk."""
        self.recurly_subscriptions()
        read: Completeness = self._cache["recurly_subscriptions_read"]
        return read

    def recurly_subscription(self, uuid: str) -> DirectRead:
        """GET one subscription by uuid, whatever its state: its data, GONE on 404, or the error."""
        return self._read_once("recurly_subscription:" + uuid, lambda: self.recurly.get_subscription(f"uuid-{uuid}"))

    def recurly_accounts(self) -> dict[str, dict[str, Any]]:
        def load() -> dict[str, dict[str, Any]]:
            return {
                str(a.get("code")): a
                for a in self.recurly.list_accounts({"sort": "updated_at", "order": "asc"})
                if str(a.get("code", "")).startswith("amplify-")
            }

        result: dict[str, dict[str, Any]] = self._memo("recurly_accounts", load)
        return result

    def recurly_catalog(self) -> RecurlyCatalog:
        result: RecurlyCatalog = self._memo("recurly_catalog", self._load_recurly_catalog)
        return result

    def _load_recurly_catalog(self) -> RecurlyCatalog:
        prefix = self.settings.catalog.plan_code_prefix
        units = [measured_unit_from_recurly(u) for u in self.recurly.list_measured_units()]
        unit_names = {str(u.id): u.name for u in units if u.id}
        plans_raw = [
            p
            for p in self.recurly.list_plans({"sort": "updated_at", "order": "asc"})
            if str(p.get("code", "")).startswith(prefix)
        ]
        plan_ids = {str(p.get("id")) for p in plans_raw}
        add_ons_by_plan: dict[str, list[dict[str, Any]]] = {}
        if plans_raw:
            for add_on in self.recurly.list_add_ons({"sort": "updated_at", "order": "asc"}):
                plan_id = str(add_on.get("plan_id"))
                if plan_id in plan_ids:
                    add_ons_by_plan.setdefault(plan_id, []).append(add_on)
        plans: dict[str, RecurlyPlan] = {}
        unreadable: dict[str, str] = {}
        for p in plans_raw:
            try:
                plans[str(p.get("code"))] = plan_from_recurly(p, add_ons_by_plan.get(str(p.get("id")), []), unit_names)
            except UnreadableRecurlyError as error:
                # kept out of the comparison: read as 0 (or an open tier) it would be "updated" from a misreading
                unreadable[str(p.get("code"))] = str(error)
        live = Counter(
            str((s.get("plan") or {}).get("code"))
            for s in self.recurly_subscriptions()
            if s.get("state") in ("active", "canceled", "future", "paused")
        )
        # a free plan may name no currency (it then takes the site's): read the site only when free plans are synced
        site = self.recurly.get_site() if self.settings.catalog.sync_free_plans else {}
        default_currency = (site.get("settings") or {}).get("default_currency")
        return RecurlyCatalog(
            plans=plans,
            measured_units={u.name: u for u in units},
            live_subscriptions_by_plan=dict(live),
            unparsed=unreadable,
            default_currency=str(default_currency).upper() if default_currency else None,
        )


# Marker for a quota that failed to parse: keeps its plan out of the sync.
_BROKEN_QUOTA: Any = object()
