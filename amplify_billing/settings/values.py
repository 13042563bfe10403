"""How a configuration file writes each kind of value, and how a problem with one is reported.

Each converter here becomes a pydantic *before* validator on a field of ``models``: it turns what YAML gives
(``${NAME}`` references, ``90m``, ``20%``, an unquoted number for an id) into the field's Python type, and the
*after* validators of ``rules`` then check the value. Either raises a ``Problem``: the text shown after
``file:line: dotted.key:``. The wrappers hand it to pydantic as a ``config`` error, so pydantic collects every
problem of a file in one pass and the loader reports them together.

Values come from a file when pydantic's validation context is a ``FileContext``: then ``${NAME}`` references
are expanded and relative paths start at the file's directory. Settings built in code get no context: their
strings and paths are taken as given, the types and rules still apply.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, get_args

from pydantic import BeforeValidator, ValidationInfo
from pydantic_core import PydanticCustomError

from amplify_billing.settings.secret import Secret

# The pydantic error type of every problem found here; the loader shows its text as it is.
PROBLEM_TYPE = "config"

DEFAULT_EMPTY_HINT = "give it a value, or remove the key to use the default"


class Problem(Exception):
    """What is wrong with one value and what to do. ``at`` names another key of the same section the problem
    belongs to: a secret read through its file key is wrong at that key, not at the secret's name."""

    def __init__(self, text: str, *, at: str | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.at = at

    def for_pydantic(self) -> PydanticCustomError:
        context = {"problem": self.text} if self.at is None else {"problem": self.text, "at": self.at}
        # the template only names the context entry: a problem's text may itself hold braces, as in ${NAME}
        return PydanticCustomError(PROBLEM_TYPE, "{problem}", context)


@dataclass(frozen=True)
class FileContext:
    """pydantic's validation context for values read from a configuration file."""

    env: Mapping[str, str]
    # where relative paths start: the configuration file's directory, not wherever cron starts the tool
    base_dir: Path


def file_context(info: ValidationInfo) -> FileContext | None:
    return info.context if isinstance(info.context, FileContext) else None


def before(convert: Callable[[Any, FileContext | None], Any], *, none_is_unset: bool = True) -> BeforeValidator:
    """A before validator from ``convert(value, context)``. None passes through unless ``none_is_unset`` is
    false: it is how an optional field says "not set" (the loader drops a key left empty, so a None from a file
    reaches a validator only as a list item)."""

    def validate(value: Any, info: ValidationInfo) -> Any:
        if value is None and none_is_unset:
            return None
        try:
            return convert(value, file_context(info))
        except Problem as problem:
            raise problem.for_pydantic() from None

    return BeforeValidator(validate)


# ---- how a value is described in a message -------------------------------------------------------------


def kind(value: object) -> str:
    """What a value is, never the value itself (it may be a secret)."""
    if value is None:
        return "no value"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float | Decimal):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, date):
        return "a date"
    return f"a {type(value).__name__}"


