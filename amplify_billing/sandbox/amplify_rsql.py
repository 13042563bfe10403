"""The subset of Amplify's RSQL ``query`` filter that the Amplify emulator evaluates.

Supported (reference/amplify-api.md §2.3): comparisons ``==``, ``!=`` (case-insensitive, with the
wildcards ``*`` for any run of characters and ``_`` for one character), ``=in=(…)`` and ``=out=(…)``
(case-insensitive, no wildcards), joined by ``;`` (and) and ``,`` (or) with ``;`` binding tighter,
on dotted field paths such as ``attributes.billingSystem`` or ``metadata.scope.name``. A path that
meets a list matches when any element does (``tags``, ``metadata.references.id``).

The special property ``scopeResource.*`` reads the resource a scoped resource lives under (docs.axway.com
amplify-central, integrate_with_central/cli_central/cli_command_reference.md, "special properties"); the emulator
hands it in beside the resource. ``metadata.scope.name`` is not a listed query field (reference §9.2): it is
refused, so that nothing comes to rely on a filter the real server may ignore.

Everything else the real server accepts (parentheses, ``and``/``or`` keywords, ``<``, ``=with=``,
case-sensitive ``===``) is refused with ``RsqlError`` rather than half-evaluated: a filter the
emulator misreads would make a test pass that the real server would fail.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Predicate = Callable[[Mapping[str, Any]], bool]

SUPPORTED_OPERATORS = ("==", "!=", "=in=", "=out=")
# fields the documentation does not list as query fields, and the documented way instead
UNLISTED_FIELDS = {
    "metadata.scope": "filter on scopeResource.name, or list within the scope (/productplans/{plan}/quotas)",
}
_SELECTOR = re.compile(r"[A-Za-z_@$][A-Za-z0-9_.@$-]*")
# RSQL operators: ==, !=, <, <=, >, >=, and =name= (FIQL style); === and !== are Amplify's case-sensitive ones
_OPERATOR = re.compile(r"===|!==|==|!=|<=|>=|<|>|=[a-z]+=")
_UNRESERVED = re.compile(r"[^\"'();,=!~<>\s]+")


class RsqlError(ValueError):
    """A query the emulator cannot evaluate; the message says where and why."""


@dataclass(frozen=True)
class Comparison:
    selector: str
    operator: str
    values: tuple[str, ...]

    def matches(self, resource: Mapping[str, Any]) -> bool:
        found = [_text(v) for v in _values_at(resource, self.selector)]
        if self.operator == "==":
            return any(_like(value, self.values[0]) for value in found if value is not None)
        if self.operator == "!=":
            return not any(_like(value, self.values[0]) for value in found if value is not None)
        wanted = {v.casefold() for v in self.values}
        hit = any(value is not None and value.casefold() in wanted for value in found)
        return hit if self.operator == "=in=" else not hit


def compile_query(query: str) -> Predicate:
    """A predicate over resources for ``query``; raises ``RsqlError`` for anything outside the subset."""
    if not query.strip():
        raise RsqlError("the query is empty")
    disjuncts = [[_comparison(part) for part in _split(branch, ";")] for branch in _split(query, ",")]

    def predicate(resource: Mapping[str, Any]) -> bool:
        return any(all(c.matches(resource) for c in branch) for branch in disjuncts)

    return predicate


def _split(text: str, separator: str) -> list[str]:
    """Split at ``separator`` outside quotes and parentheses (the commas of ``=in=(a,b)`` stay put)."""
    parts: list[str] = []
    depth = 0
    quote: str | None = None
    start = 0
    for index, char in enumerate(text):
        if quote is not None:
            if char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise RsqlError(f"unbalanced ')' at position {index + 1}")
        elif char == separator and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    if quote is not None:
        raise RsqlError(f"unterminated {quote}-quoted value")
    if depth != 0:
        raise RsqlError("unbalanced '('")
    parts.append(text[start:])
    return parts


def _comparison(text: str) -> Comparison:
    source = text.strip()
    if not source:
        raise RsqlError("empty comparison (two separators in a row, or one at an end)")
    if source.startswith("("):
        raise RsqlError(f"parenthesised groups are not supported by the emulator: {source!r}")
    selector = _SELECTOR.match(source)
    if selector is None:
        raise RsqlError(f"expected a field name at {source!r}")
    rest = source[selector.end() :]
    operator = _OPERATOR.match(rest)
    if operator is None:
        raise RsqlError(f"expected an operator after {selector.group()!r} in {source!r}")
    op = operator.group()
    for field, instead in UNLISTED_FIELDS.items():
        if selector.group() == field or selector.group().startswith(field + "."):
            raise RsqlError(f"{selector.group()!r} is not a query field; {instead}")
    if op not in SUPPORTED_OPERATORS:
        raise RsqlError(
            f"operator {op!r} in {source!r} is not supported by the emulator (it supports "
            + ", ".join(SUPPORTED_OPERATORS)
            + ")"
        )
    argument = rest[operator.end() :]
    if op in ("=in=", "=out="):
        if not (argument.startswith("(") and argument.endswith(")")):
            raise RsqlError(f"{op} needs a parenthesised list of values in {source!r}")
        values = tuple(_value(v, source) for v in _split(argument[1:-1], ","))
    else:
        values = (_value(argument, source),)
    return Comparison(selector.group(), op, values)


def _value(text: str, source: str) -> str:
    value = text.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        inner = value[1:-1]
        if value[0] in inner:
            raise RsqlError(f"unescaped quote inside {value} in {source!r}")
        return inner
    if not value or not _UNRESERVED.fullmatch(value):
        raise RsqlError(f"value {value!r} in {source!r} must be quoted (it is empty or holds reserved characters)")
    return value


def _values_at(resource: Mapping[str, Any], path: str) -> list[Any]:
    """Every value at a dotted path; lists on the way fan out (any element may match)."""
    nodes: list[Any] = [resource]
    for part in path.split("."):
        following: list[Any] = []
        for node in nodes:
            if isinstance(node, Mapping) and part in node:
                child = node[part]
                following.extend(child if isinstance(child, list) else [child])
        nodes = following
    return nodes


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, Mapping | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _like(value: str, pattern: str) -> bool:
    if "*" not in pattern and "_" not in pattern:
        return value.casefold() == pattern.casefold()
    regex = "".join(".*" if c == "*" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.IGNORECASE | re.DOTALL) is not None
