"""sync-invoices' plan with plain values: each Amplify invoice's decision, the money check, the state mapping."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from amplify_billing.amplify import invoices as amp
from amplify_billing.amplify.invoices import SubscriptionInvoice, parse_invoice
from amplify_billing.amplify.parse import ParseProblem
from amplify_billing.changes import ChangeKind
from amplify_billing.invoice_actions import (
    CreateInvoicePurchase,
    MarkInvoiceFailed,
    RecurlyInvoice,
    ResolveInvoiceIntent,
    SetInvoiceState,
    SetInvoiceStatus,
    WriteInvoicePayment,
)
from amplify_billing.reconcile.invoice_lines import minor_units, po_number, purchase_of
from amplify_billing.reconcile.invoice_states import RECURLY_TO_AMPLIFY
from amplify_billing.reconcile.invoices import (
    InvoiceAccount,
    InvoiceInputs,
    InvoicePlanOptions,
    diff_invoices,
    refusal_changes,
)
from amplify_billing.settings.secret import Secret

INVOICE_ID = "8ac98ee28ea29652018eaee2253601ac"
TEAM = "cd824ab7-af8d-4933-83f8-450662cca4d4"
ACCOUNT = f"amplify-team-{TEAM}"
MARKET = "8275212a-fb48-4b55-9305-473fbd507817"
LINK = Secret("https://sandbox.recurly.com/account/tok3n0123456789")


def raw_invoice(**changes: Any) -> dict[str, Any]:
    """An invoice shaped as the custom billing guide's sample, with a consumption period and one quota."""
    raw: dict[str, Any] = {
        "kind": "SubscriptionInvoice",
        "name": "inv-1",
        "title": "Period 2026-11",
        "metadata": {
            "id": INVOICE_ID,
            "scope": {"kind": "Subscription", "name": "demo-custom-flow"},
            "selfLink": "/catalog/v1/subscriptions/demo-custom-flow/subscriptioninvoices/inv-1",
            "references": [{"kind": "ProductPlan", "name": "gold"}, {"kind": "Marketplace", "name": MARKET}],
        },
        "marketplace": {
            "name": MARKET,
            "resource": {"owner": {"id": TEAM, "type": "team", "organization": {"id": "419190740785802"}}},
        },
        "spec": {
            "cost": {
                "plan": {
                    "name": "gold",
                    "cost": 20,
                    "currency": "USD",
                    "setup": {"cost": 100},
                    "quotas": [
                        {
                            "name": "calls",
                            "cost": 12.35,
                            "items": [
                                {
                                    "title": "Calls",
                                    "units": 4940,
                                    "itemCost": 0.0025,
                                    "from": "2026-11-01T00:00:00.000+0000",
                                    "to": "2026-12-01T00:00:00.000+0000",
                                }
                            ],
                        }
                    ],
                },
                "total": 132.35,
            },
            "period": {"from": "2026-11-01T00:00:00.000+0000", "to": "2026-12-01T00:00:00.000+0000"},
            "quotas": [
                {
                    "name": "calls",
                    "units": 4940,
                    "intervals": [
                        {"from": "2026-11-01T00:00:00.000+0000", "units": 3000},
                        {"from": "2026-11-16T00:00:00.000+0000", "units": 1940},
                    ],
                }
            ],
        },
        "billing": {"payment": {"type": "custom"}},
        "state": {"name": "draft"},
        "status": {"level": "Pending"},
    }
    for path, value in changes.items():
        node = raw
        *parents, last = path.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        if value is ...:
            node.pop(last, None)
        else:
            node[last] = value
    return raw


def invoice(**changes: Any) -> SubscriptionInvoice:
    parsed = parse_invoice(raw_invoice(**changes))
    assert isinstance(parsed, SubscriptionInvoice), parsed
    return parsed


def recurly(state: str = "pending", **changes: Any) -> RecurlyInvoice:
    values: dict[str, Any] = {
        "id": "e28zov4fw0v2",
        "number": "1001",
        "state": state,
        "account_code": ACCOUNT,
        "currency": "USD",
        "subtotal": Decimal("132.35"),
        "total": Decimal("132.35"),
        "po_number": po_number(INVOICE_ID),
        "created_at": datetime(2026, 12, 1, 2, tzinfo=UTC),
        "due_at": datetime(2026, 12, 2, 2, tzinfo=UTC),
    }
    values.update(changes)
    return RecurlyInvoice(**values)


