"""Settings: YAML + environment -> frozen, validated dataclasses.

The shapes below are the contract every other module relies on. ``load_settings`` turns a YAML
file into them; every error it raises is a ``ConfigError`` naming the file and the dotted key.
Secrets are ``Secret`` values whose ``repr``/``str`` never show the value.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

import yaml

from amplify_billing.errors import ConfigError


class Secret:
    """A credential. Only ``reveal()`` gives the value; ``repr``/``str`` print ``<hidden>``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(<hidden>)"

    def __str__(self) -> str:
        return "<hidden>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


AmplifyRegion = Literal["us", "eu", "ap", "eu2"]

# Regional endpoints (reference/amplify-api.md §1.5): central, platform, auth.
REGION_URLS: Mapping[str, tuple[str, str, str]] = {
    "us": ("https://apicentral.axway.com", "https://platform.axway.com", "https://login.axway.com/auth"),
    "eu": ("https://central.eu-fr.axway.com", "https://platform.axway.com", "https://login.axway.com/auth"),
    "ap": ("https://central.ap-sg.axway.com", "https://platform.axway.com", "https://login.axway.com/auth"),
    "eu2": (
        "https://engage.eu-fr.axway.com",
        "https://platform.eu-fr.axway.com",
        "https://login.eu-fr.axway.com/auth",
    ),
}


@dataclass(frozen=True)
class AmplifySettings:
    central_url: str
    auth_url: str
    platform_url: str
    tenant_id: str
    client_id: str
    client_secret: Secret | None = None
    private_key_file: Path | None = None
    # the private key's PEM text, read from private_key_file at load time
    private_key: Secret | None = None
    region: AmplifyRegion = "us"
    api_version: Literal["v1", "v1alpha1"] = "v1"
    page_size: int = 100
    rate_limit_per_minute: int = 25
    timeout_seconds: float = 30.0
    opt_in_attribute: str = "billingSystem"
    opt_in_value: str = "recurly"
    realm: str = "Broker"


@dataclass(frozen=True)
class RecurlySettings:
    api_key: Secret
    region: Literal["us", "eu"] = "us"
    # None means the public endpoint of ``region``; http://127.0.0.1:PORT for the sandbox and tests
    api_url: str | None = None
    timeout_seconds: float = 30.0
    max_retries: int = 5
    concurrency: int = 4


@dataclass(frozen=True)
class CatalogSettings:
    plan_code_prefix: str = "amplify-"
    add_on_code_prefix: str = "amplify-"
    sync_free_plans: bool = False
    plan_link_attribute: str = "recurlyPlanCode"
    quota_link_attribute: str = "recurlyAddOnCode"


@dataclass(frozen=True)
class AccountSettings:
    # "marketplace": amplify-user-{guid} when the marketplace owner is a user, else amplify-team-{guid};
    # "org": amplify-org-{org id}
    owner: Literal["marketplace", "org"] = "marketplace"
    create_missing: bool = False
    link_attribute: str = "recurlyAccountCode"


@dataclass(frozen=True)
class SubscriptionSettings:
    custom_field: str | None = None
    collection_method: Literal["automatic", "manual"] = "automatic"
    approve_pending: bool = True
    on_cancel: Literal["term_end", "terminate"] = "term_end"
    link_attribute: str = "recurlySubscriptionUuid"
    account_link_attribute: str = "recurlyAccountCode"


@dataclass(frozen=True)
class UsageSettings:
    source: Literal["traceability", "file"] = "traceability"
    file_path: Path | None = None
    window: Literal["hourly", "daily"] = "daily"
    settle_delay: timedelta = timedelta(hours=2)
    lookback: timedelta = timedelta(hours=72)
    skip_zero: bool = True
    # transaction statuses to count (empty: all), e.g. ["Success"]
    statuses: tuple[str, ...] = ()
    # How far back usage is counted at all (a first run, a backfill). None: the source's retention (Traceability
    # keeps transactions 7 days; a file has no retention). A window older than this is a finding, never skipped.
    max_backfill: timedelta | None = None
    # Traceability keeps "Transactions data: 7 Days" with no archival (reference §9.1): a window that starts
    # earlier can no longer be counted, only reported as uncountable.
    retention: timedelta = timedelta(days=7)
    # Explicit Lexus group_by limit: the 0.2 schema defaults to 100 terms and says nothing when it cuts.
    group_limit: int = 1000
    # Traffic from before the Recurly subscription started (approved before the first run, cron down): bill it,
    # dated at that start, or report it as a finding with its units.
    before_billing_start: Literal["bill", "report"] = "bill"
    # A re-count lower than what was posted is a finding unless this is true (a lost row must not refund usage).
    allow_downward_restatement: bool = False


