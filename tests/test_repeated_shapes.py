"""The repeated-shape finder of tools/repeated_shapes.py: it finds six lines of one shape in two places, and it does
not count what its exclusions say is not logic (imports, docstrings, field lists, signatures, constants, tables)."""

from __future__ import annotations

import re
import textwrap

from tools.repeated_shapes import MIN_LINES, Repeat, find_repeats

LOOKUP_A = """
    def account(self, ref):
        found = self.accounts.get(ref[5:]) if ref.startswith("code-") else self.accounts.get(ref)
        if found is None:
            raise not_found("Account", ref)
        self.reads += 1
        log.debug("found %s", found)
        return found
"""

# the same lines with other names, strings and numbers, consistently renamed
LOOKUP_B = """
    def plan(self, key):
        hit = self.plans.get(key[4:]) if key.startswith("uuid-") else self.plans.get(key)
        if hit is None:
            raise missing("Plan", key)
        self.lookups += 2
        logger.debug("hit %s", hit)
        return hit
"""


def _module(*parts: str) -> str:
    return "".join(textwrap.dedent(p) for p in parts)


def test_two_modules_sharing_six_lines_of_one_shape_are_found() -> None:
    repeats = find_repeats({"a.py": _module(LOOKUP_A), "sub/b.py": _module("x = 1\n", LOOKUP_B)})

    assert len(repeats) == 1
    (repeat,) = repeats
    assert isinstance(repeat, Repeat)
    assert (repeat.first.path, repeat.first.start, repeat.first.end) == ("a.py", 3, 8)
    assert (repeat.second.path, repeat.second.start, repeat.second.end) == ("sub/b.py", 4, 9)
    assert (repeat.first.scope, repeat.second.scope) == ("account", "plan")
    assert repeat.lines == 6
    assert "a.py:3-8 (account) ~ sub/b.py:4-9 (plan)" in str(repeat)


def test_the_same_lines_twice_in_one_module_are_found() -> None:
    repeats = find_repeats({"a.py": _module(LOOKUP_A, "\n", LOOKUP_B)})

    assert [(r.first.scope, r.second.scope) for r in repeats] == [("account", "plan")]


def test_five_shared_lines_are_not_a_repeat() -> None:
    five = "\n".join(LOOKUP_A.splitlines()[:-1]) + "\n"  # the def line and five lines of its body
    assert MIN_LINES == 6
    assert find_repeats({"a.py": _module(five), "b.py": _module(LOOKUP_B)}) == []


def test_names_renamed_inconsistently_are_another_shape() -> None:
    # `hit` stands for two different names of LOOKUP_A, so this is not LOOKUP_A with other names
    other = LOOKUP_B.replace("return hit", "return key")
    assert find_repeats({"a.py": _module(LOOKUP_A), "b.py": _module(other)}) == []


def test_what_is_not_logic_is_not_counted() -> None:
    declarations = """
        \"\"\"A docstring
        of six
        lines
        that both
        modules
        share.\"\"\"
        import os
        import sys
        from pathlib import Path
        from typing import Any
        from decimal import Decimal
        from datetime import datetime


        @dataclass(frozen=True)
        class Record:
            \"\"\"A record.\"\"\"

            id: str
            name: str
            amount: Decimal
            created_at: datetime
            updated_at: datetime
            deleted_at: datetime | None = None


        STATES = (
            "active",
            "inactive",
            "expired",
            "canceled",
            "future",
            "paused",
        )


        def read(
            site: Site,
            plan: Plan,
            body: Mapping[str, Any],
            problems: Problems,
            reader: BodyReader,
            strict: bool,
        ) -> None: ...


        def register(api):
            api("LIST", "/plans", "list_plans", handlers.list_plans)
            api("POST", "/plans", "create_plan", handlers.create_plan)
            api("GET", PLAN, "get_plan", handlers.get_plan)
            api("PUT", PLAN, "update_plan", handlers.update_plan)
            api("LIST", f"{PLAN}/add_ons", "list_add_ons", handlers.list_add_ons)
            api("DELETE", PLAN, "remove_plan", handlers.remove_plan)


        class Kind(StrEnum):
            CREATE = "create"
            UPDATE = "update"
            DEACTIVATE = "deactivate"
            CANCEL = "cancel"
            TERMINATE = "terminate"
            APPROVE = "approve"
    """
    assert find_repeats({"a.py": _module(declarations), "b.py": _module(declarations)}) == []


def test_keyword_arguments_handing_on_a_value_under_its_own_name_are_not_logic() -> None:
    def caller(name: str, callee: str) -> str:
        return f"""
    def {name}(action, phase, key, requires, amplify_id):
        return {callee}(
            action=action,
            phase=phase,
            key=key,
            requires=requires,
            amplify_id=amplify_id,
            extra=1,
        )
"""

    assert find_repeats({"a.py": _module(caller("record", "Change")), "b.py": _module(caller("write", "build"))}) == []

    # the same call reading its arguments from somewhere states logic, and is found
    def computed(source: str) -> str:
        return re.sub(r"(\w+)=\1,", r"\1=self.\1,", _module(source))

    repeats = find_repeats({"a.py": computed(caller("record", "Change")), "b.py": computed(caller("write", "build"))})
    assert len(repeats) == 1
