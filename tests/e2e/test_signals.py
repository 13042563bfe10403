"""SIGINT and SIGTERM to a real process in the middle of its usage writes (issue 14).

The tool runs as ``python -m amplify_billing`` against the emulators, whose Recurly answers are slowed down so that
the signal comes while writes are in flight. After the signal no new write starts: the emulator receives at most
the writes in flight (``recurly.concurrency``), the process exits 130 (SIGINT) or 143 (SIGTERM) saying how many
writes were sent after the signal, its run row is closed as interrupted, and the next run finishes the work without posting any usage twice.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tools.driver import Cycle, failed

REAL_TODAY = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
CONCURRENCY = 4  # recurly.concurrency's default: at most this many writes are in flight at once


def _usage_posts(cycle: Cycle) -> int:
    return sum(1 for r in list(cycle.sandbox.recurly.requests) if r.method == "POST" and r.path.endswith("/usage"))


def _in_flight(cycle: Cycle, slow: Any) -> bool:
    """A usage write reached the emulator (its delay began) and has not been answered yet."""
    return int(slow.injected) > _usage_posts(cycle)


def _command(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "amplify_billing", "--config", str(config), *args]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AMPLIFY_BILLING")}


@pytest.mark.parametrize("sent", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_apply_sends_no_new_write_and_the_next_run_converges(sent: int, make_cycle: Any) -> None:
    cycle: Cycle = make_cycle(subscriptions=8, today=REAL_TODAY, days=5)
    assert all(failed(r) == [] for r in cycle.run())  # day 0, in-process: plans, accounts, subscriptions
    cycle.clock.set(datetime.now(UTC))
    config = cycle.sandbox.write_config(cycle.sandbox.state_dir / "config.yaml")
    # each usage write takes a while, so the signal finds some in flight
    slow = cycle.sandbox.recurly.inject("delay", method="POST", path=r"/usage$", delay_seconds=0.3)

    child = subprocess.Popen(
        _command(config, "report-usage"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
    )
    deadline = time.monotonic() + 60
    while not (_usage_posts(cycle) >= 3 and _in_flight(cycle, slow)) and child.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert child.poll() is None, "the run ended before the signal could reach it mid-apply"
    at_signal = _usage_posts(cycle)
    child.send_signal(sent)
    _, err = child.communicate(timeout=60)
    after_signal = _usage_posts(cycle) - at_signal

    assert child.returncode == 128 + sent, err  # 130 after SIGINT, 143 after SIGTERM
    assert after_signal <= CONCURRENCY, "only the writes in flight may still arrive"
    name = signal.Signals(sent).name
    found = re.search(rf"Interrupted by {name}: no new request was started after it; (\d+) write\(s\) were sent", err)
    assert found, err
    assert after_signal <= int(found.group(1)) <= CONCURRENCY
    with sqlite3.connect(cycle.sandbox.state_dir / "amplify-billing.db") as db:
        command, finished_at, exit_code = db.execute(
            "SELECT command, finished_at, exit_code FROM runs ORDER BY id DESC LIMIT 1"
        ).fetchone()
    assert (command, exit_code) == ("report-usage", 130) and finished_at is not None

    cycle.sandbox.recurly.faults.remove(slow)
    again = subprocess.run(_command(config, "report-usage"), capture_output=True, text=True, env=_env(), timeout=120)
    assert again.returncode == 0, again.stderr
    tags = Counter(r["merchant_tag"] for r in cycle.sandbox.recurly.usage_records())
    assert tags and max(tags.values()) == 1, "no usage window is posted twice"
    posted = _usage_posts(cycle)
    assert posted > at_signal + after_signal, "the next run went on with what was left"
    final = subprocess.run(_command(config, "report-usage"), capture_output=True, text=True, env=_env(), timeout=120)
    assert final.returncode == 0 and _usage_posts(cycle) == posted, "converged: nothing left to post"
    with sqlite3.connect(cycle.sandbox.state_dir / "amplify-billing.db") as db:
        assert db.execute("SELECT count(*) FROM intents WHERE state = 'open'").fetchone() == (0,)


def test_a_second_signal_stops_at_once(make_cycle: Any) -> None:
    cycle: Cycle = make_cycle(subscriptions=8, today=REAL_TODAY, days=5)
    assert all(failed(r) == [] for r in cycle.run())
    cycle.clock.set(datetime.now(UTC))
    config = cycle.sandbox.write_config(cycle.sandbox.state_dir / "config.yaml")
    # the usage writes in flight would take this long to finish
    slow = cycle.sandbox.recurly.inject("delay", method="POST", path=r"/usage$", delay_seconds=2.0)

    child = subprocess.Popen(
        _command(config, "report-usage"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
    )
    deadline = time.monotonic() + 60
    while not _in_flight(cycle, slow) and child.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert child.poll() is None
    child.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    stopped = time.monotonic()
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 143
    assert time.monotonic() - stopped < 1.5, "it did not wait for the writes in flight"
    assert "SIGTERM again: stopping at once" in err