@dataclass(frozen=True)
class SafetySettings:
    max_destructive_fraction: Decimal = Decimal("0.20")
    min_destructive_count: int = 5


@dataclass(frozen=True)
class StateSettings:
    path: Path = Path("./state/amplify-billing.db")
    # pairs whose newest Recurly usage every run compares with the journal (a restored or second journal is stale)
    verify_sample: int = 5


@dataclass(frozen=True)
class Settings:
    amplify: AmplifySettings
    recurly: RecurlySettings
    catalog: CatalogSettings = field(default_factory=CatalogSettings)
    accounts: AccountSettings = field(default_factory=AccountSettings)
    subscriptions: SubscriptionSettings = field(default_factory=SubscriptionSettings)
    usage: UsageSettings = field(default_factory=UsageSettings)
    safety: SafetySettings = field(default_factory=SafetySettings)
    state: StateSettings = field(default_factory=StateSettings)
    # where the settings came from, for messages
    source: str = "<defaults>"


# ---------------------------------------------------------------------------------------------------
# Loading. Everything below turns YAML + environment into the dataclasses above. The first problem
# found is raised as one ConfigError: ``file[:line]: dotted.key: what is wrong; what to do``.

CONFIG_ENV = "AMPLIFY_BILLING_CONFIG"
DEFAULT_CONFIG = Path("config.yaml")

# A location inside the configuration: section, key, then list indexes.
KeyPath = tuple[str | int, ...]

# ``$${`` is a literal ``${``; ``${NAME}`` is a reference; any other ``${`` is a mistake worth naming.
_REFERENCE = re.compile(r"\$\$\{|\$\{(?:([A-Za-z_][A-Za-z0-9_]*)\})?")
_DURATION = re.compile(r"(\d+)\s*([smhd])")
_DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_WHOLE = re.compile(r"[+-]?\d+")
# Recurly codes are at most 50 characters of [a-z0-9_-]; ours are prefix + 32 hex characters.
_CODE_PREFIX = re.compile(r"[a-z0-9_-]{1,20}")
_CUSTOM_FIELD = re.compile(r"[a-z0-9_-]{1,50}", re.IGNORECASE)

_SECTIONS: Mapping[str, type[Any]] = {
    "amplify": AmplifySettings,
    "recurly": RecurlySettings,
    "catalog": CatalogSettings,
    "accounts": AccountSettings,
    "subscriptions": SubscriptionSettings,
    "usage": UsageSettings,
    "safety": SafetySettings,
    "state": StateSettings,
}

# Secret fields and the key that reads them from a file instead.
_SECRET_FILES: Mapping[tuple[str, str], str] = {
    ("amplify", "client_secret"): "client_secret_file",
    ("amplify", "private_key"): "private_key_file",
    ("recurly", "api_key"): "api_key_file",
}

# Filled from amplify.region when not given.
_REGION_FILLED = ("central_url", "platform_url", "auth_url")

_REQUIRED_HINTS: Mapping[str, str] = {
    "amplify.tenant_id": "set it to your Amplify organization id",
    "amplify.client_id": "set it to the service account's client id",
    "recurly.api_key": "set it to a Recurly private API key, e.g. ${RECURLY_API_KEY}, or use recurly.api_key_file",
}


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
    data, lines = _read_yaml(text, name)
    return _settings(data, _Source(name, env, path.absolute().parent, lines))


