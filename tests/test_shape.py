"""The package keeps the shape docs/architecture.md sets (measured by tools/shape.py): no import cycle, no product
module over 500 lines (emulator state aside), no function over 80 lines, commands under 150 lines, no command
importing another (``run`` composes the four), and no repeated logic (no two places sharing six or more lines of one
shape, as tools/repeated_shapes.py counts them)."""

from __future__ import annotations

import pytest

from tools.shape import Shape, measure, runtime_importers

# Repeats left in modules this change did not own, each named by its two scopes (``path::function``, stable while
# lines move). The list is to be emptied, not grown: remove a pair when its repeat is gone.
ALLOWED_REPEATS: set[frozenset[str]] = set()


@pytest.fixture(scope="module")
def shape() -> Shape:
    return measure()


def test_the_package_keeps_its_shape(shape: Shape) -> None:
    assert shape.modules > 50, "the measure found the package"
    assert shape.cycles == []
    assert shape.big_modules == []
    assert shape.big_functions == []
    assert shape.big_commands == []
    assert shape.command_imports == []


def test_commands_gathering_and_the_engine_receive_narrow_collaborators(shape: Shape) -> None:
    # docs/architecture.md, "Runtime": each receives the protocol of what it uses (amplify_billing/collaborators.py),
    # so mypy proves it uses nothing more; only run (which composes) and the command line know the Runtime
    assert shape.runtime_imports == []


def test_the_runtime_guard_sees_every_kind_of_import() -> None:
    # the import graph holds imports under TYPE_CHECKING and inside functions too; run composes and may
    runtime = "amplify_billing.runtime"
    graph = {
        "amplify_billing.commands.sync_plans": {runtime},
        "amplify_billing.commands.run": {runtime},
        "amplify_billing.gather.status": {"amplify_billing.snapshots"},
        "amplify_billing.usage.final": {runtime},
        "amplify_billing.execute": {runtime},
        "amplify_billing.cli_runner": {runtime},
    }
    assert runtime_importers(graph) == [
        "amplify_billing.commands.sync_plans",
        "amplify_billing.execute",
        "amplify_billing.usage.final",
    ]


def test_no_logic_is_repeated(shape: Shape) -> None:
    repeated = [str(r) for r in shape.repeats if r.scopes not in ALLOWED_REPEATS]
    assert repeated == [], "places sharing six or more lines of one shape (python -m tools.shape lists them)"
    gone = ALLOWED_REPEATS - {r.scopes for r in shape.repeats}
    assert not gone, f"no longer repeated, so take them off ALLOWED_REPEATS: {sorted(map(sorted, gone))}"
