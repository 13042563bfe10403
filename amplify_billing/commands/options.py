"""The options of the link-accounts and sync-subscriptions commands (``run`` builds them too)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SyncOptions:
    dry_run: bool = False
    exit_code: bool = False
    force: bool = False
    # link-accounts on its own writes the account link attribute on each subscription. Within `run`,
    # sync-subscriptions writes it anyway, together with the subscription's uuid, in one PUT after the
    # approvals: writing it first too would spend a second Amplify request per subscription (of 25 a minute)
    # and spend it before the approvals.
    account_links: bool = True
    # --end: Amplify ids the operator ends (kept subscriptions whose product left the opted-in catalog, or linked
    # ones Amplify no longer lists whose deletion cannot be proven): their usage up to now, then the end
    end: tuple[str, ...] = ()
