"""``amplify-billing sandbox``: both emulators, seeded, serving until Ctrl-C, with a ready config file."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

from amplify_billing.sandbox.harness import Sandbox
from amplify_billing.sandbox.scenario import build_scenario


def serve(*, seed: int, subscriptions: int, config_path: Path, state_dir: Path) -> int:
    state_dir.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    sandbox = Sandbox.start(clock=lambda: datetime.now(UTC), state_dir=state_dir.resolve(), seed=seed)
    try:
        build_scenario(seed=seed, subscriptions=subscriptions, now=now, days_of_traffic=7).seed_amplify(sandbox.amplify)
        sandbox.write_config(config_path)
        print(f"Amplify emulator: {sandbox.amplify.url}")
        print(f"Recurly emulator: {sandbox.recurly.url}  (POST /_sandbox/bill marks unbilled usage billed)")
        print(f"Configuration:    {config_path}")
        print(f"Try:              amplify-billing --config {config_path} run --dry-run")
        print("Serving until Ctrl-C.", flush=True)
        threading.Event().wait()
    except KeyboardInterrupt:
        return 0
    finally:
        sandbox.stop()
    return 0