def inputs(*invoices: SubscriptionInvoice, card: bool = True, **more: Any) -> InvoiceInputs:
    accounts = {ACCOUNT: InvoiceAccount(ACCOUNT, has_card=card, link=LINK)}
    return InvoiceInputs(invoices=invoices, **{"accounts": accounts, **more})


OPTIONS = InvoicePlanOptions(collection_method="automatic", invoiced=lambda name: name == MARKET)


def plan(given: InvoiceInputs, options: InvoicePlanOptions = OPTIONS) -> list[tuple[str, str, Any]]:
    return [(c.kind.value, c.object, c.action) for c in diff_invoices(given, options).changes]


def findings(given: InvoiceInputs, options: InvoicePlanOptions = OPTIONS) -> list[str]:
    return [c.summary for c in diff_invoices(given, options).changes if c.kind is ChangeKind.FINDING]


# ---- the reader ----------------------------------------------------------------------------------------------


def test_the_reader_keeps_units_per_quota_per_interval_and_exact_money() -> None:
    parsed = invoice()

    assert parsed.units() == {"calls": 4940}
    assert [(i.start, i.units) for i in parsed.quotas[0].intervals] == [
        (datetime(2026, 11, 1, tzinfo=UTC), 3000),
        (datetime(2026, 11, 16, tzinfo=UTC), 1940),
    ]
    assert (parsed.total, parsed.plan_cost, parsed.setup_cost) == (Decimal("132.35"), Decimal(20), Decimal(100))
    assert parsed.quota_costs[0].items[0].item_cost == Decimal("0.0025")
    assert (parsed.owner_team, parsed.marketplace_name, parsed.plan_name) == (TEAM, MARKET, "gold")


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"spec__cost__total": "a lot"}, "spec.cost.total must be a number, got 'a lot'"),
        ({"spec__cost__total": -1}, "spec.cost.total must be a number of 0 or more, got -1"),
        ({"metadata__id": ...}, "metadata.id is missing"),
        ({"spec__quotas": [{"name": "calls", "units": 1.5}]}, "units must be a whole number of 0 or more, got 1.5"),
        ({"spec__period__from": "last Tuesday"}, "spec.period.from is not a timestamp: 'last Tuesday'"),
    ],
)
def test_a_malformed_invoice_is_a_problem_never_a_guess(changes: dict[str, Any], reason: str) -> None:
    parsed = parse_invoice(raw_invoice(**changes))

    assert isinstance(parsed, ParseProblem)
    assert parsed.reason == reason


# ---- the purchase: one per invoice, exact ------------------------------------------------------------------------


def test_a_draft_becomes_one_purchase_then_its_payment_then_state_open() -> None:
    changes = diff_invoices(inputs(invoice()), OPTIONS).changes

    assert [(c.object, type(c.action).__name__) for c in changes] == [
        ("invoice", "CreateInvoicePurchase"),
        ("invoice_payment", "WriteInvoicePayment"),
        ("invoice_state", "SetInvoiceState"),
    ]
    create, payment, state = (c.action for c in changes)
    assert isinstance(create, CreateInvoicePurchase) and isinstance(payment, WriteInvoicePayment)
    assert create.po_number == f"amplify-inv-{INVOICE_ID}" and len(create.po_number) <= 50
    po = create.po_number
    assert [(line.product_code, line.unit_amount) for line in create.lines] == [
        (f"{po}-base", Decimal(20)),
        (f"{po}-setup", Decimal(100)),
        (f"{po}-q1", Decimal("12.35")),
    ]
    assert all(len(line.product_code) <= 50 for line in create.lines)
    assert "4,940 units" in create.lines[2].description
    assert (create.account_code, create.currency, create.collection_method) == (ACCOUNT, "USD", "automatic")
    # the payment names the create's result, and the state waits for the payment
    assert changes[1].requires == (changes[0].key,) and changes[2].requires == (changes[0].key, changes[1].key)
    assert isinstance(state, SetInvoiceState) and state.name == "open"
    assert "tok3n" not in repr(payment)


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        (
            {"spec__cost__total": 132.36},
            "its items add up to 132.35 USD (base 20, setup 100, quotas 12.35), not its total 132.36 USD; nothing is sent",
        ),
        (
            {"spec__cost__plan__quotas": [{"name": "calls", "cost": 12.345}], "spec__cost__total": 132.345},
            "'Period 2026-11: calls, 4,940 units' costs 12.345 USD, which is not a whole number of the currency's "
            "smallest unit: Recurly cannot bill it exactly; nothing is sent",
        ),
        (
            {"spec__cost__plan__currency": "XYZ"},
            "its currency 'XYZ' is not one this tool knows the smallest unit of (ISO 4217); nothing is sent",
        ),
        (
            {"spec__cost__plan__currency": ...},
            "its currency is unknown (neither the invoice nor its plan names one); nothing is sent",
        ),
    ],
)
def test_money_that_cannot_be_billed_exactly_sends_nothing(changes: dict[str, Any], why: str) -> None:
    given = inputs(invoice(**changes))

    assert [kind for kind, _, _ in plan(given)] == ["finding"]
    assert findings(given) == [why]
    assert diff_invoices(given, OPTIONS).changes[0].withholds


