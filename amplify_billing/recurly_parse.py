"""Moved to amplify_billing.recurly.parse (kept until every importer is repointed)."""

from amplify_billing.recurly.parse import *  # noqa: F403