def show(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


# ---- strings and ${NAME} references ---------------------------------------------------------------------

# ``$${`` is a literal ``${``; ``${NAME}`` is a reference; any other ``${`` is a mistake worth naming.
_REFERENCE = re.compile(r"\$\$\{|\$\{(?:([A-Za-z_][A-Za-z0-9_]*)\})?")


def expand(text: str, context: FileContext | None, *, alternative: str | None = None) -> str:
    """Replace ``${NAME}`` from the environment; ``alternative`` is the file key a secret may use instead."""
    if context is None:
        return text
    parts: list[str] = []
    end = 0
    for match in _REFERENCE.finditer(text):
        parts.append(text[end : match.start()])
        end = match.end()
        name = match.group(1)
        if match.group(0) == "$${":
            parts.append("${")
        elif name is None:
            raise Problem(
                "contains '${' that does not start a ${NAME} reference (NAME: letters, digits and _, closed by '}'); "
                "write $${ for a literal ${"
            )
        elif name not in context.env:
            other = f", or use {alternative} instead" if alternative else ""
            raise Problem(f"environment variable {name} is not set; export it{other}")
        else:
            parts.append(context.env[name])
    parts.append(text[end:])
    return "".join(parts)


def to_text(
    value: object,
    context: FileContext | None,
    *,
    empty: str = DEFAULT_EMPTY_HINT,
    secret: bool = False,
    alternative: str | None = None,
) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and not secret:
        # an unquoted numeric id (tenant_id: 100000000000001) is meant as text
        return str(value)
    if not isinstance(value, str):
        raise Problem(f"expected a string, got {kind(value)}" + ("; quote it" if secret else ""))
    text = expand(value, context, alternative=alternative)
    if not text:
        whole = _REFERENCE.fullmatch(value)
        if context is not None and whole is not None and whole.group(1):
            raise Problem(f"environment variable {whole.group(1)} is empty; set it to the value")
        raise Problem(f"is empty; {empty}")
    return text


def text(*, empty: str = DEFAULT_EMPTY_HINT, none_is_unset: bool = True) -> BeforeValidator:
    """A string; ``empty`` says what to do when it is empty."""
    return before(lambda value, context: to_text(value, context, empty=empty), none_is_unset=none_is_unset)


def _to_text_list(value: object, context: FileContext | None) -> object:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        example = f"[{value}]" if isinstance(value, str) and len(value) <= 40 else "[a, b]"
        raise Problem(f"expected a list of strings, got {kind(value)}; write it as {example}")
    return value  # each item is checked by its own validator, so a message names the item's index and line


def one_of(choices: Any) -> BeforeValidator:
    """One of the strings of the ``Literal`` type ``choices``."""
    allowed: tuple[str, ...] = get_args(choices)

    def convert(value: object, context: FileContext | None) -> str:
        found = expand(value, context) if isinstance(value, str) else value
        if isinstance(found, str) and found in allowed:
            return found
        got = show(found) if isinstance(found, str) else kind(found)
        raise Problem(f"expected one of {', '.join(allowed)}, got {got}")

    return before(convert)


# ---- numbers, flags, durations, fractions, paths ----------------------------------------------------------

_WHOLE = re.compile(r"[+-]?\d+")
_DURATION = re.compile(r"(\d+)\s*([smhd])")
_DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_DURATION_HINT = "a duration such as 45s, 90m, 2h or 3d, or a whole number of seconds"
_FRACTION_HINT = "a fraction from 0 to 1 such as 0.2, or a percentage such as 20%"


def _to_flag(value: object, context: FileContext | None) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        found = expand(value, context).strip().lower()
        if found in ("true", "false"):
            return found == "true"
        raise Problem(f"expected true or false, got {show(value)}; write true or false without quotes")
    raise Problem(f"expected true or false, got {kind(value)}")


def _to_whole(value: object, context: FileContext | None) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        found = expand(value, context).strip()
        if _WHOLE.fullmatch(found):
            return int(found)
        raise Problem(f"expected a whole number, got {show(found)}")
    if isinstance(value, float):
        raise Problem(f"expected a whole number, got {value:g}")
    raise Problem(f"expected a whole number, got {kind(value)}")


def _to_number(value: object, context: FileContext | None) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        found = expand(value, context).strip()
        try:
            number = float(found)
        except ValueError:
            raise Problem(f"expected a number, got {show(found)}") from None
    else:
        raise Problem(f"expected a number, got {kind(value)}")
    if not math.isfinite(number):
        raise Problem("expected a finite number")
    return number


def _to_duration(value: object, context: FileContext | None) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        found = expand(value, context).strip().lower()
        if _WHOLE.fullmatch(found):
            return timedelta(seconds=int(found))
        match = _DURATION.fullmatch(found)
        if match:
            return timedelta(**{_DURATION_UNITS[match.group(2)]: int(match.group(1))})
        raise Problem(f"expected {_DURATION_HINT}, got {show(found)}")
    raise Problem(f"expected {_DURATION_HINT}, got {kind(value)}")


def _to_fraction(value: object, context: FileContext | None) -> Decimal:
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        # via str: 0.2 must become Decimal("0.2"), not the binary float's expansion
        number = Decimal(str(value))
    elif isinstance(value, str):
        found = expand(value, context).strip()
        try:
            number = Decimal(found.removesuffix("%").strip())
        except InvalidOperation:
            raise Problem(f"expected {_FRACTION_HINT}, got {show(found)}") from None
        if found.endswith("%"):
            number = number / 100
    else:
        raise Problem(f"expected {_FRACTION_HINT}, got {kind(value)}")
    if not number.is_finite() or not Decimal(0) <= number <= Decimal(1):
        raise Problem(f"expected {_FRACTION_HINT}, got {show(value) if isinstance(value, str) else value}")
    return number


def _to_day(value: object, context: FileContext | None) -> date:
    # YAML reads an unquoted 2027-01-31 as a date already; a quoted one (or a ${NAME}) is parsed here
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(to_text(value, context).strip())
    except ValueError:
        raise Problem(f"expected a date such as 2027-01-31, got {show(str(value))}") from None


def to_path(value: object, context: FileContext | None) -> Path:
    path = Path(value) if isinstance(value, os.PathLike) else Path(to_text(value, context))
    if context is None:
        return path
    path = path.expanduser()
    return path if path.is_absolute() else context.base_dir / path


Flag = before(_to_flag)
Whole = before(_to_whole)
Number = before(_to_number)
Duration = before(_to_duration)
Fraction = before(_to_fraction)
Day = before(_to_day)
# Relative to the configuration file's directory; a default path too (the field validates its default).
FilePath = before(to_path)
TextList = before(_to_text_list)
ListItem = text(empty="remove the empty item", none_is_unset=False)


# ---- secrets ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FromFile:
    """A secret's file key (``recurly.api_key_file``), put in the secret's place by its section so that the
    secret's own validator reads the file; ``with_value`` says the secret was also given directly."""

    path: object
    with_value: bool


def secret_files(data: Mapping[str, Any], files: Mapping[str, str], fields: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with each set file key of ``files`` (secret -> file key) moved into its secret's place. A file
    key that is a field of its own (``private_key_file``, the path is kept) stays as well."""
    values = dict(data)
    for name, file_key in files.items():
        path = values.get(file_key) if file_key in fields else values.pop(file_key, None)
        if path is not None:
            values[name] = FromFile(path, with_value=values.get(name) is not None)
    return values


def secret(section: str, name: str, *, file_key: str, pem: bool = False) -> BeforeValidator:
    """A ``Secret`` given as text (usually a ``${NAME}`` reference) or read from the file ``file_key`` names."""

    def convert(value: object, context: FileContext | None) -> Secret:
        if isinstance(value, Secret):
            return value
        if isinstance(value, FromFile):
            if value.with_value:
                raise Problem(f"both {section}.{name} and {section}.{file_key} are set; keep one", at=file_key)
            return _read_secret(value.path, context, name=name, pem=pem, at=file_key)
        found = to_text(value, context, secret=True, empty="give it a value", alternative=f"{section}.{file_key}")
        if pem:
            _check_pem(found, where="the value (not shown)")
        return Secret(found)

    return before(convert)


def _read_secret(raw: object, context: FileContext | None, *, name: str, pem: bool, at: str) -> Secret:
    try:
        target = to_path(raw, context)
        try:
            content = target.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise Problem(f"{target} is not UTF-8 text; point it at the file that holds the {name}") from None
        except OSError as exc:
            raise Problem(
                f"cannot read {target}: {exc.strerror}; check the path (relative paths start at the configuration "
                "file's directory) and its permissions"
            ) from None
        if pem:
            _check_pem(content, where=str(target))
            return Secret(content, file=target)
        # editors and `echo` add a final newline that is not part of the credential
        content = content.rstrip("\r\n")
        if not content:
            raise Problem(f"{target} is empty; put the {name} in it")
        return Secret(content, file=target)
    except Problem as problem:
        raise Problem(problem.text, at=at) from None


def _check_pem(content: str, *, where: str) -> None:
    if not re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----", content):
        raise Problem(
            f"{where} is not a PEM private key (no '-----BEGIN PRIVATE KEY-----' line); use the private key of "
            "the service account's key pair"
        )
