"""The command line's words before click parses them, and the option values click cannot check by itself.

Global options (``--config``, ``--output``, ``--quiet``…) belong to the top-level command, so click accepts them
only before the subcommand. ``hoist_global_options`` moves those written after it to the front, so that
``amplify-billing run --output json`` works as ``amplify-billing --output json run`` does. It walks the words
with the commands' own declarations, so the value of an option (``--product -v``) is never taken for an option.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from amplify_billing.errors import ConfigError


def _takes_value(param: Any) -> bool:
    return not getattr(param, "is_flag", False) and not getattr(param, "count", False)


def _options_of(command: Any) -> dict[str, bool]:
    """Each option name of ``command`` (long and short forms) and whether it takes a value."""
    names: dict[str, bool] = {}
    for param in getattr(command, "params", ()):
        for name in (*getattr(param, "opts", ()), *getattr(param, "secondary_opts", ())):
            if name.startswith("-"):
                names[name] = _takes_value(param)
    names["--help"] = False
    return names


def _split(word: str, options: dict[str, bool]) -> tuple[str, bool] | None:
    """The option ``word`` names and whether its value is inside it (``--output=json``, ``-ojson``); None when it
    names no option of ``options``."""
    if word in options:
        return word, False
    if word.startswith("--") and "=" in word:
        name = word.split("=", 1)[0]
        return (name, True) if name in options else None
    if len(word) > 2 and word[0] == "-" and word[1] != "-" and options.get(word[:2]):
        return word[:2], True
    return None


def hoist_global_options(args: Sequence[str], root: Any) -> list[str]:
    """``args`` with the root's options that come after a subcommand moved to the front, values and all."""
    root_options = _options_of(root)
    moved: list[str] = []
    kept: list[str] = []
    command = root
    words = list(args)
    index = 0
    while index < len(words):
        word = words[index]
        index += 1
        if word == "--":
            kept.extend(words[index - 1 :])
            break
        subcommands = getattr(command, "commands", None)
        if not word.startswith("-") and subcommands and word in subcommands:
            command = subcommands[word]
            kept.append(word)
            continue
        options = _options_of(command)
        found = _split(word, options)
        target = kept
        if found is None and command is not root:
            found, options = _split(word, root_options), root_options
            target = moved if found is not None else kept
        target.append(word)
        if found is not None and options[found[0]] and not found[1] and index < len(words):
            target.append(words[index])  # the option's value, whatever it looks like
            index += 1
    return moved + kept


def parse_time(value: str | None, option: str) -> datetime | None:
    """``--from`` / ``--to``: a date (midnight UTC) or an ISO 8601 time; without a zone, UTC."""
    if value is None:
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"{option} {value!r}: not an ISO 8601 time; use e.g. 2026-11-01 or 2026-11-01T00:00:00Z"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_duration(value: str | None) -> float | None:
    """``--max-duration``: seconds, or a number with s, m or h."""
    if value is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600}
    text = value.strip().lower()
    try:
        seconds = float(text[:-1]) * units[text[-1]] if text[-1:] in units else float(text)
    except ValueError:
        raise ConfigError(f"--max-duration {value!r}: use seconds or a number with s, m or h (e.g. 15m)") from None
    if seconds <= 0:
        raise ConfigError(f"--max-duration {value!r}: must be more than zero")
    return seconds


__all__ = ["hoist_global_options", "parse_duration", "parse_time"]