def test_the_plans_currency_stands_in_for_an_invoice_without_one() -> None:
    given = inputs(invoice(spec__cost__plan__currency=...), plan_currencies={"gold": "EUR"})

    create = diff_invoices(given, OPTIONS).changes[0].action
    assert isinstance(create, CreateInvoicePurchase) and create.currency == "EUR"


def test_smallest_units_follow_iso_4217() -> None:
    assert minor_units(Decimal("12.35"), "USD") == 1235
    assert minor_units(Decimal("1200"), "JPY") == 1200
    assert minor_units(Decimal("12.5"), "JPY") is None
    assert minor_units(Decimal("1.234"), "KWD") == 1234
    assert purchase_of(invoice(spec__cost__plan__currency="JPY"), "JPY") == (
        "'Period 2026-11: calls, 4,940 units' costs 12.35 JPY, which is not a whole number of the currency's "
        "smallest unit: Recurly cannot bill it exactly"
    )


def test_a_long_or_odd_invoice_id_still_gives_keys_within_recurlys_50_characters() -> None:
    odd = po_number("x" * 60)
    assert len(odd) == 44 and odd.startswith("amplify-inv-") and odd == po_number("x" * 60)


def test_a_consumer_without_a_recurly_account_gets_a_finding() -> None:
    given = InvoiceInputs(invoices=(invoice(),))

    assert findings(given) == [
        f"the consumer has no Recurly account ({ACCOUNT}); run link-accounts (with accounts.create_missing: true), "
        "then sync-invoices again"
    ]


def test_no_card_on_file_under_automatic_collection_makes_no_invoice_but_status_error() -> None:
    given = inputs(invoice(), card=False)

    actions = [a for _, _, a in plan(given) if a is not None]
    assert len(actions) == 1 and isinstance(actions[0], SetInvoiceStatus) and actions[0].level == "Error"
    assert "no card on file" in actions[0].reason
    manual = InvoicePlanOptions(collection_method="manual", invoiced=OPTIONS.invoiced)
    assert isinstance(diff_invoices(given, manual).changes[0].action, CreateInvoicePurchase)


def test_an_invoice_of_nothing_is_paid_in_amplify_without_a_recurly_invoice() -> None:
    given = inputs(invoice(spec__cost={"plan": {"name": "gold", "cost": 0, "currency": "USD"}, "total": 0}))

    assert [(k, o, a.name if isinstance(a, SetInvoiceState) else a) for k, o, a in plan(given)] == [
        ("update", "invoice_state", "paid")
    ]


def test_an_invoice_in_error_or_of_a_recurly_mode_marketplace_is_left_alone() -> None:
    assert plan(inputs(invoice(status={"level": "Error"}))) == []
    assert findings(inputs(invoice(marketplace__name="other-market"))) == [
        "its Marketplace other-market bills through Amplify's invoices (Custom billing) but billing.mode is recurly "
        "for it: it would be billed twice. Set billing.marketplaces to marketplace for it, or turn its Custom "
        "billing off"
    ]


# ---- an earlier run's purchase -------------------------------------------------------------------------------


def test_a_purchase_a_killed_run_left_is_finished_not_sent_again() -> None:
    given = inputs(invoice(), recurly={INVOICE_ID: recurly()}, open_intents={INVOICE_ID: po_number(INVOICE_ID)})

    actions = [a for _, _, a in plan(given)]
    assert not any(isinstance(a, CreateInvoicePurchase) for a in actions)
    assert [type(a).__name__ for a in actions] == [
        "ResolveInvoiceIntent",
        "SetLink",
        "WriteInvoicePayment",
        "SetInvoiceState",
    ]
    resolve = actions[0]
    assert isinstance(resolve, ResolveInvoiceIntent) and resolve.result_id == "e28zov4fw0v2"


