"""Loading: a configuration file (or parsed data) and the environment -> ``Settings``, or one ``ConfigError``.

pydantic validates the whole configuration in one pass and collects every problem; this module turns each
into a line ``file:line: dotted.key: what is wrong; what to do`` and raises them together, sorted by line, so an
operator fixes a file in one round instead of one error per run. A problem's line is its key's; a missing key
points at its section.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from amplify_billing.errors import ConfigError
from amplify_billing.settings.models import REQUIRED_HINTS, SECTIONS, Settings, section_keys
from amplify_billing.settings.values import PROBLEM_TYPE, FileContext, kind

CONFIG_ENV = "AMPLIFY_BILLING_CONFIG"
DEFAULT_CONFIG = Path("config.yaml")

# A location inside the configuration: section, key, then list indexes.
KeyPath = tuple[str | int, ...]


class Finding(NamedTuple):
    where: KeyPath
    problem: str
    # the line, when it is not simply the key's (the second of two equal keys)
    line: int | None = None


def resolve_config_path(cli_path: Path | None, env: Mapping[str, str]) -> Path:
    """``--config``, else ``$AMPLIFY_BILLING_CONFIG``, else ``./config.yaml``; it must be an existing file."""
    if cli_path is not None:
        path = cli_path.expanduser()
        how = f"--config {cli_path}"
        fix = "check the path, or copy config.example.yaml there and fill it in"
    elif env.get(CONFIG_ENV):
        path = Path(env[CONFIG_ENV]).expanduser()
        how = f"${CONFIG_ENV}={env[CONFIG_ENV]}"
        fix = f"fix ${CONFIG_ENV}, or pass --config PATH"
    else:
        path = DEFAULT_CONFIG
        if not path.exists():
            raise ConfigError(
                f"no configuration file: {path.absolute()} does not exist and neither --config nor "
                f"${CONFIG_ENV} is set; copy config.example.yaml to config.yaml and fill it in, or pass --config PATH"
            )
        how = f"./{DEFAULT_CONFIG}"
        fix = "replace it with a configuration file, or pass --config PATH"
    try:
        if path.is_file():
            return path
        exists = path.exists()
    except OSError:  # e.g. a directory on the way is unreadable: load_settings says so with the reason
        return path
    raise ConfigError(f"{how}: {'not a file' if exists else 'no such file'}; {fix}")


def load_settings(path: Path, env: Mapping[str, str]) -> Settings:
    """Read and validate ``path``; ``env`` supplies ``${NAME}`` values. Raises ``ConfigError``."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{name}: no such file; check the path, or copy config.example.yaml there") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{name}: not UTF-8 text; save the file as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read it: {exc.strerror}; check the path and its permissions") from None
    # imported here, not at the top: only reading a file needs a YAML parser, settings built in code do not
    from amplify_billing.settings.yaml_source import read_yaml

    document = read_yaml(text, name)
    duplicates = [Finding(where, problem, line) for where, line, problem in document.duplicates]
    context = FileContext(env, path.absolute().parent)
    return _validate(document.data, context, name, document.lines, duplicates)


def parse_settings(data: Mapping[str, Any], env: Mapping[str, str], *, source: str, base_dir: Path) -> Settings:
    """Validate an already-parsed configuration; ``source`` names it in messages, relative paths start at
    ``base_dir``. Raises ``ConfigError``."""
    return _validate(data, FileContext(env, base_dir), source, {}, [])


def _validate(
    data: object, context: FileContext, name: str, lines: Mapping[KeyPath, int], findings: Sequence[Finding]
) -> Settings:
    if data is None:
        raise ConfigError(f"{name}: the configuration is empty; copy config.example.yaml and fill it in")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{name}: expected a mapping of sections ({', '.join(SECTIONS)}), got {kind(data)}")
    sections, found = _prepared(data)
    problems = [*findings, *found]
    settings: Settings | None = None
    try:
        settings = Settings.model_validate({**sections, "source": name}, context=context)
    except ValidationError as exc:
        problems.extend(_explain(error) for error in exc.errors(include_url=False))
    if problems or settings is None:
        raise ConfigError(_report(name, lines, problems))
    return settings


