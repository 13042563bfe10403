"""Moved to amplify_billing.recurly.gateway (kept until every importer is repointed)."""

from amplify_billing.recurly.gateway import *  # noqa: F403
from amplify_billing.recurly.gateway import RecurlyGateway  # noqa: F401
