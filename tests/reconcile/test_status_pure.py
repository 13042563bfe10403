"""The status analysis is pure: importing it loads no HTTP client, SDK, database, YAML parser or terminal library."""

from __future__ import annotations

import json
import subprocess
import sys

# The libraries that do I/O (or draw on a terminal), by the name they have in ``sys.modules``.
IO_LIBRARIES = ("requests", "recurly", "sqlite3", "yaml", "rich")


def test_importing_the_status_analysis_loads_no_io_library() -> None:
    # a fresh interpreter: this test process has long imported all of them
    probe = (
        "import json, sys\n"
        "import amplify_billing.reconcile.status\n"
        f"print(json.dumps(sorted(name for name in {IO_LIBRARIES!r} if name in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False, timeout=60)

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
