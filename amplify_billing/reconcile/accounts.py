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
    return subscription.approval_state == literals.APPROVAL_APPROVED and (
        subscription.state_name is None or subscription.state_name in literals.BILLED_STATES
    )


def _ref(subscription: AmplifySubscription) -> str:
    return f"subscription {subscription.name} ({subscription.id})"


def diff_accounts(
    subscriptions: list[AmplifySubscription],
    existing_accounts: Collection[str],
    owner_details: Mapping[str, OwnerDetails],
    options: AccountOptions,
    *,
    owing: Collection[str] = frozenset(),
) -> ChangeSet:
    """``owing``: names of subscriptions that no longer need billing but have an Amplify invoice still to send
    (marketplace mode, ``gather/invoices.awaiting_invoices``): their owner's account is created too, where the
    invoice goes; the ended subscription itself gets no link attribute."""
    ordered = sorted(subscriptions, key=lambda s: s.id)
    billed = [s for s in ordered if needs_billing(s)]
    ended = [s for s in ordered if s.name in owing and not needs_billing(s)]
    linked = {s.id for s in billed}
    changes: list[Change] = []
    # account code -> the subscriptions that wait for it: one WAITING per account, not one per subscription
    blocked: dict[str, list[AmplifySubscription]] = {}
    for subscription in [*billed, *ended]:
        code = account_code(subscription, options.owner)
        if code is None:
            changes.append(_no_owner(subscription, options))
        elif not _account_ready(code, existing_accounts, owner_details, options):
            blocked.setdefault(code, []).append(subscription)
        elif subscription.id in linked and subscription.attributes.get(options.link_attribute) != code:
            changes.append(_link(subscription, code, options))
    changes.extend(_creates([*billed, *ended], existing_accounts, owner_details, options, blocked))
    changes.extend(
        _blocked(code, waiting, owner_details.get(code), options) for code, waiting in sorted(blocked.items())
    )
    return ChangeSet.of("link-accounts", changes)


def _account_ready(
    code: str, existing_accounts: Collection[str], owner_details: Mapping[str, OwnerDetails], options: AccountOptions
) -> bool:
    """The account exists, or will: creating is allowed and the owner's details (with an e-mail) were read."""
    if code in existing_accounts:
        return True
    if not options.create_missing:
        return False
    details = owner_details.get(code)
    return details is not None and not details.problem and bool(details.email)


def _no_owner(subscription: AmplifySubscription, options: AccountOptions) -> Change:
    what = "organization" if options.owner == "org" else "owner team or user"
    return Change(
        ChangeKind.FINDING,
        "account",
        _ref(subscription),
        "-",
        f"the subscription has no {what}; cannot choose a Recurly account",
        phase=PHASE_REPORT,
        key=subscription.id,
    )


def _link(subscription: AmplifySubscription, code: str, options: AccountOptions) -> Change:
    return Change(
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


def _creates(
    billed: list[AmplifySubscription],
    existing_accounts: Collection[str],
    owner_details: Mapping[str, OwnerDetails],
    options: AccountOptions,
    blocked: Mapping[str, list[AmplifySubscription]],
) -> list[Change]:
    """One create per missing account that some billed subscription needs, when creating is allowed and its
    owner's details were read (a blocked account is reported instead)."""
    if not options.create_missing:
        return []
    codes = {account_code(s, options.owner) for s in billed}
    changes: list[Change] = []
    for code in sorted(c for c in codes if c and c not in existing_accounts and c not in blocked):
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
    return changes


def _blocked(
    code: str, waiting: list[AmplifySubscription], details: OwnerDetails | None, options: AccountOptions
) -> Change:
    """An account that is missing and cannot be created, with what to do and the subscriptions it holds up."""
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
    return Change(
        ChangeKind.WAITING,
        "account",
        names,
        f"account {code}",
        f"{why}; blocks {len(waiting)} subscription(s)",
        phase=PHASE_REPORT,
        key=code,
    )
