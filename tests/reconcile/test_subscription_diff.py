"""Table-driven tests of the sync-subscriptions diff: every Amplify state x Recurly state pair."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from amplify_billing import safety
from amplify_billing.actions import CancelSubscription, Later
from amplify_billing.changes import ChangeKind, ChangeSet
from amplify_billing.errors import SafetyValveError
from amplify_billing.models import AmplifySubscription
from amplify_billing.reconcile.accounts import AccountOptions, OwnerDetails, diff_accounts
from amplify_billing.reconcile.subscriptions import (
    ENDED_BY_OPERATOR,
    LinkedPlan,
    RecurlySubscription,
    SubscriptionInputs,
    SubscriptionOptions,
    awaiting_final_usage,
    deleted_stand_in,
    diff_subscriptions,
    kept_plan,
    match_subscriptions,
    unmatched_links,
)
from amplify_billing.recurly.translate import account_body, subscription_body
from amplify_billing.settings import SafetySettings

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
ENDED_AT = NOW - timedelta(days=1)
TEAM = "d9120f39-88d1-4977-bc56-5dd7d7335a18"
ACCOUNT = f"amplify-team-{TEAM}"
PLAN = LinkedPlan("gold", "amplify-p1", "USD", ("amplify-q1", "amplify-q2"), {"q1": "amplify-q1", "q2": "amplify-q2"})
SUB_ID = "a" * 32


def amplify(approval: str | None, state: str | None, **extra: Any) -> AmplifySubscription:
    fields: dict[str, Any] = {
        "id": SUB_ID,
        "name": "sub-1",
        "product_name": "weather",
        "plan_name": "gold",
        "approval_state": approval,
        "state_name": state,
        "owner_team": TEAM,
        "owner_user": None,
        "owner_org": "100",
        "state_changed_at": ENDED_AT if state in ("cancelled", "archived", "migrated") else None,
        "raw": {"name": "sub-1", "metadata": {"selfLink": "/catalog/v1/subscriptions/sub-1"}},
    }
    fields.update(extra)
    return AmplifySubscription(**fields)


def recurly(state: str, uuid: str = "u" * 32, **extra: Any) -> RecurlySubscription:
    return RecurlySubscription(uuid=uuid, account_code=ACCOUNT, plan_code="amplify-p1", state=state, **extra)


def kinds(
    subscription: AmplifySubscription, recurly_subs: tuple[RecurlySubscription, ...], **inputs: Any
) -> list[tuple[str, str]]:
    options = SubscriptionOptions(
        custom_field=inputs.pop("custom_field", None), on_cancel=inputs.pop("on_cancel", "term_end")
    )
    links = inputs.pop("journal_links", {r.uuid and SUB_ID: r.uuid for r in recurly_subs[:1]})
    changeset = diff_subscriptions(
        SubscriptionInputs(
            amplify=(subscription,),
            plans={"gold": PLAN},
            recurly=recurly_subs,
            accounts=inputs.pop("accounts", {ACCOUNT}),
            journal_links=links,
            usage_reported_through=inputs.pop("usage_reported_through", {SUB_ID: NOW}),
        ),
        options,
    )
    # the journal's bookkeeping (the links a create leaves) is tested on its own below
    return [(c.kind.value, c.object) for c in changeset.changes if c.kind is not ChangeKind.RECORD]


def _first_create(subscription: AmplifySubscription, **more: Any) -> ChangeSet:
    """The diff of one subscription with nothing in Recurly yet: its create and the journal links after it.
    ``more``: more SubscriptionInputs (a switch's ``starts_at`` or ``late_starts``)."""
    inputs = SubscriptionInputs(
        amplify=(subscription,),
        plans={"gold": PLAN},
        recurly=(),
        accounts={ACCOUNT},
        journal_links={},
        usage_reported_through={SUB_ID: NOW},
        **more,
    )
    return diff_subscriptions(inputs, SubscriptionOptions())


def test_a_create_is_followed_by_its_journal_links_keyed_to_its_result() -> None:
    changeset = _first_create(amplify(*ACTIVE))
    create = next(c for c in changeset.changes if c.kind is ChangeKind.CREATE)
    links = [c for c in changeset.changes if c.kind is ChangeKind.RECORD]
    assert [(type(c.action).__name__, c.action.kind, c.requires, c.phase) for c in links] == [  # type: ignore[union-attr]
        ("SetLink", "subscription-created", (create.key,), create.phase),
        ("SetLink", "subscription", (create.key,), create.phase),
    ]
    assert all(c.action.value == Later(create.key) for c in links)  # type: ignore[union-attr]
    assert not any(c.writes and c.destructive for c in links)


def test_a_create_keeps_when_the_subscription_became_active() -> None:
    """Its Amplify state stops saying so once it ends; usage is billed from then (usage/reporting.py)."""
    since = NOW - timedelta(hours=5)
    changeset = _first_create(amplify(*ACTIVE, active_since=since))
    create = next(c for c in changeset.changes if c.kind is ChangeKind.CREATE)
    kept = [c for c in changeset.changes if c.key == f"subscription-active-since:{SUB_ID}"]
    assert [(c.action.key, c.action.value, c.requires) for c in kept] == [  # type: ignore[union-attr]
        (SUB_ID, since.isoformat(), (create.key,))
    ]


PENDING = ("pending", None)
ACTIVE = ("approved", "active")
APPROVED_NO_STATE = ("approved", None)
CANCELLED = ("approved", "cancelled")
ARCHIVED = ("approved", "archived")
MIGRATED = ("approved", "migrated")
REJECTED = ("rejected", None)

LINK = ("link", "subscription")
CREATE = ("create", "subscription")
APPROVE = ("approve", "approval")
CANCEL = ("cancel", "subscription")
TERMINATE = ("terminate", "subscription")

# (Amplify approval/state, Recurly state or None, expected (kind, object) in order)
TABLE = [
    (PENDING, None, [CREATE, APPROVE, LINK]),
    (PENDING, "active", [APPROVE, LINK]),
    (PENDING, "canceled", [APPROVE, LINK]),
    (ACTIVE, None, [CREATE, LINK]),
    (ACTIVE, "active", [LINK]),
    (ACTIVE, "canceled", [LINK]),
    (APPROVED_NO_STATE, None, [CREATE, LINK]),
    (CANCELLED, None, []),
    (CANCELLED, "active", [CANCEL]),
    (CANCELLED, "canceled", []),
    (ARCHIVED, "active", [CANCEL]),
    (ARCHIVED, None, []),
    (MIGRATED, "active", [TERMINATE]),
    (MIGRATED, "canceled", [TERMINATE]),
    (MIGRATED, None, []),
    (REJECTED, None, []),
    (REJECTED, "active", [CANCEL]),
    (("suspendedX", None), "active", [("finding", "subscription")]),
    (("approved", "suspendedX"), "active", [("finding", "subscription")]),
    (("approved", "suspendedX"), None, [("finding", "subscription")]),
]


@pytest.mark.parametrize(("amplify_state", "recurly_state", "expected"), TABLE)
def test_every_state_pair(
    amplify_state: tuple[str, str | None], recurly_state: str | None, expected: list[tuple[str, str]]
) -> None:
    recurly_subs = (recurly(recurly_state),) if recurly_state else ()
    assert kinds(amplify(*amplify_state), recurly_subs) == expected


def test_create_body_lists_every_usage_add_on_and_custom_field() -> None:
    changeset = diff_subscriptions(
        SubscriptionInputs(amplify=(amplify(*PENDING),), plans={"gold": PLAN}, recurly=(), accounts={ACCOUNT}),
        SubscriptionOptions(custom_field="amplify_subscription_id", collection_method="manual"),
    )
    [create] = changeset.by_kind(ChangeKind.CREATE)
    assert subscription_body(create.action) == {
        "plan_code": "amplify-p1",
        "currency": "USD",
        "account": {"code": ACCOUNT},
        "collection_method": "manual",
        "add_ons": [{"code": "amplify-q1"}, {"code": "amplify-q2"}],
        "custom_fields": [{"name": "amplify_subscription_id", "value": SUB_ID}],
    }
    [approve] = changeset.by_kind(ChangeKind.APPROVE)
    assert approve.requires == (create.key,)
    [link] = changeset.by_kind(ChangeKind.LINK)
    assert link.requires == (create.key,)
    assert link.action.attributes == {"recurlyAccountCode": ACCOUNT, "recurlySubscriptionUuid": "(known after apply)"}
    assert link.action.uuid == Later(create.key)


def test_missing_account_leaves_it_pending_and_is_reported() -> None:
    changeset = diff_subscriptions(
        SubscriptionInputs(amplify=(amplify(*PENDING),), plans={"gold": PLAN}, recurly=(), accounts=set()),
        SubscriptionOptions(),
    )
    assert changeset.writes == ()
    [waiting] = changeset.by_kind(ChangeKind.WAITING)
    assert waiting.summary == "its Recurly account is missing (see link-accounts); stays pending in Amplify"


def test_no_approval_when_approve_pending_is_off() -> None:
    changeset = diff_subscriptions(
        SubscriptionInputs(
            amplify=(amplify(*PENDING),),
            plans={"gold": PLAN},
            recurly=(recurly("active"),),
            accounts={ACCOUNT},
            journal_links={SUB_ID: "u" * 32},
        ),
        SubscriptionOptions(approve_pending=False),
    )
    assert not changeset.by_kind(ChangeKind.APPROVE)
    assert [c.summary for c in changeset.by_kind(ChangeKind.WAITING)] == [
        "pending approval by the provider (subscriptions.approve_pending is false)"
    ]


def test_terminate_when_configured() -> None:
    assert kinds(amplify(*CANCELLED), (recurly("active"),), on_cancel="terminate") == [TERMINATE]


def test_end_waits_for_final_usage() -> None:
    result = kinds(
        amplify(*CANCELLED), (recurly("active"),), usage_reported_through={SUB_ID: ENDED_AT - timedelta(hours=3)}
    )
    assert result == [("waiting", "subscription")]


def test_an_end_at_or_before_the_recurly_activation_has_no_usage_to_wait_for() -> None:
    """Usage is counted from the Recurly activation (the Amplify subscription no longer says when it became active
    once it ended): an end at that instant leaves no window, so no watermark ever moves. Waiting for one kept the
    Recurly subscription live for ever, and billed its next term."""
    for activated in (ENDED_AT, ENDED_AT + timedelta(minutes=5)):
        current = recurly("active", activated_at=activated)
        assert kinds(amplify(*CANCELLED), (current,), usage_reported_through={SUB_ID: None}) == [CANCEL], activated
    # activated before the end: its usage up to the end comes first, as always
    earlier = recurly("active", activated_at=ENDED_AT - timedelta(hours=1))
    assert kinds(amplify(*CANCELLED), (earlier,), usage_reported_through={SUB_ID: None}) == [
        ("waiting", "subscription")
    ]


def test_identity_after_a_crash_found_by_account_and_plan_without_journal() -> None:
    # created in Recurly, then killed before anything was written back: found, not created twice
    assert kinds(amplify(*PENDING), (recurly("active"),), journal_links={}) == [APPROVE, LINK]


def test_identity_by_custom_field() -> None:
    tagged = recurly("active", uuid="c" * 32, custom_fields={"amplify_id": SUB_ID})
    other = recurly("active", uuid="d" * 32, custom_fields={"amplify_id": "b" * 32})
    inputs = SubscriptionInputs(
        amplify=(amplify(*ACTIVE),), plans={"gold": PLAN}, recurly=(tagged, other), accounts={ACCOUNT}
    )
    assert match_subscriptions(inputs, SubscriptionOptions(custom_field="amplify_id")) == {SUB_ID: "c" * 32}


def test_ambiguity_is_reported_never_guessed() -> None:
    result = kinds(
        amplify(*ACTIVE), (recurly("active", uuid="1" * 32), recurly("active", uuid="2" * 32)), journal_links={}
    )
    assert result == [("finding", "subscription")]


def test_a_journal_linked_subscription_absent_from_the_listing_is_never_ended_for_absence_alone() -> None:
    # only a direct read proves a deletion (it then arrives as a stand-in); absence alone is a finding
    changeset = diff_subscriptions(
        SubscriptionInputs(
            amplify=(),
            plans={"gold": PLAN},
            recurly=(recurly("active"),),
            accounts={ACCOUNT},
            journal_links={SUB_ID: "u" * 32},
            unproven_absent={SUB_ID: "reading it failed (HTTP 503)"},
        ),
        SubscriptionOptions(),
    )
    [finding] = changeset.changes
    assert (finding.kind, finding.withholds, finding.key) == (ChangeKind.FINDING, True, SUB_ID)
    assert finding.summary == (
        "not listed by Amplify and not proven deleted: reading it failed (HTTP 503); Recurly subscription "
        f"{'u' * 32} is not ended. If it was deleted: amplify-billing sync-subscriptions --end {SUB_ID}"
    )
    assert changeset.linked_count == 1


def test_an_unproven_amplify_listing_ends_nothing_and_says_how_much_it_listed() -> None:
    other = "b" * 32
    changeset = diff_subscriptions(
        SubscriptionInputs(
            amplify=(
                amplify(*ACTIVE, attributes={"recurlyAccountCode": ACCOUNT, "recurlySubscriptionUuid": "u" * 32}),
            ),
            plans={"gold": PLAN},
            recurly=(recurly("active"), recurly("active", uuid="v" * 32)),
            accounts={ACCOUNT},
            journal_links={SUB_ID: "u" * 32, other: "v" * 32},
            amplify_unproven="Amplify listed 1 of 2 subscriptions (X-Axway-Total-Count)",
        ),
        SubscriptionOptions(),
    )
    [finding] = changeset.changes
    assert (finding.kind, finding.withholds) == (ChangeKind.FINDING, True)
    assert finding.summary == (
        "Amplify listed 1 of 2 subscriptions (X-Axway-Total-Count); 1 linked subscription(s) it did not show are "
        "not ended, and the usage of any it did not show waits for a whole listing"
    )


def test_an_unproven_recurly_listing_creates_nothing() -> None:
    unlinked = amplify(*ACTIVE)
    changeset = diff_subscriptions(
        SubscriptionInputs(
            amplify=(unlinked,),
            plans={"gold": PLAN},
            recurly=(),
            accounts={ACCOUNT},
            recurly_unproven="Recurly listed 3 of 5 live subscriptions (Recurly-Total-Records)",
        ),
        SubscriptionOptions(),
    )
    assert changeset.by_kind(ChangeKind.CREATE) == ()
    [finding] = changeset.by_kind(ChangeKind.FINDING)
    assert finding.withholds and finding.summary == (
        "no Recurly subscription matches it, but Recurly listed 3 of 5 live subscriptions (Recurly-Total-Records); "
        "it is not created until a listing is proven whole (the next run lists again)"
    )


def test_a_lost_link_is_a_finding_never_a_second_subscription() -> None:
    linked = amplify(*ACTIVE, attributes={"recurlySubscriptionUuid": "u" * 32})
    inputs = SubscriptionInputs(
        amplify=(linked,), plans={"gold": PLAN}, recurly=(), accounts={ACCOUNT}, journal_links={SUB_ID: "u" * 32}
    )
    assert unmatched_links(inputs, SubscriptionOptions()) == {SUB_ID: "u" * 32}
    lost = replace(inputs, lost_links={SUB_ID: f"its linked Recurly subscription {'u' * 32} is expired, nonrenewing"})
    changeset = diff_subscriptions(lost, SubscriptionOptions())
    assert changeset.by_kind(ChangeKind.CREATE) == ()
    [finding] = changeset.by_kind(ChangeKind.FINDING)
    assert finding.withholds and finding.summary.startswith(
        f"its linked Recurly subscription {'u' * 32} is expired, nonrenewing; no second Recurly subscription is created"
    )
    # a paused one read directly is the customer's subscription: no create, nothing else to do
    paused = replace(inputs, recurly=(recurly("paused"),))
    assert unmatched_links(paused, SubscriptionOptions()) == {}
    assert [(c.kind.value, c.object) for c in diff_subscriptions(paused, SubscriptionOptions()).changes] == [LINK]


def test_the_safety_valve_counts_creates_for_subscriptions_already_linked() -> None:
    # the Recurly side came back empty, and nothing read the links directly: creating them all again bills twice
    subs = tuple(
        amplify(*ACTIVE, id=f"{n:032x}", name=f"sub-{n}", attributes={"recurlySubscriptionUuid": f"{n:032d}"})
        for n in range(6)
    )
    changeset = diff_subscriptions(
        SubscriptionInputs(amplify=subs, plans={"gold": PLAN}, recurly=(), accounts={ACCOUNT}),
        SubscriptionOptions(),
    )
    creates = changeset.by_kind(ChangeKind.CREATE)
    assert len(creates) == 6 and all(c.action.replaces for c in creates)
    assert "(it was linked to Recurly subscription 00000000000000000000000000000000, which is not live)" in (
        creates[0].summary
    )
    assert changeset.linked_count == 6
    with pytest.raises(SafetyValveError) as refused:
        safety.check(changeset, SafetySettings(), force=False)
    assert str(refused.value).startswith(
        "sync-subscriptions would create a second Recurly subscription for 6 already linked Amplify "
        "subscription(s), 6 of 6 linked Recurly objects (100%), every linked object; nothing was written."
    )
    safety.check(changeset, SafetySettings(), force=True)
    fresh = diff_subscriptions(
        SubscriptionInputs(
            amplify=tuple(replace(s, attributes={}) for s in subs), plans={"gold": PLAN}, recurly=(), accounts={ACCOUNT}
        ),
        SubscriptionOptions(),
    )
    assert len(fresh.by_kind(ChangeKind.CREATE)) == 6 and fresh.linked_count == 0
    safety.check(fresh, SafetySettings(), force=False)  # new subscriptions: no refusal


def test_a_kept_subscription_is_billed_unchanged_and_named_every_run() -> None:
    current = recurly("active", add_on_codes=("amplify-q1", "amplify-q2", "other-x"))
    plan = kept_plan("gold-old", current, "amplify-")
    assert plan == LinkedPlan(
        "gold-old", "amplify-p1", "", ("amplify-q1", "amplify-q2", "other-x"), {"q1": "amplify-q1", "q2": "amplify-q2"}
    )
    kept = amplify(*PENDING, plan_name="gold-old")
    inputs = SubscriptionInputs(
        amplify=(kept,),
        plans={"gold-old": plan},
        recurly=(current,),
        accounts={ACCOUNT},
        journal_links={SUB_ID: "u" * 32},
        kept=frozenset({SUB_ID}),
    )
    [finding] = diff_subscriptions(inputs, SubscriptionOptions()).changes
    assert (finding.kind, finding.withholds) == (ChangeKind.FINDING, False)  # nothing is lost while usage goes on
    assert finding.summary == (
        "its plan gold-old left the opted-in catalog (the product no longer opts in, or it or the plan cannot be "
        f"read); Recurly subscription {'u' * 32} is kept and its usage still reported. To end it after its final "
        f"usage: amplify-billing sync-subscriptions --end {SUB_ID}"
    )
    assert match_subscriptions(inputs, SubscriptionOptions()) == {SUB_ID: "u" * 32}
    # ended on the operator's word: its final usage first, then the end
    ended = deleted_stand_in(SUB_ID, "gold-old", ENDED_AT, why=ENDED_BY_OPERATOR, name="sub-1")
    waiting = diff_subscriptions(
        replace(inputs, amplify=(ended,), kept=frozenset(), usage_reported_through={SUB_ID: None}),
        SubscriptionOptions(),
    )
    assert [(c.kind.value, c.summary.split(";")[0]) for c in waiting.changes] == [
        ("waiting", f"ended by the operator (amplify-billing sync-subscriptions --end) at {ENDED_AT.isoformat()}")
    ]
    [cancel] = diff_subscriptions(
        replace(inputs, amplify=(ended,), kept=frozenset(), usage_reported_through={SUB_ID: ENDED_AT}),
        SubscriptionOptions(),
    ).changes
    assert cancel.kind is ChangeKind.CANCEL


def test_linked_attributes_unchanged_means_no_writes() -> None:
    linked = amplify(*ACTIVE, attributes={"recurlyAccountCode": ACCOUNT, "recurlySubscriptionUuid": "u" * 32})
    assert kinds(linked, (recurly("active"),)) == []


def test_accounts_created_only_when_configured_and_never_without_email() -> None:
    subs = [amplify(*PENDING), amplify(*ACTIVE, id="b" * 32, name="sub-2", owner_user="user-1")]
    details = {
        ACCOUNT: OwnerDetails("ops@acme.test", "Ada", "Lovelace", "Acme"),
        "amplify-user-user-1": OwnerDetails(None, "No", "Mail", None),
    }
    changeset = diff_accounts(subs, set(), details, AccountOptions(create_missing=True))
    [create] = changeset.by_kind(ChangeKind.CREATE)
    assert account_body(create.action) == {
        "code": ACCOUNT,
        "email": "ops@acme.test",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "company": "Acme",
    }
    [waiting] = changeset.by_kind(ChangeKind.WAITING)
    assert waiting.recurly == "account amplify-user-user-1"
    assert "no e-mail address" in waiting.summary
    not_configured = diff_accounts(subs, set(), details, AccountOptions(create_missing=False))
    assert not_configured.writes == ()
    assert {c.recurly for c in not_configured.by_kind(ChangeKind.WAITING)} == {
        f"account {ACCOUNT}",
        "account amplify-user-user-1",
    }
    assert all("accounts.create_missing is false" in c.summary for c in not_configured.by_kind(ChangeKind.WAITING))


def test_an_ended_subscription_with_invoices_to_send_gets_its_owners_account_but_no_link() -> None:
    # marketplace mode: Amplify invoices a subscription after it ended (its cancellation invoice at least)
    ended = amplify(*CANCELLED, owner_user="user-9")
    details = {"amplify-user-user-9": OwnerDetails("nine@acme.test", "Nine", "Owner", "Acme")}
    options = AccountOptions(create_missing=True)
    assert diff_accounts([ended], set(), details, options).changes == ()  # nothing owed: no account

    owed = diff_accounts([ended], set(), details, options, owed={"sub-1"})

    [create] = owed.changes
    assert create.kind is ChangeKind.CREATE and create.recurly == "account amplify-user-user-9"
    existing = diff_accounts([ended], {"amplify-user-user-9"}, details, options, owed={"sub-1"})
    assert existing.changes == ()  # an ended subscription gets no link attribute


def test_org_mode_account_codes() -> None:
    changeset = diff_accounts([amplify(*ACTIVE)], {"amplify-org-100"}, {}, AccountOptions(owner="org"))
    [link] = changeset.by_kind(ChangeKind.LINK)
    assert link.action.attributes == {"recurlyAccountCode": "amplify-org-100"}


def _inputs(subscription: AmplifySubscription, reported: datetime | None) -> SubscriptionInputs:
    return SubscriptionInputs(
        amplify=(subscription,),
        plans={"gold": PLAN},
        recurly=(recurly("active"),),
        accounts={ACCOUNT},
        journal_links={SUB_ID: "u" * 32},
        usage_reported_through={SUB_ID: reported},
    )


@pytest.mark.parametrize(
    ("subscription", "reported", "expected"),
    [
        (amplify(*CANCELLED), None, [SUB_ID]),
        (amplify(*CANCELLED), ENDED_AT - timedelta(hours=1), [SUB_ID]),
        (amplify(*CANCELLED), ENDED_AT, []),  # reported up to the end: may end now
        (amplify(*MIGRATED), None, [SUB_ID]),
        (amplify(*ACTIVE), None, []),  # not ended
        (amplify(*REJECTED, state_changed_at=ENDED_AT), None, []),  # never approved: never billed usage
        (amplify("approved", "frozen", state_changed_at=ENDED_AT), None, []),  # unknown: a finding, not an end
    ],
)
def test_awaiting_final_usage(
    subscription: AmplifySubscription, reported: datetime | None, expected: list[str]
) -> None:
    assert awaiting_final_usage(_inputs(subscription, reported), SubscriptionOptions()) == expected


def test_awaiting_final_usage_needs_a_recurly_subscription() -> None:
    inputs = SubscriptionInputs(amplify=(amplify(*CANCELLED),), plans={"gold": PLAN}, recurly=(), accounts={ACCOUNT})
    assert awaiting_final_usage(inputs, SubscriptionOptions()) == []


def test_deleted_stand_in_waits_for_its_usage_then_cancels() -> None:
    stand_in = deleted_stand_in(SUB_ID, "gold", ENDED_AT)
    waiting = diff_subscriptions(_inputs(stand_in, ENDED_AT - timedelta(hours=5)), SubscriptionOptions())
    assert [(c.kind.value, c.summary.split(";")[0]) for c in waiting.changes] == [
        ("waiting", f"deleted in Amplify (missed by the run) at {ENDED_AT.isoformat()}")
    ]
    ends = diff_subscriptions(_inputs(stand_in, ENDED_AT), SubscriptionOptions())
    [cancel] = ends.changes
    assert cancel.kind is ChangeKind.CANCEL and cancel.action == CancelSubscription("u" * 32)
    assert cancel.summary == "deleted in Amplify (missed by the run); cancel at the end of the term"


def test_a_subscription_created_ahead_of_a_switch_to_recurly_starts_at_it() -> None:
    switch = NOW + timedelta(days=3)
    changeset = _first_create(amplify(*PENDING), starts_at={SUB_ID: switch})
    [create] = changeset.by_kind(ChangeKind.CREATE)
    assert subscription_body(create.action)["starts_at"] == switch.isoformat().replace("+00:00", "Z")
    assert create.summary.endswith(f"starting at billing.switch_at {switch.isoformat()}")


def test_a_future_subscription_whose_amplify_subscription_ends_is_cancelled_so_it_never_starts() -> None:
    assert kinds(amplify(*CANCELLED), (recurly("future"),)) == [CANCEL]


def test_a_create_after_a_switch_to_recurly_names_the_base_price_no_side_billed() -> None:
    switch = NOW - timedelta(days=2)
    changeset = _first_create(amplify(*PENDING), late_starts={SUB_ID: (switch, NOW)})
    assert len(changeset.by_kind(ChangeKind.CREATE)) == 1
    [gap] = [c for c in changeset.changes if c.kind is ChangeKind.FINDING]
    assert gap.withholds and "billed by neither side" in gap.summary and switch.isoformat() in gap.summary
