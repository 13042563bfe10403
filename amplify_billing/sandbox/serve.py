"""``amplify-billing sandbox``: both emulators, seeded as one tenant variant, serving until Ctrl-C, with a ready
config file."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

from amplify_billing.errors import ConfigError
from amplify_billing.sandbox.harness import Sandbox
from amplify_billing.sandbox.scenario import build_scenario
from amplify_billing.sandbox.scenario_tenants import TENANTS, seed_tenant


def serve(*, seed: int, subscriptions: int, config_path: Path, state_dir: Path, tenant: str = "default") -> int:
    if tenant not in TENANTS:
        raise ConfigError(f"--tenant {tenant!r}: choose one of {', '.join(TENANTS)}")
    state_dir.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    sandbox = Sandbox.start(clock=lambda: datetime.now(UTC), state_dir=state_dir.resolve(), seed=seed)
    try:
        scenario = build_scenario(seed=seed, subscriptions=subscriptions, now=now, days_of_traffic=7)
        variant = seed_tenant(sandbox.amplify, scenario, tenant)
        sandbox.write_config(config_path)
        print(f"Tenant:           {variant.name}: {variant.description}")
        print(f"Amplify emulator: {sandbox.amplify.url}")
        print(f"Recurly emulator: {sandbox.recurly.url}  (POST /_sandbox/bill marks unbilled usage billed)")
        print(f"Configuration:    {config_path}")
        print(f"Try:              amplify-billing --config {config_path} doctor")
        print(f"Then:             amplify-billing --config {config_path} run --dry-run")
        print("Serving until Ctrl-C.", flush=True)
        threading.Event().wait()
    except KeyboardInterrupt:
        return 0
    finally:
        sandbox.stop()
    return 0
