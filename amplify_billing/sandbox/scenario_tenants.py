"""Tenant variants of the sandbox: the same scenario on an Amplify that differs the way a real tenant may.

``amplify-billing sandbox --tenant NAME`` serves one, for trying ``doctor`` (and the rest) by hand; the doctor's
end-to-end tests use the same variants. Every variant keeps the defaults, which already hold the documented facts
(reference §9): Traceability keeps 7 days, a grouping returns 100 terms unless told otherwise, a free plan has no
``spec.billing``, a Custom plan exists, and a few subscriptions are in transitional states.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from amplify_billing.sandbox.amplify_catalog import SERVED_IN_2024
from amplify_billing.sandbox.amplify_emulator import AmplifyEmulator
from amplify_billing.sandbox.scenario import Scenario

# The largest sampling percentage an agent allows (agent-sdk pkg/traceability/sampling/definitions.go: at most 10).
SAMPLED_RATE = 0.10
# What the emulator answers where the service account has no role (reference §5.1: Traceability needs the Engage
# (Central) Admin role; §6.1: consumer orgs' users may be out of a provider's reach).
NO_TRACEABILITY_ROLE = "the service account has no Engage Admin role: the Traceability API is refused"
NO_CONSUMER_ACCESS = "the service account may not read users and orgs of consumer organizations"
# Values the tool does not know, put on an otherwise supported tenant by the "odd-values" variant.
UNKNOWN_SUBSCRIPTION_STATE = "suspended"
UNKNOWN_PRICING_TYPE = "stairstep"


@dataclass(frozen=True)
class Tenant:
    name: str
    description: str
    # before the scenario is seeded (a sampling rate must be set before any traffic arrives)
    before: Callable[[AmplifyEmulator], None] = field(default=lambda amplify: None)
    # after it is seeded
    after: Callable[[AmplifyEmulator, Scenario], None] = field(default=lambda amplify, scenario: None)


def _v1alpha1(amplify: AmplifyEmulator) -> None:
    amplify.serve_versions(SERVED_IN_2024)


def _sampled(amplify: AmplifyEmulator) -> None:
    amplify.sample_summaries(SAMPLED_RATE)


def _restricted(amplify: AmplifyEmulator) -> None:
    amplify.forbidden["traceability"] = NO_TRACEABILITY_ROLE
    amplify.forbidden["consumers"] = NO_CONSUMER_ACCESS


def _odd_values(amplify: AmplifyEmulator, scenario: Scenario) -> None:
    """One live subscription in a state the tool does not know, one pending one whose approval is in error, and a
    quota of a supported plan with a pricing type the tool does not know."""
    live = [n for n in scenario.live_subscriptions if n not in scenario.pending_subscriptions]
    amplify.set_subscription_state(live[0], UNKNOWN_SUBSCRIPTION_STATE, reason="Suspended by the provider")
    if scenario.pending_subscriptions:
        errored = amplify.resource("Subscription", scenario.pending_subscriptions[0])
        amplify.put_resource({**errored, "approval": {"state": "error", "reason": "Approval webhook failed"}})
    quota = next(q for q in scenario.quotas if q["metadata"]["scope"]["name"] == "weather-volume")
    stored = amplify.resource("Quota", quota["name"], scope="weather-volume")
    amplify.put_resource({**stored, "spec": {**stored["spec"], "pricing": {"type": UNKNOWN_PRICING_TYPE}}})


TENANTS: dict[str, Tenant] = {
    tenant.name: tenant
    for tenant in (
        Tenant(
            "default",
            "every documented fact on (7-day retention, 100 terms per grouping, free plan without "
            "billing, a Custom plan, transitional states)",
        ),
        Tenant(
            "v1alpha1",
            "the 2024 server: plans, plan units, subscriptions and invoices only as catalog/v1alpha1",
            before=_v1alpha1,
        ),
        Tenant(
            "sampled",
            f"Traceability keeps a summary of {SAMPLED_RATE:.0%} of transactions (agent sampling); "
            "the unsampled leave no trace",
            before=_sampled,
        ),
        Tenant(
            "restricted",
            "a service account without the role for Traceability and for consumers' users and orgs",
            before=_restricted,
        ),
        Tenant(
            "odd-values",
            "values the tool does not know: a subscription state, a quota pricing type, and an approval in error",
            after=_odd_values,
        ),
    )
}


def tenant_named(name: str) -> Tenant:
    tenant = TENANTS.get(name)
    if tenant is None:
        raise KeyError(f"unknown tenant {name!r}; choose one of {', '.join(TENANTS)}")
    return tenant


def seed_tenant(amplify: AmplifyEmulator, scenario: Scenario, name: str = "default") -> Tenant:
    """Seed ``scenario`` into ``amplify`` as the tenant variant ``name``."""
    tenant = tenant_named(name)
    tenant.before(amplify)
    scenario.seed_amplify(amplify)
    tenant.after(amplify, scenario)
    return tenant
