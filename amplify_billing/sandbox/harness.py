"""Both emulators running together, with the configuration that points the tool at them.

Used by ``amplify-billing demo``, ``amplify-billing sandbox`` and the end-to-end tests.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from amplify_billing.sandbox.amplify_emulator import AmplifyEmulator
from amplify_billing.sandbox.recurly_emulator import RecurlyEmulator
from amplify_billing.settings import Settings, load_settings

SANDBOX_CLIENT_ID = "sandbox-client"
SANDBOX_CLIENT_SECRET = "sandbox-secret"  # a public, sandbox-only value
SANDBOX_RECURLY_KEY = "sandbox-recurly-key"  # a public, sandbox-only value
SANDBOX_TENANT = "100000000000001"
CUSTOM_FIELD = "amplify_subscription_id"


@dataclass
class Sandbox:
    amplify: AmplifyEmulator
    recurly: RecurlyEmulator
    clock: Callable[[], datetime]
    state_dir: Path
    overrides: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def start(cls, *, clock: Callable[[], datetime], state_dir: Path, seed: int = 0) -> Sandbox:
        amplify = AmplifyEmulator(
            client_id=SANDBOX_CLIENT_ID,
            client_secret=SANDBOX_CLIENT_SECRET,
            tenant_id=SANDBOX_TENANT,
            clock=clock,
            seed=seed,
        )
        recurly = RecurlyEmulator(api_key=SANDBOX_RECURLY_KEY, clock=clock, seed=seed)
        amplify.start()
        recurly.start()
        recurly.seed_custom_field_definition(CUSTOM_FIELD, "subscription")
        return cls(amplify, recurly, clock, state_dir)

    def stop(self) -> None:
        self.amplify.stop()
        self.recurly.stop()

    def config(self, **sections: Mapping[str, Any]) -> dict[str, Any]:
        """The configuration as a dict; ``sections`` override keys per section."""
        base: dict[str, Any] = {
            "amplify": {
                "central_url": self.amplify.url,
                "auth_url": f"{self.amplify.url}/auth",
                "platform_url": self.amplify.url,
                "tenant_id": SANDBOX_TENANT,
                "client_id": SANDBOX_CLIENT_ID,
                "client_secret": SANDBOX_CLIENT_SECRET,
                "page_size": 500,
                # the emulator does not throttle unless asked; a demo at 25/min would take an hour
                "rate_limit_per_minute": 100000,
                "timeout_seconds": 10,
            },
            "recurly": {"api_key": SANDBOX_RECURLY_KEY, "api_url": self.recurly.url, "timeout_seconds": 10},
            "accounts": {"create_missing": True},
            "subscriptions": {"custom_field": CUSTOM_FIELD, "collection_method": "manual"},
            "state": {"path": str(self.state_dir / "amplify-billing.db")},
        }
        for section, values in sections.items():
            base.setdefault(section, {}).update(values)
        return base

    def write_config(self, path: Path, **sections: Mapping[str, Any]) -> Path:
        path.write_text(
            "# amplify-billing configuration for the built-in sandbox (emulators on loopback)\n"
            + yaml.safe_dump(self.config(**sections), sort_keys=False)
        )
        return path

    def settings(self, **sections: Mapping[str, Any]) -> Settings:
        path = self.write_config(self.state_dir / "config.yaml", **sections)
        return load_settings(path, os.environ)
