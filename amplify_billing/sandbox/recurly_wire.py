"""Wire conventions of the Recurly v2021-02-25 emulator: errors, timestamps, money, request bodies, paging.

Everything here is pure and HTTP-free, so the state module and the server share one definition of what the
real service answers: ``{"error": {"type", "message", "params"}}`` bodies, ``YYYY-MM-DDTHH:MM:SSZ`` timestamps
(the official client cannot parse fractional seconds), ``unit_amount`` as JSON numbers and
``unit_amount_decimal`` as exact strings, and cursor paging that stays stable while records are added.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar
from urllib.parse import urlencode

from amplify_billing.amplify.parse import parse_timestamp

T = TypeVar("T")

OPEN_TIER_END = 999_999_999  # how the API answers the open last tier
MAX_PRICE = Decimal(1_000_000)
LIMIT_DEFAULT = 20
LIMIT_MAX = 200


# ---- errors ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParamProblem:
    param: str
    message: str

    @property
    def sentence(self) -> str:
        """``add_ons[0].code`` + ``is invalid`` -> ``Add ons[0].code is invalid`` (the API's message style)."""
        label = self.param.replace("_", " ")
        return f"{label[:1].upper()}{label[1:]} {self.message}"


class RecurlyProblem(Exception):
    """An error answer of the API. Raised anywhere in a handler; the server turns it into the response."""

    def __init__(self, status: int, error_type: str, message: str, params: Sequence[ParamProblem] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.params = tuple(params)

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.error_type, "message": self.message}
        if self.params:
            error["params"] = [{"param": p.param, "message": p.message} for p in self.params]
        return {"error": error}


def not_found(kind: str, ref: str) -> RecurlyProblem:
    """404 in the API's words: ``Couldn't find Plan with code = gold``."""
    if "-" in ref and ref.split("-", 1)[0] in ("code", "name", "uuid", "subdomain"):
        what, value = ref.split("-", 1)
    else:
        what, value = "id", ref
    return RecurlyProblem(404, "not_found", f"Couldn't find {kind} with {what} = {value}")


def bad_request(message: str) -> RecurlyProblem:
    return RecurlyProblem(400, "bad_request", message)


def validation(param: str, message: str) -> RecurlyProblem:
    problem = ParamProblem(param, message)
    return RecurlyProblem(422, "validation", problem.sentence, [problem])


@dataclass
class Problems:
    """Collects every validation problem of one request, so a 422 lists them all as the API does."""

    items: list[ParamProblem] = field(default_factory=list)

    def add(self, param: str, message: str) -> None:
        self.items.append(ParamProblem(param, message))

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self) -> None:
        if self.items:
            message = ", ".join(p.sentence for p in self.items)
            raise RecurlyProblem(422, "validation", message, self.items)


# ---- timestamps and money -------------------------------------------------------------------------


def whole_seconds(moment: datetime) -> datetime:
    """Stored times are whole UTC seconds, so what a client reads back is exactly what filters compare."""
    if moment.tzinfo is None:
        raise ValueError("the emulator's clock must return timezone-aware datetimes")
    return moment.astimezone(UTC).replace(microsecond=0)


def fmt_time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 as the API accepts it (``Z``, an offset, or no zone meaning UTC); None when unreadable. Read as
    the client's Amplify timestamps are (``amplify/parse.parse_timestamp``), then cut to whole seconds."""
    moment = parse_timestamp(value.replace("z", "Z") if isinstance(value, str) else value)
    return None if moment is None else whole_seconds(moment)


