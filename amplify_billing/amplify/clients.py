"""The three Amplify clients (resources, platform, traceability) over one shared transport."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import requests

from amplify_billing.amplify.platform import PlatformClient
from amplify_billing.amplify.resources import ResourceClient
from amplify_billing.amplify.traceability import TraceabilityClient
from amplify_billing.amplify.transport import AmplifyTransport
from amplify_billing.settings import AmplifySettings

__all__ = ["AmplifyClients"]


@dataclass(frozen=True)
class AmplifyClients:
    transport: AmplifyTransport
    resources: ResourceClient
    platform: PlatformClient
    traceability: TraceabilityClient

    @classmethod
    def build(
        cls,
        settings: AmplifySettings,
        *,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> AmplifyClients:
        transport = AmplifyTransport(settings, session=session, clock=clock, monotonic=monotonic, sleep=sleep)
        return cls(
            transport=transport,
            resources=ResourceClient(transport, settings),
            platform=PlatformClient(transport, settings),
            traceability=TraceabilityClient(transport, settings),
        )
