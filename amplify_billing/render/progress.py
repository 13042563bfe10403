"""What a person at a terminal sees while a command works: a spinner while it reads, a bar while it writes.
Nothing at all when stderr is not a terminal (cron), nor under ``--log-format json`` (stderr is JSON lines then)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.status import Status

from amplify_billing.changes import ChangeSet
from amplify_billing.render.diagnostics import json_logs


class Display:
    def __init__(self, err_console: Console) -> None:
        self._console = err_console
        self._live: Status | Progress | None = None

    @contextmanager
    def activity(self, text: str) -> Iterator[None]:
        """A spinner while ``text`` goes on (listings)."""
        if not self._shown():
            yield
            return
        status = self._console.status(text)
        self._live = status
        status.start()
        try:
            yield
        finally:
            status.stop()
            if self._live is status:
                self._live = None

    def progress(self, changeset: ChangeSet) -> Callable[[int], None] | None:
        """A progress bar over the writes of ``changeset``; None (no bar) off a terminal or with nothing to do."""
        total = len(changeset.writes)
        if total == 0 or not self._shown():
            return None
        if self._live is not None:
            self._live.stop()  # one live display at a time: the bar replaces the listing spinner
        bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self._console,
            transient=True,
        )
        task = bar.add_task(f"{changeset.command}: applying", total=total)
        bar.start()
        self._live = bar
        return lambda steps: bar.advance(task, steps)  # Progress locks internally: safe from worker threads

    def _shown(self) -> bool:
        return self._console.is_terminal and not json_logs()

    def done(self) -> None:
        if isinstance(self._live, Progress):
            self._live.stop()
            self._live = None
