"""Settings: YAML + environment -> frozen, validated pydantic models.

The shapes in ``models`` are the contract every other module relies on. ``load_settings`` turns a YAML file
into them; a bad file raises one ``ConfigError`` naming every problem as ``file:line: dotted.key: ...``.
Secrets are ``Secret`` values whose ``repr``/``str`` never show the value. Importing this package loads no
YAML parser; only ``load_settings`` does, when it reads a file.
"""

from amplify_billing.settings.loader import (
    CONFIG_ENV,
    DEFAULT_CONFIG,
    KeyPath,
    load_settings,
    parse_settings,
    resolve_config_path,
)
from amplify_billing.settings.models import (
    REGION_URLS,
    AccountSettings,
    AmplifyRegion,
    AmplifySettings,
    CatalogSettings,
    RecurlySettings,
    SafetySettings,
    Settings,
    StateSettings,
    SubscriptionSettings,
    UsageSettings,
)
from amplify_billing.settings.secret import Secret

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG",
    "REGION_URLS",
    "AccountSettings",
    "AmplifyRegion",
    "AmplifySettings",
    "CatalogSettings",
    "KeyPath",
    "RecurlySettings",
    "SafetySettings",
    "Secret",
    "Settings",
    "StateSettings",
    "SubscriptionSettings",
    "UsageSettings",
    "load_settings",
    "parse_settings",
    "resolve_config_path",
]
