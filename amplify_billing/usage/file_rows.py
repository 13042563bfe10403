"""Reading and validating the rows of a usage file: the whole file is checked before any count is used, and a
bad row stops the run with the file, the line and what to fix."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from amplify_billing.errors import UsageInputError
from amplify_billing.usage.windows import window_floor

FIELDS = ("subscription_id", "quota_id", "window_start", "count")
EXTENSIONS = (".csv", ".jsonl")
_WHOLE_NUMBER = re.compile(r"[0-9]+", re.ASCII)
_FIX = "fix the row, nothing was posted from this file"


def _window_name(size: timedelta) -> str:
    if size == timedelta(days=1):
        return "a daily window (00:00:00 UTC)"
    if size == timedelta(hours=1):
        return "an hourly window (the top of an hour, UTC)"
    return f"a {size} window (aligned from 00:00:00 UTC)"


class _RowError(Exception):
    """A problem with one field of one row; turned into a UsageInputError with the file and line."""


def validated_rows(path: Path, size: timedelta) -> Iterator[tuple[int, str, str, datetime, int]]:
    """(line, subscription id, quota id, window start UTC, count) for every row; raises at the first bad one."""
    suffix = path.suffix.lower()
    if suffix not in EXTENSIONS:
        raise UsageInputError(
            f"usage file {path}: unsupported extension {path.suffix or '(none)'!r}; "
            f"usage.file_path must name a {' or '.join(EXTENSIONS)} file"
        )
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageInputError(
            f"usage file {path} does not exist; set usage.file_path to an existing .csv or .jsonl file"
        ) from None
    except OSError as err:
        raise UsageInputError(
            f"usage file {path} cannot be read ({err.strerror or err}); check usage.file_path and its permissions"
        ) from None
    try:
        text = data.decode("utf-8-sig")  # -sig: spreadsheet exports often start with a byte order mark
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise UsageInputError(f"{path}:{line}: not UTF-8 text ({err.reason}); save the file as UTF-8") from None
    if not text.strip():
        raise UsageInputError(
            f"usage file {path} is empty; it needs a row (subscription_id, quota_id, window_start, count) "
            "per counted window. Nothing was posted from this file"
        )
    raw_rows = _csv_rows(path, text) if suffix == ".csv" else _jsonl_rows(path, text)
    seen: dict[tuple[str, str, datetime], int] = {}
    rows = 0
    for line, row in raw_rows:
        field = ""
        try:
            field = "subscription_id"
            subscription_id = _id(row["subscription_id"])
            field = "quota_id"
            quota_id = _id(row["quota_id"])
            field = "window_start"
            start = _window_start(row["window_start"], size)
            field = "count"
            count = _count(row["count"], text_allowed=suffix == ".csv")
        except _RowError as err:
            raise UsageInputError(f"{path}:{line}: {field}: {err}; {_FIX}") from None
        key = (subscription_id, quota_id, start)
        if key in seen:
            raise UsageInputError(
                f"{path}:{line}: duplicate of line {seen[key]} (subscription_id {subscription_id}, "
                f"quota_id {quota_id}, window_start {start.strftime('%Y-%m-%dT%H:%M:%SZ')}); "
                f"keep one row per window, nothing was posted from this file"
            )
        seen[key] = line
        rows += 1
        yield line, subscription_id, quota_id, start, count
    if rows == 0:
        # a header alone would count every window as zero and move the watermarks past them
        raise UsageInputError(
            f"usage file {path} has no usage rows; it needs a row (subscription_id, quota_id, window_start, count) "
            "per counted window. Nothing was posted from this file"
        )


def _csv_rows(path: Path, text: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header: list[str] | None = None
        for values in reader:
            line = reader.line_num
            if not values or (len(values) == 1 and not values[0].strip()):
                continue  # blank line
            if header is None:
                header = [v.strip() for v in values]
                _check_header(path, line, header)
                continue
            if len(values) != len(header):
                raise UsageInputError(
                    f"{path}:{line}: expected {len(header)} fields ({','.join(header)}), found {len(values)}; {_FIX}"
                )
            yield line, dict(zip(header, values, strict=True))
    except csv.Error as err:
        raise UsageInputError(f"{path}:{reader.line_num}: not valid CSV ({err}); {_FIX}") from None


def _check_header(path: Path, line: int, header: list[str]) -> None:
    missing = [f for f in FIELDS if f not in header]
    extra = [f for f in header if f not in FIELDS]
    repeated = sorted({f for f in header if header.count(f) > 1})
    if missing or extra or repeated:
        problems = []
        if missing:
            problems.append(f"missing {', '.join(missing)}")
        if extra:
            problems.append(f"unexpected {', '.join(repr(f) for f in extra)}")
        if repeated:
            problems.append(f"repeated {', '.join(repeated)}")
        raise UsageInputError(
            f"{path}:{line}: the first line must be the header {','.join(FIELDS)} ({'; '.join(problems)}); "
            "fix the header, nothing was posted from this file"
        )


def _jsonl_rows(path: Path, text: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    # split on \n only: str.splitlines would also split at U+2028, which JSON strings may hold
    for line, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as err:
            raise UsageInputError(f"{path}:{line}: not valid JSON ({err.msg} at column {err.colno}); {_FIX}") from None
        if not isinstance(row, dict):
            raise UsageInputError(
                f"{path}:{line}: expected a JSON object with keys {', '.join(FIELDS)}, found {type(row).__name__}; "
                f"{_FIX}"
            )
        missing = [f for f in FIELDS if f not in row]
        extra = [k for k in row if k not in FIELDS]
        if missing or extra:
            problems = [f"missing {', '.join(missing)}"] if missing else []
            if extra:
                problems.append(f"unexpected {', '.join(repr(k) for k in extra)}")
            raise UsageInputError(
                f"{path}:{line}: the object must have exactly the keys {', '.join(FIELDS)} ({'; '.join(problems)}); "
                f"{_FIX}"
            )
        yield line, row


def _id(value: Any) -> str:
    if not isinstance(value, str):
        raise _RowError(f"{value!r} is not a string")
    text = value.strip()
    if not text:
        raise _RowError("is empty")
    if ":" in text or any(c.isspace() for c in text):
        # ids go into merchant_tags, whose parts are separated by ':'
        raise _RowError(f"{text!r} contains ':' or a space, which a merchant_tag cannot hold")
    return text


def _window_start(value: Any, size: timedelta) -> datetime:
    if not isinstance(value, str):
        raise _RowError(f"{value!r} is not an ISO 8601 time string")
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _RowError(f"{text!r} is not an ISO 8601 time such as 2026-11-01T00:00:00Z") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise _RowError(f"{text!r} has no time zone; add Z for UTC, e.g. {moment.strftime('%Y-%m-%dT%H:%M:%SZ')}")
    moment = moment.astimezone(UTC)
    if window_floor(moment, size) != moment:
        raise _RowError(f"{text!r} is not the start of {_window_name(size)}")
    return moment


def _count(value: Any, *, text_allowed: bool) -> int:
    if isinstance(value, str) and not text_allowed:
        raise _RowError(f"{json.dumps(value)} is a string; write the number without quotes")
    if isinstance(value, str):
        text = value.strip()
        if _WHOLE_NUMBER.fullmatch(text):
            return int(text)
        raise _RowError(f"{text!r} is not a whole number ≥ 0")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise _RowError(f"{json.dumps(value)} is not a whole number ≥ 0")
