"""link-accounts diff: which Recurly account each billed Amplify subscription belongs to. Pure."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from amplify_billing.actions import CreateAccount, SetAttributes
from amplify_billing.amplify import literals
from amplify_billing.changes import Change, ChangeKind, ChangeSet
from amplify_billing.identity import account_code
from amplify_billing.models import AmplifySubscription

PHASE_ACCOUNTS = 15
PHASE_LINKS = 90
PHASE_REPORT = 95


@dataclass(frozen=True)
class OwnerDetails:
    """What the Platform API told us about an owner, for a new Recurly account."""

    email: str | None
    first_name: str | None
    last_name: str | None
    company: str | None
    problem: str | None = None  # why the details could not be read


@dataclass(frozen=True)
class AccountOptions:
    owner: str = "marketplace"  # marketplace | org
    create_missing: bool = False
    link_attribute: str = "recurlyAccountCode"


def needs_billing(subscription: AmplifySubscription) -> bool:
    """Pending, or approved and not ended: such a subscription must have a Recurly account."""
    if subscription.approval_state == literals.APPROVAL_PENDING:
        return True
    return subscription.approval_state == literals.APPROVAL_APPROVED and subscription.state_name in (
        None,
        literals.STATE_ACTIVE,
    )


def _ref(subscription: AmplifySubscription) -> str:
    return f"subscription {subscription.name} ({subscription.id})"


def diff_accounts(
    subscriptions: list[AmplifySubscription],
    existing_accounts: Collection[str],
    owner_details: Mapping[str, OwnerDetails],
    options: AccountOptions,
) -> ChangeSet:
    changes: list[Change] = []
    blocked: dict[str, list[AmplifySubscription]] = {}
    for subscription in sorted(subscriptions, key=lambda s: s.id):
        if not needs_billing(subscription):
            continue
        code = account_code(subscription, options.owner)
        if code is None:
            what = "organization" if options.owner == "org" else "owner team or user"
            changes.append(
                Change(
                    ChangeKind.FINDING,
                    "account",
                    _ref(subscription),
                    "-",
                    f"the subscription has no {what}; cannot choose a Recurly account",
                    phase=PHASE_REPORT,
                    key=subscription.id,
                )
            )
            continue
        creatable = code not in existing_accounts and options.create_missing
        if code not in existing_accounts and not options.create_missing:
            blocked.setdefault(code, []).append(subscription)
            continue
        if creatable:
            details = owner_details.get(code)
            if details is None or details.problem or not details.email:
                blocked.setdefault(code, []).append(subscription)
                continue
        if subscription.attributes.get(options.link_attribute) != code:
            changes.append(
                Change(
                    ChangeKind.LINK,
                    "subscription",
                    _ref(subscription),
                    f"account {code}",
                    f"set attribute {options.link_attribute}={code}",
                    action=SetAttributes(resource=subscription.raw, attributes={options.link_attribute: code}),
                    amplify_id=subscription.id,
                    recurly_id=code,
                    phase=PHASE_LINKS,
                    key=f"link:{subscription.id}",
                    requires=(f"account:{code}",),
                )
            )
    creatable_codes = sorted(
        {
            code
            for code in (account_code(s, options.owner) for s in subscriptions if needs_billing(s))
            if code and code not in existing_accounts and options.create_missing and code not in blocked
        }
    )
    for code in creatable_codes:
        details = owner_details[code]
        changes.append(
            Change(
                ChangeKind.CREATE,
                "account",
                code.replace("amplify-", "", 1),
                f"account {code}",
                f"create account for {details.company or details.email}",
                action=CreateAccount(code, details.email, details.first_name, details.last_name, details.company),
                recurly_id=code,
                phase=PHASE_ACCOUNTS,
                key=f"account:{code}",
            )
        )
    for code, waiting in sorted(blocked.items()):
        details = owner_details.get(code)
        if not options.create_missing:
            why = "missing in Recurly (accounts.create_missing is false): create it in Recurly"
        elif details is None or details.problem:
            problem = details.problem if details else "no details"
            why = f"missing in Recurly and its owner cannot be read from Amplify ({problem})"
        else:
            why = (
                "missing in Recurly and its owner has no e-mail address; "
                "add one in Amplify or create the account in Recurly"
            )
        names = ", ".join(s.name for s in waiting[:5]) + (f" and {len(waiting) - 5} more" if len(waiting) > 5 else "")
        changes.append(
            Change(
                ChangeKind.WAITING,
                "account",
                names,
                f"account {code}",
                f"{why}; blocks {len(waiting)} subscription(s)",
                phase=PHASE_REPORT,
                key=code,
            )
        )
    return ChangeSet.of("link-accounts", changes)