def test_a_payment_already_written_leaves_only_the_state() -> None:
    written = invoice(billing={"payment": {"type": "custom", "id": "e28zov4fw0v2"}})
    given = inputs(written, recurly={INVOICE_ID: recurly()}, linked=frozenset({INVOICE_ID}))

    assert [type(a).__name__ for _, _, a in plan(given)] == ["SetInvoiceState"]


def test_an_invoice_linked_to_a_recurly_invoice_that_is_gone_sends_nothing() -> None:
    gone = "the journal links it to Recurly invoice e28zov4fw0v2, which no longer exists (HTTP 404)"
    given = inputs(invoice(), unusable={INVOICE_ID: gone})

    assert [k for k, _, _ in plan(given)] == ["finding"]
    assert findings(given)[0].startswith(gone + "; nothing is sent for it")


# ---- following Recurly --------------------------------------------------------------------------------------


def followed(state: str, amplify_state: str = "open", level: str = "Pending") -> list[tuple[str, str]]:
    given = inputs(
        invoice(state={"name": amplify_state}, status={"level": level}), recurly={INVOICE_ID: recurly(state)}
    )
    result = []
    for _, _, action in plan(given):
        if isinstance(action, SetInvoiceState):
            result.append(("state", action.name))
        elif isinstance(action, SetInvoiceStatus):
            result.append(("status", action.level))
    return result


@pytest.mark.parametrize(
    ("recurly_state", "expected"),
    [
        ("pending", []),
        ("processing", []),
        # the status first: the state, last, takes a final invoice out of the actionable listing
        ("past_due", [("status", "Success"), ("state", "pastDue")]),
        ("paid", [("status", "Success"), ("state", "paid")]),
        ("failed", [("status", "Error"), ("state", "incomplete")]),
        ("closed", [("status", "Error"), ("state", "incomplete")]),
        ("voided", [("status", "Success"), ("state", "void")]),
    ],
)
def test_every_recurly_state_has_its_amplify_state(recurly_state: str, expected: list[tuple[str, str]]) -> None:
    assert followed(recurly_state) == expected


def test_the_state_of_a_followed_invoice_is_written_last_and_only_after_its_status() -> None:
    # a run stopped after the status leaves the invoice listed (open) for the next run to finish; stopped after
    # a final state, it would never be listed again and its status would stay Pending
    given = inputs(invoice(state={"name": "open"}, status={"level": "Pending"}), recurly={INVOICE_ID: recurly("paid")})
    status, state = diff_invoices(given, OPTIONS).changes
    assert isinstance(status.action, SetInvoiceStatus) and isinstance(state.action, SetInvoiceState)
    assert state.requires == (status.key,) and status.phase < state.phase


def test_the_mapping_covers_every_state_recurly_documents() -> None:
    documented = {"open", "pending", "processing", "past_due", "paid", "closed", "failed", "voided"}  # InvoiceStateEnum
    assert set(RECURLY_TO_AMPLIFY) == documented


def test_an_invoice_amplify_made_past_due_stays_past_due_while_recurly_collects() -> None:
    assert followed("pending", "pastDue") == [("status", "Success")]
    assert followed("pending", "pastDue", "Success") == []
    assert followed("paid", "pastDue", "Success") == [("status", "Success"), ("state", "paid")]


def test_a_recurly_state_the_mapping_does_not_know_is_a_finding() -> None:
    given = inputs(invoice(state={"name": "open"}), recurly={INVOICE_ID: recurly("dunning")})

    assert findings(given) == [
        "Recurly invoice 1001 is in state 'dunning', which the mapping does not know; nothing is changed"
    ]


def test_failures_and_voids_count_for_the_safety_valve() -> None:
    given = inputs(invoice(state={"name": "open"}), recurly={INVOICE_ID: recurly("failed")})

    assert [c.object for c in diff_invoices(given, OPTIONS).destructive] == ["invoice_state"]


# ---- a void in Amplify ------------------------------------------------------------------------------------------