def parse_settings(data: Mapping[str, Any], env: Mapping[str, str], *, source: str, base_dir: Path) -> Settings:
    """Validate an already-parsed configuration; ``source`` names it in messages, relative paths start at
    ``base_dir``. Raises ``ConfigError``."""
    return _settings(data, _Source(source, env, base_dir, {}))


# ---- YAML ------------------------------------------------------------------------------------------


def _read_yaml(text: str, name: str) -> tuple[object, dict[KeyPath, int]]:
    # One parse: compose the node tree (which has the marks), then construct the data from it exactly
    # as yaml.safe_load would.
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)  # checks for unprintable characters already
        node = loader.get_single_node()
        data = None if node is None else loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        # PyYAML's own str() quotes the offending line, which may hold a secret: use only the mark.
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark is not None else name
        problem = exc.problem or exc.context or "it cannot be parsed"
        raise ConfigError(f"{where}: invalid YAML: {problem}; fix the syntax there") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError(
            f"{name}:{line}: invalid YAML: unacceptable character #x{exc.character:04x}; remove it"
        ) from None
    except yaml.YAMLError:
        raise ConfigError(f"{name}: invalid YAML; check the file's syntax") from None
    finally:
        if loader is not None:
            loader.dispose()
    lines: dict[KeyPath, int] = {}
    if node is not None:
        _record_lines(node, (), lines, name, depth=0)
    return data, lines


def _record_lines(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], name: str, *, depth: int) -> None:
    # The schema is three levels deep; the limit also stops at recursive aliases.
    if depth > 3:
        return
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in first:
                # safe_load would silently keep the last one; the operator edited the other
                raise ConfigError(
                    _message(name, line, (*path, key), f"duplicate key (first on line {first[key]}); keep one")
                )
            first[key] = line
            lines[(*path, key)] = line
            _record_lines(value_node, (*path, key), lines, name, depth=depth + 1)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _record_lines(item, (*path, index), lines, name, depth=depth + 1)


# ---- messages ----------------------------------------------------------------------------------------


