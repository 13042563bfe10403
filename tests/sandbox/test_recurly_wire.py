"""The emulator's typed reads of a request body: each bad value is one problem under its dotted parameter name, in
the API's words, and reads as None; an absent value reads as None with no problem."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from amplify_billing.sandbox.recurly_wire import BodyReader, Problems, RecurlyProblem, read_whole


def _read(body: dict[str, Any], read: str, *args: Any, **kwargs: Any) -> tuple[Any, list[tuple[str, str]]]:
    problems = Problems()
    reader = BodyReader({"item": body}, problems).nested("item")
    assert reader is not None
    value = getattr(reader, read)("v", *args, **kwargs)
    return value, [(p.param, p.message) for p in problems.items]


@pytest.mark.parametrize(
    ("value", "read", "kwargs", "problem"),
    [
        (5, "string", {}, "is invalid"),
        ("   ", "string", {"required": True}, "can't be blank"),
        ("abcd", "string", {"max_length": 3}, "is too long (maximum is 3 characters)"),
        ("a b", "string", {"pattern": r"[a-z]+"}, "is invalid"),
        ("c", "string", {"choices": ("a", "b")}, "is not included in the list (a, b)"),
        (1.5, "integer", {}, "must be an integer"),
        (True, "integer", {}, "must be an integer"),
        (0, "integer", {"minimum": 1}, "must be greater than or equal to 1"),
        (9, "integer", {"maximum": 8}, "must be less than or equal to 8"),
        ("yes", "boolean", {}, "must be true or false"),
        ("ten", "money", {"places": 2}, "is not a number"),
        (-1, "money", {"places": 2}, "must be between 0 and 1000000"),
        ("0.001", "money", {"places": 2}, "must have at most 2 decimal places"),
        ("yesterday", "time", {}, "is not a valid ISO 8601 date-time"),
        ([1], "objects", {}, "must be a list of objects"),
        ("x", "nested", {}, "must be an object"),
    ],
)
def test_a_bad_value_is_one_problem_named_by_its_parameter(
    value: Any, read: str, kwargs: dict[str, Any], problem: str
) -> None:
    assert _read({"v": value}, read, **kwargs) == (None, [("item.v", problem)])


@pytest.mark.parametrize(
    ("value", "read", "kwargs", "expected"),
    [
        ("gold", "string", {"max_length": 4, "pattern": "[a-z]+", "choices": ("gold",)}, "gold"),
        (3.0, "integer", {"minimum": 1, "maximum": 3}, 3),
        (False, "boolean", {}, False),
        ("0.25", "money", {"places": 2}, Decimal("0.25")),
        ("2026-11-01T10:00:00.7Z", "time", {}, datetime(2026, 11, 1, 10, 0, tzinfo=UTC)),
        ([{"a": 1}], "objects", {}, [("item.v[0].", {"a": 1})]),
    ],
)
def test_a_good_value_reads_as_its_type(value: Any, read: str, kwargs: dict[str, Any], expected: Any) -> None:
    assert _read({"v": value}, read, **kwargs) == (expected, [])


@pytest.mark.parametrize("read", ["string", "integer", "boolean", "time", "objects", "nested"])
def test_an_absent_value_is_none_and_no_problem(read: str) -> None:
    assert _read({}, read) == (None, [])


def test_a_whole_body_read_answers_every_problem_as_one_422_or_gives_its_value() -> None:
    def both(reader: BodyReader) -> int | None:
        reader.boolean("b")
        return reader.integer("a")

    with pytest.raises(RecurlyProblem) as answer:
        read_whole({"a": "x", "b": 1}, both)
    assert (answer.value.status, answer.value.error_type) == (422, "validation")
    assert [(p.param, p.message) for p in answer.value.params] == [
        ("b", "must be true or false"),
        ("a", "must be an integer"),
    ]
    assert read_whole({"a": 3, "b": True}, both) == 3
