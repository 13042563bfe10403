"""Which catalog API version serves each kind, chosen once per run (``amplify.api_version: auto``).

The API server serves the catalog group as ``v1`` and ``v1alpha1``, and not every kind at both: the 2024 OAS
(v0.347) had products and quotas under ``catalog/v1`` but productplans, productplanunits, subscriptions and
subscriptioninvoices only under ``v1alpha1``; the docs moved every kind to ``v1`` in July 2026 and the SDK too
(Axway/agent-sdk commit 5b98a49 "Replace v1alpha1 api version with v1"), and ``v1alpha1`` is deprecated but still
served (docs.axway.com amplify-central, amplify_relnotes/2026july_amplify.md). So a tenant may mix versions across
kinds, and one GET per kind tells which it serves: ``v1`` first, ``v1alpha1`` when ``v1`` answers 404.

With a configured version (``v1`` or ``v1alpha1``) nothing is probed: every kind uses it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

AUTO = "auto"
# newest first: the order a kind is tried in
CATALOG_VERSIONS = ("v1", "v1alpha1")


@dataclass(frozen=True)
class VersionChoice:
    """The version a kind is served at, and how that was learned (for ``doctor``)."""

    plural: str
    version: str
    how: str  # "configured", or what the probes answered, e.g. "v1: HTTP 404; v1alpha1: served"


class ApiVersions:
    """The configured version, or the one each kind answered at, remembered for the run. Thread-safe."""

    def __init__(self, configured: str) -> None:
        self.configured = configured
        self._chosen: dict[str, VersionChoice] = {}
        self._lock = threading.Lock()

    @property
    def auto(self) -> bool:
        return self.configured == AUTO

    def chosen(self, plural: str) -> str | None:
        """The version for ``plural``: the configured one, the one a probe found, or None (not probed yet)."""
        if not self.auto:
            return self.configured
        with self._lock:
            choice = self._chosen.get(plural)
        return None if choice is None else choice.version

    def choose(self, plural: str, version: str, refused: tuple[str, ...] = ()) -> None:
        """Remember that ``plural`` answered at ``version`` after the versions in ``refused`` answered 404."""
        how = "; ".join([*(f"{v}: HTTP 404" for v in refused), f"{version}: served"])
        with self._lock:
            self._chosen.setdefault(plural, VersionChoice(plural, version, how))

    def choices(self) -> dict[str, VersionChoice]:
        """What each kind resolved to so far (every kind ``configured`` when a version is set)."""
        with self._lock:
            return dict(self._chosen)


def neither(plural: str) -> str:
    """The message for a kind that no catalog version serves."""
    tried = " nor ".join(f"catalog/{v}" for v in CATALOG_VERSIONS)
    return (
        f"Amplify serves {plural} at neither {tried} (HTTP 404 at both); check amplify.central_url and that the "
        "tenant has the Marketplace, or set amplify.api_version"
    )
