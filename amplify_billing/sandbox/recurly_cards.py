"""The emulated site's payment side of accounts: the card on file, and the hosted login token.

Every account starts with a valid test card on file (as a consumer who entered one on the hosted page), so that
automatic collection works in the sandbox as it does for a paying customer; a test removes it (``no card on
file``) or makes it decline. ``hosted_login_token`` (Recurly ``Account``) logs whoever holds it in to the account's
hosted page, ``https://{subdomain}.recurly.com/account/{hosted_login_token}``; here it is derived from the account's
code, so two runs of one scenario give the same token (the soak compares them). Kept apart from the site's records
(``recurly_state``) so that accounts answer with both fields while purchases and invoices live in
``recurly_invoices``.
"""

from __future__ import annotations

import hashlib
import weakref
from dataclasses import dataclass, field
from typing import Any, Literal

from amplify_billing.sandbox.recurly_records import AccountRecord
from amplify_billing.sandbox.recurly_state import RecurlyState
from amplify_billing.sandbox.recurly_wire import fmt_time

Card = Literal["valid", "declined", "none"]


@dataclass
class Cards:
    """Per account id: the card on file (absent: the default valid one)."""

    cards: dict[str, Card] = field(default_factory=dict)

    def card(self, account: AccountRecord) -> Card:
        return self.cards.get(account.id, "valid")


_CARDS: weakref.WeakKeyDictionary[RecurlyState, Cards] = weakref.WeakKeyDictionary()


def cards_of(state: RecurlyState) -> Cards:
    found = _CARDS.get(state)
    if found is None:
        found = _CARDS[state] = Cards()
    return found


def hosted_login_token(state: RecurlyState, account: AccountRecord) -> str:
    return hashlib.sha256(f"hosted:{state.site_id}:{account.code}".encode()).hexdigest()[:32]


def account_payment_fields(state: RecurlyState, account: AccountRecord) -> dict[str, Any]:
    """``hosted_login_token`` and ``billing_info`` of an account answer (null when no card is on file)."""
    card = cards_of(state).card(account)
    billing: dict[str, Any] | None = None
    if card != "none":
        billing = {
            "id": hashlib.sha256(f"billing:{account.id}".encode()).hexdigest()[:13],
            "object": "billing_info",
            "account_id": account.id,
            "first_name": account.first_name,
            "last_name": account.last_name,
            "valid": True,
            "payment_method": {
                "object": "credit_card",
                "card_type": "Visa",
                # Recurly's test cards: 4111… is approved, 4000 0000 0000 0002 declines
                "last_four": "0002" if card == "declined" else "1111",
                "exp_month": 12,
                "exp_year": 2030,
            },
            "created_at": fmt_time(account.created_at),
            "updated_at": fmt_time(account.updated_at),
        }
    return {"hosted_login_token": hosted_login_token(state, account), "billing_info": billing}