def test_a_void_stops_the_recurly_invoice_then_acknowledges() -> None:
    given = inputs(invoice(state={"name": "void"}), recurly={INVOICE_ID: recurly("past_due")})
    changes = diff_invoices(given, OPTIONS).changes

    assert [(c.kind, type(c.action).__name__) for c in changes] == [
        (ChangeKind.CANCEL, "MarkInvoiceFailed"),
        (ChangeKind.UPDATE, "SetInvoiceStatus"),
    ]
    stop, status = changes[0].action, changes[1].action
    assert isinstance(stop, MarkInvoiceFailed) and stop.invoice_id == "e28zov4fw0v2"
    assert isinstance(status, SetInvoiceStatus) and status.level == "Success"
    assert changes[1].requires == (changes[0].key,)


@pytest.mark.parametrize(
    ("found", "level"),
    [(None, "Success"), (recurly("failed"), "Success"), (recurly("paid"), "Error")],
)
def test_a_void_that_needs_no_stop_is_only_acknowledged(found: RecurlyInvoice | None, level: str) -> None:
    given = inputs(invoice(state={"name": "void"}), recurly={INVOICE_ID: found} if found else {})

    actions = [a for _, _, a in plan(given)]
    assert len(actions) == 1 and isinstance(actions[0], SetInvoiceStatus) and actions[0].level == level


# ---- a refused payment ----------------------------------------------------------------------------------------


def test_a_refused_payment_becomes_status_error_and_a_finding() -> None:
    followup = refusal_changes({INVOICE_ID: "Your card was declined."}, [invoice()])

    assert [(c.kind, c.object) for c in followup.changes] == [
        (ChangeKind.UPDATE, "invoice_status"),
        (ChangeKind.FINDING, "invoice"),
    ]
    status = followup.changes[0].action
    assert isinstance(status, SetInvoiceStatus) and status.level == amp.ERROR
    assert status.reason == "Recurly refused the payment, no invoice was made: Your card was declined."


def test_the_plan_is_pure() -> None:
    probe = (
        "import json, sys\n"
        "import amplify_billing.reconcile.invoices, amplify_billing.reconcile.billing_modes\n"
        "print(json.dumps(sorted(n for n in ('requests', 'recurly', 'sqlite3', 'yaml', 'rich') if n in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False, timeout=60)

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


# ---- switching a Marketplace between modes (billing.switch_at) -------------------------------------------------

SWITCH = datetime(2027, 1, 1, tzinfo=UTC)


def switched(mode: str) -> InvoicePlanOptions:
    # the Marketplace's configured mode took effect at SWITCH; a recurly-mode one still has its invoices up to then
    return InvoicePlanOptions(
        collection_method="automatic",
        invoiced=lambda name: name == MARKET and mode == "marketplace",
        switch=lambda name: (mode, SWITCH) if name == MARKET else None,
    )


def periodic(start: datetime, end: datetime) -> SubscriptionInvoice:
    from dataclasses import replace

    return replace(invoice(), period_start=start, period_end=end)


def test_an_invoice_recurly_billed_before_the_switch_is_not_sent_and_marked_paid() -> None:
    given = inputs(periodic(datetime(2026, 12, 1, tzinfo=UTC), SWITCH))

    [(kind, obj, action)] = plan(given, switched("marketplace"))

    assert (kind, obj, action.name) == ("update", "invoice_state", "paid")
    assert action.reason.startswith("billed in Recurly: its period 2026-12-01T00:00:00Z to 2027-01-01T00:00:00Z")


def test_an_invoice_after_a_switch_to_recurly_is_not_sent_and_one_before_it_is() -> None:
    after = plan(inputs(periodic(SWITCH, datetime(2027, 2, 1, tzinfo=UTC))), switched("recurly"))
    december = inputs(periodic(datetime(2026, 12, 1, tzinfo=UTC), SWITCH))
    before = plan(december, switched("recurly"))

    assert [(k, o, a.name) for k, o, a in after] == [("update", "invoice_state", "paid")]
    assert before == plan(december) and len(before) > 1  # sent as it would be with no switch


def test_an_invoice_straddling_the_switch_is_sent_nowhere_and_withheld() -> None:
    given = inputs(periodic(datetime(2026, 12, 15, tzinfo=UTC), datetime(2027, 1, 15, tzinfo=UTC)))

    changes = diff_invoices(given, switched("marketplace")).changes

    assert [(c.kind, c.withholds) for c in changes] == [(ChangeKind.FINDING, True)]
    assert "straddles billing.switch_at 2027-01-01T00:00:00Z" in changes[0].summary