def decimal_places(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def decimal_text(value: Decimal) -> str:
    """Exact text without exponent: Decimal("0.0025") -> "0.0025", Decimal("1E+2") -> "100"."""
    return format(value.normalize(), "f")


def to_decimal(value: Any) -> Decimal | None:
    """A JSON number or numeric string as an exact Decimal (floats through repr, so 0.1 stays 0.1)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        if isinstance(value, float):
            result = Decimal(repr(value))
        elif isinstance(value, int | str):
            result = Decimal(str(value).strip())
        else:
            return None
    except InvalidOperation:
        return None
    return result if result.is_finite() else None


# ---- request bodies -------------------------------------------------------------------------------


def json_object(body: Any, what: str = "request body") -> Mapping[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, Mapping):
        raise bad_request(f"The {what} must be a JSON object")
    return body


@dataclass
class BodyReader:
    """Typed reads of one JSON object; every problem is collected under its dotted parameter name."""

    body: Mapping[str, Any]
    problems: Problems
    prefix: str = ""

    def param(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def has(self, name: str) -> bool:
        return name in self.body and self.body[name] is not None

    def string(
        self,
        name: str,
        *,
        required: bool = False,
        max_length: int | None = None,
        pattern: str | None = None,
        choices: Iterable[str] | None = None,
        flags: int = 0,
    ) -> str | None:
        value = self.body.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                self.problems.add(self.param(name), "can't be blank")
            return None
        allowed = tuple(choices) if choices is not None else None

        def checked(text: Any) -> str:
            _must(isinstance(text, str), "is invalid")
            _must(max_length is None or len(text) <= max_length, f"is too long (maximum is {max_length} characters)")
            _must(pattern is None or re.fullmatch(pattern, text, flags) is not None, "is invalid")
            _must(allowed is None or text in allowed, f"is not included in the list ({', '.join(allowed or ())})")
            return str(text)

        return self._read(name, checked)

    def integer(self, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int | None:
        def checked(value: Any) -> int:
            whole = not isinstance(value, bool) and isinstance(value, int | float) and int(value) == value
            _must(whole, "must be an integer")
            number = int(value)
            _must(minimum is None or number >= minimum, f"must be greater than or equal to {minimum}")
            _must(maximum is None or number <= maximum, f"must be less than or equal to {maximum}")
            return number

        return self._read(name, checked)

    def boolean(self, name: str) -> bool | None:
        def checked(value: Any) -> bool:
            _must(isinstance(value, bool), "must be true or false")
            return bool(value)

        return self._read(name, checked)

    def money(
        self, name: str, *, places: int, maximum: Decimal = MAX_PRICE, minimum: Decimal = Decimal(0)
    ) -> Decimal | None:
        def checked(raw: Any) -> Decimal:
            value = to_decimal(raw)
            if value is None:
                raise _Invalid("is not a number")
            _must(minimum <= value <= maximum, f"must be between {minimum} and {maximum}")
            _must(decimal_places(value) <= places, f"must have at most {places} decimal places")
            return value

        return self._read(name, checked)

    def time(self, name: str) -> datetime | None:
        def checked(raw: Any) -> datetime:
            value = parse_time(raw)
            if value is None:
                raise _Invalid("is not a valid ISO 8601 date-time")
            return value

        return self._read(name, checked)

    def objects(self, name: str) -> list[tuple[str, Mapping[str, Any]]] | None:
        """A list of JSON objects, each with its parameter prefix (``add_ons[2].``)."""

        def checked(raw: Any) -> list[tuple[str, Mapping[str, Any]]]:
            _must(isinstance(raw, list) and all(isinstance(item, Mapping) for item in raw), "must be a list of objects")
            return [(f"{self.param(name)}[{index}].", item) for index, item in enumerate(raw)]

        return self._read(name, checked)

    def nested(self, name: str) -> BodyReader | None:
        def checked(raw: Any) -> BodyReader:
            _must(isinstance(raw, Mapping), "must be an object")
            return BodyReader(raw, self.problems, f"{self.param(name)}.")

        return self._read(name, checked)

    def _read(self, name: str, checked: Callable[[Any], T]) -> T | None:
        """``name``'s value through ``checked``; None when it is absent, or when ``checked`` finds it invalid (the
        problem is collected under the parameter's name, so the request's 422 lists it with the others)."""
        raw = self.body.get(name)
        if raw is None:
            return None
        try:
            return checked(raw)
        except _Invalid as invalid:
            self.problems.add(self.param(name), invalid.message)
            return None


def read_whole(body: Mapping[str, Any], read: Callable[[BodyReader], T | None]) -> T:
    """One value ``read`` from a whole request body; every problem it finds is answered together as one 422."""
    problems = Problems()
    value = read(BodyReader(body, problems))
    problems.raise_if_any()
    assert value is not None, "a read that gives no value has found a problem"
    return value


class _Invalid(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _must(condition: bool, message: str) -> None:
    if not condition:
        raise _Invalid(message)


# ---- paging ---------------------------------------------------------------------------------------

SortKey = tuple[datetime, int]  # (value of the sort field, insertion sequence as the tie-breaker)


@dataclass(frozen=True)
class ListQuery:
    limit: int
    order: str
    sort: str
    begin: datetime | None
    end: datetime | None
    after: SortKey | None
    ids: frozenset[str] | None


def _encode_cursor(key: SortKey) -> str:
    raw = f"{int(key[0].timestamp())}:{key[1]}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> SortKey:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        seconds, seq = raw.split(":")
        return datetime.fromtimestamp(int(seconds), UTC), int(seq)
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):
        raise bad_request(f"The cursor {cursor!r} is invalid; use the next link of the previous page") from None


def parse_list_query(query: Mapping[str, list[str]], *, sorts: Sequence[str], default_sort: str) -> ListQuery:
    def arg(name: str) -> str | None:
        values = query.get(name)
        return values[0] if values else None

    limit_text = arg("limit")
    try:
        limit = LIMIT_DEFAULT if limit_text in (None, "") else int(str(limit_text))
    except ValueError:
        raise bad_request(f"limit must be an integer between 1 and {LIMIT_MAX}") from None
    if not 1 <= limit <= LIMIT_MAX:
        raise bad_request(f"limit must be an integer between 1 and {LIMIT_MAX}")
    order = arg("order") or "desc"
    if order not in ("asc", "desc"):
        raise bad_request("order must be asc or desc")
    sort = arg("sort") or default_sort
    if sort not in sorts:
        raise bad_request(f"sort must be one of {', '.join(sorts)}")
    bounds: list[datetime | None] = []
    for name in ("begin_time", "end_time"):
        text = arg(name)
        moment = parse_time(text) if text else None
        if text and moment is None:
            raise bad_request(f"{name} must be an ISO 8601 date-time")
        bounds.append(moment)
    cursor = arg("cursor")
    ids_text = arg("ids")
    ids = frozenset(i.strip() for i in ids_text.split(",") if i.strip()) if ids_text else None
    if ids is not None and len(ids) > LIMIT_MAX:
        raise bad_request(f"ids accepts at most {LIMIT_MAX} ids")
    if ids is not None:
        # OpenAPI ``ids``: "cannot be used with any other ordering or filtering parameters (limit, order, sort,
        # begin_time, end_time, etc)"; "results are all returned at once" (one page, up to the 200 ids)
        mixed = [name for name in ("limit", "order", "sort", "begin_time", "end_time") if arg(name) not in (None, "")]
        if mixed:
            raise bad_request(f"ids cannot be used with {', '.join(mixed)}")
        limit = LIMIT_MAX
    return ListQuery(limit, order, sort, bounds[0], bounds[1], _decode_cursor(cursor) if cursor else None, ids)


@dataclass(frozen=True)
class Page:
    body: dict[str, Any]
    total: int  # matching records across all pages (Recurly-Total-Records)


def paginate(
    items: Iterable[T],
    q: ListQuery,
    *,
    key: Callable[[T], SortKey],
    ident: Callable[[T], str],
    render: Callable[[T], dict[str, Any]],
    path: str,
    query: Mapping[str, list[str]],
    cut: int | None = None,
) -> Page:
    """One page of ``items`` in the API's list format.

    Keyset paging: the cursor names the last (sort value, sequence) served, and the next page starts strictly
    after it, so records created while a client walks the pages neither repeat nor shift others out.
    ``cut``: serve only the first ``cut`` matching records (a listing cut short, as by a fault between pages):
    paging ends with ``has_more: false`` while the total still counts every match.
    """
    chosen = [
        item
        for item in items
        if (q.ids is None or ident(item) in q.ids)
        and (q.begin is None or key(item)[0] >= q.begin)
        and (q.end is None or key(item)[0] <= q.end)
    ]
    descending = q.order == "desc"
    chosen.sort(key=key, reverse=descending)
    if q.ids is not None:
        # OpenAPI ``ids``: "Records are returned in an arbitrary order": not by date, so a client relying on one fails
        chosen.sort(key=lambda item: hashlib.sha256(ident(item).encode()).hexdigest())
    total = len(chosen)
    if cut is not None:
        chosen = chosen[:cut]
    if q.after is not None:
        after = q.after
        chosen = [item for item in chosen if (key(item) < after if descending else key(item) > after)]
    served = chosen[: q.limit]
    has_more = len(chosen) > q.limit
    next_path: str | None = None
    if has_more:
        params = [(name, value) for name, values in query.items() if name != "cursor" for value in values]
        params.append(("cursor", _encode_cursor(key(served[-1]))))
        next_path = f"{path}?{urlencode(params)}"
    body = {"object": "list", "has_more": has_more, "next": next_path, "data": [render(item) for item in served]}
    return Page(body, total)
