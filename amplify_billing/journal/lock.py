"""The run lock beside the journal: one run at a time per journal, an flock that dies with its holder."""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from amplify_billing.errors import JournalError, LockHeldError
from amplify_billing.journal.encoding import as_utc

# the logger the journal has always used, so that log filters and JSON logs name it as before the split
log = logging.getLogger("amplify_billing.journal")


def lock_path_for(state_path: Path) -> Path:
    return state_path.with_name(state_path.name + ".lock")


class RunLock:
    """One run at a time per journal: an flock on ``<state.path>.lock``.

    The kernel drops an flock when its holder dies, however it dies, so a file left by a killed run
    never blocks the next one. The file is never deleted: unlinking a lock file lets two processes
    lock two different inodes of the same name.
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, state_path: Path, command: str, *, clock: Callable[[], datetime]) -> RunLock:
        path = lock_path_for(state_path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as error:
            raise JournalError(
                f"cannot create the run lock {path}: {error.strerror or error}; "
                "make its directory writable or point state.path at a writable place"
            ) from error
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise LockHeldError(_held_message(path, holder)) from None
        except OSError as error:
            os.close(fd)
            raise JournalError(f"cannot lock {path}: {error.strerror or error}") from error
        holder_line = json.dumps(
            {"pid": os.getpid(), "command": command, "started_at": as_utc(clock()).strftime("%Y-%m-%dT%H:%M:%SZ")}
        )
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (holder_line + "\n").encode(), 0)
            os.fsync(fd)
        except OSError as error:
            os.close(fd)  # closing drops the flock
            raise JournalError(f"cannot write the run lock {path}: {error.strerror or error}") from error
        return cls(path, fd)

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            # cleared while still held, so nobody reads a finished run's details as the holder's
            os.ftruncate(fd, 0)
        except OSError:
            log.warning("could not clear the run lock %s", self.path)
        finally:
            os.close(fd)  # closing the only descriptor releases the flock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        data = json.loads(text) if text else {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _held_message(path: Path, holder: Mapping[str, Any]) -> str:
    if holder.get("pid") is None:
        # the holder has the lock but has not written its details yet (or the file was edited)
        who = "another amplify-billing run"
    else:
        who = (
            f"another amplify-billing run (pid {holder.get('pid')}, `{holder.get('command', '?')}`, "
            f"started {holder.get('started_at', '?')})"
        )
    pid = holder.get("pid")
    find = f"`ps -p {pid}`" if pid is not None else f"`fuser {path}`"
    # never "delete the lock": a second process would lock a new inode of the same name while the first still runs
    return (
        f"{who} holds {path}; wait for it to finish ({find} shows whether it still runs). The lock is released "
        "when that process exits, however it exits: a stale lock cannot block a run, so the file stays where it is"
    )