def _dotted(path: KeyPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _message(name: str, line: int | None, path: KeyPath, problem: str) -> str:
    where = f"{name}:{line}" if line is not None else name
    key = _dotted(path)
    return f"{where}: {key}: {problem}" if key else f"{where}: {problem}"


def _kind(value: object) -> str:
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


def _show(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


@dataclass(frozen=True)
class _Source:
    name: str
    env: Mapping[str, str]
    base_dir: Path
    lines: Mapping[KeyPath, int]

    def error(self, path: KeyPath, problem: str) -> ConfigError:
        # a missing key has no line of its own: point at its section
        line = None
        probe = path
        while probe and line is None:
            line = self.lines.get(probe)
            probe = probe[:-1]
        return ConfigError(_message(self.name, line, path, problem))


# ---- structure ---------------------------------------------------------------------------------------


def _section_keys(section: str) -> list[str]:
    names = [f.name for f in fields(_SECTIONS[section])]
    extra = [key for (sec, _), key in _SECRET_FILES.items() if sec == section and key not in names]
    return names + extra


def _unknown(key: str, path: KeyPath, valid: list[str]) -> str:
    # a key put in the wrong section is common, and more likely than a typo of a different key here
    for section in _SECTIONS:
        if key.lower() in _section_keys(section) and key.lower() not in valid:
            return f"unknown key; did you mean {section}.{key.lower()}?"
    close = difflib.get_close_matches(key.lower(), valid, n=1, cutoff=0.6)
    if close:
        return f"unknown key; did you mean {_dotted((*path, close[0]))}?"
    if not path:
        return f"unknown section; the sections are {', '.join(_SECTIONS)}"
    return f"unknown key; the keys of {_dotted(path)} are {', '.join(valid)}"


def _check_keys(data: Mapping[Any, Any], path: KeyPath, valid: list[str], src: _Source) -> None:
    for key in data:
        if not isinstance(key, str):
            raise src.error(path, f"found a key that is {_kind(key)}, not a name; quote it or remove it")
        if key not in valid:
            raise src.error((*path, key), _unknown(key, path, valid))


def _settings(data: object, src: _Source) -> Settings:
    if data is None:
        raise src.error((), "the configuration is empty; copy config.example.yaml and fill it in")
    if not isinstance(data, Mapping):
        raise src.error((), f"expected a mapping of sections ({', '.join(_SECTIONS)}), got {_kind(data)}")
    _check_keys(data, (), list(_SECTIONS), src)
    sections: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        raw = data.get(name)
        if raw is None:  # absent, or present with every key commented out
            raw = {}
        if not isinstance(raw, Mapping):
            raise src.error((name,), f"expected a mapping of keys, got {_kind(raw)}; indent its keys below it")
        sections[name] = _section(cls, raw, (name,), src)
    return Settings(**sections, source=src.name)


def _without_none(tp: Any) -> Any:
    """``X | None`` -> ``X``: None is how a field says "not set", never a value to convert to."""
    if get_origin(tp) in (Union, types.UnionType):
        arms = [arm for arm in get_args(tp) if arm is not type(None)]
        if len(arms) == 1:
            return arms[0]
    return tp


def _section(cls: type[Any], raw: Mapping[Any, Any], path: KeyPath, src: _Source) -> Any:
    section = str(path[0])
    _check_keys(raw, path, _section_keys(section), src)
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for spec in fields(cls):
        key_path = (*path, spec.name)
        tp = _without_none(hints[spec.name])
        required = spec.default is MISSING and spec.default_factory is MISSING
        required_hint = _REQUIRED_HINTS.get(_dotted(key_path), "set it")
        file_key = _SECRET_FILES.get((section, spec.name))
        if file_key is not None:
            value = _secret(raw, key_path, file_key, src)
        elif raw.get(spec.name) is None:  # absent or empty: the default
            value = None
        elif required and raw[spec.name] == "" and spec.name not in _REGION_FILLED:
            raise src.error(key_path, f"is empty; {required_hint}")
        else:
            value = _convert(tp, raw[spec.name], key_path, src)
            rule = _RULES.get(_dotted(key_path))
            problem = rule(value) if rule is not None else None
            if problem is not None:
                raise src.error(key_path, problem)
        if value is not None:
            values[spec.name] = value
        elif required:
            if not (section == "amplify" and spec.name in _REGION_FILLED):
                raise src.error(key_path, f"missing; {required_hint}")
        elif tp is Path and isinstance(spec.default, Path):
            # a default path is relative to the configuration file too, not to wherever cron starts
            values[spec.name] = _under(spec.default, src)
    hook = _HOOKS.get(section)
    if hook is not None:
        hook(values, raw, path, src)
    return cls(**values)


# ---- values ------------------------------------------------------------------------------------------


def _expand(text: str, path: KeyPath, src: _Source, *, secret: bool) -> str:
    """Replace ``${NAME}`` from the environment."""
    parts: list[str] = []
    end = 0
    for match in _REFERENCE.finditer(text):
        parts.append(text[end : match.start()])
        end = match.end()
        name = match.group(1)
        if match.group(0) == "$${":
            parts.append("${")
        elif name is None:
            raise src.error(
                path,
                "contains '${' that does not start a ${NAME} reference (NAME: letters, digits and _, closed by '}'); "
                "write $${ for a literal ${",
            )
        elif name not in src.env:
            file_key = _SECRET_FILES.get((str(path[0]), str(path[-1]))) if secret else None
            other = f", or use {path[0]}.{file_key} instead" if file_key else ""
            raise src.error(path, f"environment variable {name} is not set; export it{other}")
        else:
            parts.append(src.env[name])
    parts.append(text[end:])
    return "".join(parts)


def _string(
    value: object,
    path: KeyPath,
    src: _Source,
    *,
    secret: bool = False,
    empty: str = "give it a value, or remove the key to use the default",
) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and not secret:
        # an unquoted numeric id (tenant_id: 100000000000001) is meant as text
        return str(value)
    if not isinstance(value, str):
        raise src.error(path, f"expected a string, got {_kind(value)}" + ("; quote it" if secret else ""))
    text = _expand(value, path, src, secret=secret)
    if not text:
        whole = _REFERENCE.fullmatch(value)
        if whole is not None and whole.group(1):
            raise src.error(path, f"environment variable {whole.group(1)} is empty; set it to the value")
        raise src.error(path, f"is empty; {empty}")
    return text


def _secret(raw: Mapping[Any, Any], path: KeyPath, file_key: str, src: _Source) -> Secret | None:
    section, name = str(path[0]), str(path[-1])
    direct, from_file = raw.get(name), raw.get(file_key)
    file_path = (section, file_key)
    if direct is not None and from_file is not None:
        raise src.error(file_path, f"both {section}.{name} and {section}.{file_key} are set; keep one")
    if direct is not None:
        if isinstance(direct, Secret):
            return direct
        text = _string(direct, path, src, secret=True, empty="give it a value")
        if name == "private_key":
            _check_pem(text, path, src, where="the value (not shown)")
        return Secret(text)
    if from_file is None:
        return None
    target = _path(from_file, file_path, src)
    try:
        content = target.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise src.error(file_path, f"{target} is not UTF-8 text; point it at the file that holds the {name}") from None
    except OSError as exc:
        raise src.error(
            file_path,
            f"cannot read {target}: {exc.strerror}; check the path (relative paths start at the configuration "
            "file's directory) and its permissions",
        ) from None
    if name == "private_key":
        _check_pem(content, file_path, src, where=str(target))
        return Secret(content)
    # editors and `echo` add a final newline that is not part of the credential
    content = content.rstrip("\r\n")
    if not content:
        raise src.error(file_path, f"{target} is empty; put the {name} in it")
    return Secret(content)


def _check_pem(text: str, path: KeyPath, src: _Source, *, where: str) -> None:
    if not re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----", text):
        raise src.error(
            path,
            f"{where} is not a PEM private key (no '-----BEGIN PRIVATE KEY-----' line); use the private key of "
            "the service account's key pair",
        )


def _under(path: Path, src: _Source) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else src.base_dir / path


def _path(value: object, path: KeyPath, src: _Source) -> Path:
    if isinstance(value, os.PathLike):
        return _under(Path(value), src)
    return _under(Path(_string(value, path, src)), src)


def _bool(value: object, path: KeyPath, src: _Source) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = _expand(value, path, src, secret=False).strip().lower()
        if text in ("true", "false"):
            return text == "true"
        raise src.error(path, f"expected true or false, got {_show(value)}; write true or false without quotes")
    raise src.error(path, f"expected true or false, got {_kind(value)}")


def _int(value: object, path: KeyPath, src: _Source) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = _expand(value, path, src, secret=False).strip()
        if _WHOLE.fullmatch(text):
            return int(text)
        raise src.error(path, f"expected a whole number, got {_show(text)}")
    if isinstance(value, float):
        raise src.error(path, f"expected a whole number, got {value:g}")
    raise src.error(path, f"expected a whole number, got {_kind(value)}")


def _float(value: object, path: KeyPath, src: _Source) -> float:
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        text = _expand(value, path, src, secret=False).strip()
        try:
            number = float(text)
        except ValueError:
            raise src.error(path, f"expected a number, got {_show(text)}") from None
    else:
        raise src.error(path, f"expected a number, got {_kind(value)}")
    if not math.isfinite(number):
        raise src.error(path, "expected a finite number")
    return number


def _duration(value: object, path: KeyPath, src: _Source) -> timedelta:
    hint = "a duration such as 45s, 90m, 2h or 3d, or a whole number of seconds"
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        text = _expand(value, path, src, secret=False).strip().lower()
        if _WHOLE.fullmatch(text):
            return timedelta(seconds=int(text))
        match = _DURATION.fullmatch(text)
        if match:
            return timedelta(**{_DURATION_UNITS[match.group(2)]: int(match.group(1))})
        raise src.error(path, f"expected {hint}, got {_show(text)}")
    raise src.error(path, f"expected {hint}, got {_kind(value)}")


def _fraction(value: object, path: KeyPath, src: _Source) -> Decimal:
    hint = "a fraction from 0 to 1 such as 0.2, or a percentage such as 20%"
    number: Decimal | None = None
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        # via str: 0.2 must become Decimal("0.2"), not the binary float's expansion
        number = Decimal(str(value))
    elif isinstance(value, str):
        text = _expand(value, path, src, secret=False).strip()
        percent = text.endswith("%")
        try:
            number = Decimal(text.removesuffix("%").strip())
        except InvalidOperation:
            raise src.error(path, f"expected {hint}, got {_show(text)}") from None
        if percent:
            number = number / 100
    else:
        raise src.error(path, f"expected {hint}, got {_kind(value)}")
    if not number.is_finite() or not Decimal(0) <= number <= Decimal(1):
        raise src.error(path, f"expected {hint}, got {_show(value) if isinstance(value, str) else value}")
    return number


def _choice(allowed: tuple[str, ...], value: object, path: KeyPath, src: _Source) -> str:
    text = _expand(value, path, src, secret=False) if isinstance(value, str) else value
    if isinstance(text, str) and text in allowed:
        return text
    got = _show(text) if isinstance(text, str) else _kind(text)
    raise src.error(path, f"expected one of {', '.join(allowed)}, got {got}")


def _strings(value: object, path: KeyPath, src: _Source) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        example = f"[{value}]" if isinstance(value, str) and len(value) <= 40 else "[a, b]"
        raise src.error(path, f"expected a list of strings, got {_kind(value)}; write it as {example}")
    return tuple(_string(item, (*path, index), src, empty="remove the empty item") for index, item in enumerate(value))


def _convert(tp: Any, value: object, path: KeyPath, src: _Source) -> Any:
    if tp is str:
        return _string(value, path, src)
    if tp is bool:
        return _bool(value, path, src)
    if tp is int:
        return _int(value, path, src)
    if tp is float:
        return _float(value, path, src)
    if tp is Path:
        return _path(value, path, src)
    if tp is timedelta:
        return _duration(value, path, src)
    if tp is Decimal:
        return _fraction(value, path, src)
    if get_origin(tp) is Literal:
        return _choice(get_args(tp), value, path, src)
    if get_origin(tp) is tuple:
        return _strings(value, path, src)
    raise TypeError(f"settings: no conversion for {tp!r} ({_dotted(path)})")


# ---- rules on single values --------------------------------------------------------------------------


def _between(low: int, high: int | None, why: str = "") -> Callable[[Any], str | None]:
    def rule(value: Any) -> str | None:
        if value >= low and (high is None or value <= high):
            return None
        wanted = f"from {low} to {high}" if high is not None else f"{low} or more"
        return f"must be {wanted}, got {value}" + (f" ({why})" if why else "")

    return rule


def _positive(value: Any) -> str | None:
    return None if value > 0 else f"must be more than 0, got {value:g}"


def _duration_rule(*, allow_zero: bool) -> Callable[[Any], str | None]:
    def rule(value: Any) -> str | None:
        if value > timedelta(0) or (allow_zero and value == timedelta(0)):
            return None
        seconds = int(value.total_seconds())
        return f"must be {'0 or more' if allow_zero else 'more than 0'}, got {seconds} seconds"

    return rule


def _url(*, path_allowed: bool) -> Callable[[Any], str | None]:
    def rule(value: Any) -> str | None:
        try:
            parts = urlsplit(value)
            host = parts.hostname
            parts.port  # noqa: B018 -- raises ValueError on a bad port
        except ValueError:
            return f"{_show(value)} has an invalid host or port; use https://host[:port]"
        if "@" in parts.netloc:
            # not echoed: the part before @ is a password; URLs also end up in "unreachable" messages
            return "contains credentials (user:password@); remove them, the tool authenticates on its own"
        if any(ch.isspace() for ch in value):
            return f"{_show(value)} contains whitespace; remove it"
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not host:
            return f"{_show(value)} is not an http(s) URL; use https://host"
        if scheme == "http" and not _loopback(host):
            return (
                f"{_show(value)}: plain http is allowed only for loopback hosts (127.0.0.0/8, localhost, ::1); "
                "use https://"
            )
        if not path_allowed and parts.path not in ("", "/"):
            return f"{_show(value)}: only the scheme, host and port are used; remove the path {parts.path!r}"
        if parts.query or parts.fragment:
            return f"{_show(value)}: remove the query or fragment"
        return None

    return rule


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _code_prefix(value: Any) -> str | None:
    if _CODE_PREFIX.fullmatch(value):
        return None
    # an empty prefix would make every Recurly plan look like one of ours
    return f"{_show(value)} must be 1 to 20 characters of a-z, 0-9, _ and - (codes are the prefix + 32 hex, ≤ 50)"


def _custom_field(value: Any) -> str | None:
    if _CUSTOM_FIELD.fullmatch(value):
        return None
    return f"{_show(value)} must be 1 to 50 characters of letters, digits, _ and - (a Recurly custom field name)"


_RULES: Mapping[str, Callable[[Any], str | None]] = {
    "amplify.central_url": _url(path_allowed=True),
    "amplify.auth_url": _url(path_allowed=True),
    "amplify.platform_url": _url(path_allowed=True),
    "amplify.page_size": _between(1, 1000, "the SDK pages by 100; the server maximum is not documented"),
    "amplify.rate_limit_per_minute": _between(1, None),
    "amplify.timeout_seconds": _positive,
    # the gateway points the client's connection at a host and port; a path would be ignored
    "recurly.api_url": _url(path_allowed=False),
    "recurly.timeout_seconds": _positive,
    "recurly.max_retries": _between(0, None),
    "recurly.concurrency": _between(1, 16),
    "catalog.plan_code_prefix": _code_prefix,
    "catalog.add_on_code_prefix": _code_prefix,
    "subscriptions.custom_field": _custom_field,
    "usage.settle_delay": _duration_rule(allow_zero=True),
    "usage.lookback": _duration_rule(allow_zero=True),
    "usage.max_backfill": _duration_rule(allow_zero=False),
    "usage.retention": _duration_rule(allow_zero=False),
    "usage.group_limit": _between(2, 65536, "Lexus cuts a grouping at this many terms"),
    "state.verify_sample": _between(0, 1000),
    "safety.min_destructive_count": _between(0, None),
}


# ---- rules across keys of one section -----------------------------------------------------------------


def _amplify_rules(values: dict[str, Any], raw: Mapping[Any, Any], path: KeyPath, src: _Source) -> None:
    urls = REGION_URLS[values.get("region", "us")]
    for name, url in zip(_REGION_FILLED, urls, strict=True):
        values.setdefault(name, url)  # an explicit URL wins, one by one
    secret, key = values.get("client_secret"), values.get("private_key")
    if secret is not None and key is not None:
        one = "client_secret_file" if raw.get("client_secret_file") is not None else "client_secret"
        other = "private_key_file" if raw.get("private_key_file") is not None else "private_key"
        raise src.error(
            (*path, other),
            f"amplify.{one} and amplify.{other} are both set; a service account authenticates with one of them: "
            "keep the one that matches its type",
        )
    if secret is None and key is None:
        raise src.error(
            (*path, "client_secret"),
            "missing; set amplify.client_secret (or client_secret_file) for a service account with a client "
            "secret, or amplify.private_key_file for one with a key pair",
        )


def _usage_rules(values: dict[str, Any], raw: Mapping[Any, Any], path: KeyPath, src: _Source) -> None:
    source = values.get("source", "traceability")
    if source == "file" and values.get("file_path") is None:
        raise src.error(
            (*path, "file_path"), "missing; usage.source is file, so set usage.file_path to a .csv or .jsonl file"
        )
    if source != "file" and values.get("file_path") is not None:
        raise src.error(
            (*path, "file_path"),
            f"is read only when usage.source is file (it is {source}); set usage.source: file, or remove it",
        )


_HOOKS: Mapping[str, Callable[[dict[str, Any], Mapping[Any, Any], KeyPath, _Source], None]] = {
    "amplify": _amplify_rules,
    "usage": _usage_rules,
}