def _prepared(data: Mapping[Any, Any]) -> tuple[dict[Any, Any], list[Finding]]:
    """The sections as the models take them. A section left empty or out is an empty mapping, so its defaults
    are validated in the file's context too (a default path starts at the file's directory); a known key left
    empty takes its default. ``source`` is the loader's to set, never the file's."""
    sections: dict[Any, Any] = {}
    found: list[Finding] = []
    for key, value in data.items():
        if key == "source":
            found.append(Finding((key,), _unknown(key, ())))
        elif key in SECTIONS and value is None:  # present with every key commented out
            sections[key] = {}
        elif key in SECTIONS and isinstance(value, Mapping):
            valid = section_keys(key)
            sections[key] = {k: v for k, v in value.items() if v is not None or k not in valid}
        else:
            sections[key] = value  # pydantic names it: an unknown section, or a section that is not a mapping
    for name in SECTIONS:
        sections.setdefault(name, {})
    return sections, found


def _explain(error: ErrorDetails) -> Finding:
    """One pydantic error as the operator reads it. Never the input itself: it may be a secret."""
    where: KeyPath = tuple(error["loc"])
    context = error.get("ctx") or {}
    if error["type"] == PROBLEM_TYPE:
        at = context.get("at")
        if at and not where:  # a rule across sections names its key whole, e.g. "amplify.private_key_file"
            return Finding(tuple(str(at).split(".")), str(context["problem"]))
        return Finding((where[0], at) if at else where, str(context["problem"]))
    if error["type"] == "missing":
        return Finding(where, f"missing; {REQUIRED_HINTS.get(_dotted(where), 'set it')}")
    if error["type"] == "extra_forbidden":
        return Finding(where, _unknown(str(where[-1]), where[:-1]))
    if error["type"] == "invalid_key":
        return Finding(where[:-1], f"found a key that is {kind(error['input'])}, not a name; quote it or remove it")
    if error["type"] in ("model_type", "model_attributes_type", "dict_type"):
        return Finding(where, f"expected a mapping of keys, got {kind(error['input'])}; indent its keys below it")
    return Finding(where, error["msg"])


def _unknown(key: str, path: KeyPath) -> str:
    valid = section_keys(str(path[0])) if path else list(SECTIONS)
    # a key put in the wrong section is common, and more likely than a typo of a different key here
    for section in SECTIONS:
        if key.lower() in section_keys(section) and key.lower() not in valid:
            return f"unknown key; did you mean {section}.{key.lower()}?"
    close = difflib.get_close_matches(key.lower(), valid, n=1, cutoff=0.6)
    if close:
        return f"unknown key; did you mean {_dotted((*path, close[0]))}?"
    if not path:
        return f"unknown section; the sections are {', '.join(SECTIONS)}"
    return f"unknown key; the keys of {_dotted(path)} are {', '.join(valid)}"


def _report(name: str, lines: Mapping[KeyPath, int], findings: Sequence[Finding]) -> str:
    """One line per problem, sorted by line (problems without one first: they concern the whole file);
    problems on one line keep pydantic's order, the order of the fields. A problem found twice is shown once
    (a key pair's path is checked as a path and again when the key is read from it)."""
    located: dict[str, int] = {}
    for finding in findings:
        line = finding.line if finding.line is not None else _line_of(finding.where, lines)
        located.setdefault(_message(name, line, finding.where, finding.problem), line or 0)
    return "\n".join(sorted(located, key=located.__getitem__))


def _line_of(where: KeyPath, lines: Mapping[KeyPath, int]) -> int | None:
    # a missing key has no line of its own: point at its section
    while where:
        if where in lines:
            return lines[where]
        where = where[:-1]
    return None


def _dotted(path: KeyPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _message(name: str, line: int | None, path: KeyPath, problem: str) -> str:
    where = f"{name}:{line}" if line is not None else name
    key = _dotted(path)
    return f"{where}: {key}: {problem}" if key else f"{where}: {problem}"
