"""The journal's link kinds and settings: what each local fact is called (docs/architecture.md, "Journal effects").

Every write of one of these is a planned change (``actions.SetLink``), so a dry run shows it and the audit log
records it; the names live here so that the commands, ``status`` and the tests agree on them.
"""

from __future__ import annotations

# Amplify subscription id -> the uuid of its Recurly subscription
SUBSCRIPTION_LINK = "subscription"
# Amplify subscription id -> the uuid of the Recurly subscription this journal created: every usage record on it
# went through this journal's ledger, so report-usage need not read Recurly to learn what is already there
CREATED_LINK = "subscription-created"
# Amplify id -> when a run first missed a journal-linked subscription that a direct read proved deleted
# ("" once listed again)
MISSED_LINK = "subscription-missed"
# Amplify subscription id -> when it became active, kept from the create: once it ends, Amplify's state no longer
# says (its timestamp is the end), and usage is billed from then, not from the later Recurly start
ACTIVE_SINCE_LINK = "subscription-active-since"
# Amplify id -> its name, so that one missing from a listing can be read directly (GET needs the name)
NAME_LINK = "subscription-name"
# Amplify id -> when the operator ended it (sync-subscriptions --end)
END_LINK = "subscription-end"
# "{subscription}:{quota}:{Recurly uuid}" -> when that pair's Recurly usage was read into the ledger
LOOKED_UP_LINK = "usage-looked-up"
# the usage window size this journal reports in (changing it would bill the same traffic twice)
WINDOW_SETTING = ("setting", "usage.window")
# set while a journal found stale is being rebuilt from Recurly (cleared once every pair was read again)
STALE_MARK = ("setting", "journal.stale")
# the journal intent kind of a usage post
INTENT_KIND = "usage"
