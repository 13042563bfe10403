"""One exception tree for the whole tool.

Every expected failure is an ``AmplifyBillingError`` carrying the exit code of DESIGN.md §7 and a
message that says what happened *and what to do*. Adapters translate transport and SDK errors into
this tree at their boundary; the CLI's single handler prints ``Error: <message>`` and exits with
``exit_code``. Nothing else in the package decides exit codes.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    PARTIAL_FAILURE = 1  # some changes failed, the others applied
    CONFIG = 2  # bad invocation or configuration
    UPSTREAM = 3  # an upstream system unreachable or refusing credentials; nothing written
    REFUSED = 4  # safety valve, or --dry-run --exit-code found pending changes
    INTERNAL = 70  # an unexpected exception, a bug (EX_SOFTWARE); a crash report holds the traceback
    LOCKED = 75  # another run holds the lock (EX_TEMPFAIL)
    INTERRUPTED = 130  # Ctrl-C / SIGINT


class AmplifyBillingError(Exception):
    """Base of every error the tool expects; ``str(err)`` is the one line shown to the operator."""

    exit_code: ExitCode = ExitCode.PARTIAL_FAILURE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(AmplifyBillingError):
    """Bad configuration or invocation. The message names the file and the key."""

    exit_code = ExitCode.CONFIG


class UsageInputError(ConfigError):
    """A bad usage input file (names the file and line); nothing is posted from it."""


class UpstreamError(AmplifyBillingError):
    """An upstream system failed. ``system`` is "amplify" or "recurly"."""

    exit_code = ExitCode.UPSTREAM

    def __init__(
        self,
        message: str,
        *,
        system: str,
        status: int | None = None,
        request_id: str | None = None,
        error_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.system = system
        self.status = status
        self.request_id = request_id
        self.error_type = error_type


class UnreachableError(UpstreamError):
    """Network failure, timeout or retries exhausted on a transient error."""


class AuthError(UpstreamError):
    """Credentials refused (401/403, bad token)."""


class ApiRejectedError(UpstreamError):
    """The API refused one request (4xx other than auth/rate limit). Usually fails one change only."""

    exit_code = ExitCode.PARTIAL_FAILURE


class NotFoundError(ApiRejectedError):
    """The object does not exist upstream (404)."""


class ConflictError(ApiRejectedError):
    """Optimistic concurrency lost twice in a row (Amplify 428), or a duplicate."""


class SafetyValveError(AmplifyBillingError):
    """A run would destroy more than the configured share of linked objects."""

    exit_code = ExitCode.REFUSED


class PendingChangesError(AmplifyBillingError):
    """``--dry-run --exit-code`` found changes to make."""

    exit_code = ExitCode.REFUSED


class LockHeldError(AmplifyBillingError):
    """Another run holds the journal lock."""

    exit_code = ExitCode.LOCKED


class JournalError(AmplifyBillingError):
    """The journal file cannot be opened or has a schema from a newer version."""

    exit_code = ExitCode.CONFIG
