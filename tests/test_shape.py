"""The package keeps the shape docs/architecture.md sets (measured by tools/shape.py): no import cycle, no product
module over 500 lines (emulator state aside), no function over 80 lines, commands under 150 lines, and no command
importing another (``run`` composes the four)."""

from __future__ import annotations

from tools.shape import measure


def test_the_package_keeps_its_shape() -> None:
    shape = measure()
    assert shape.modules > 50, "the measure found the package"
    assert shape.cycles == []
    assert shape.big_modules == []
    assert shape.big_functions == []
    assert shape.big_commands == []
    assert shape.command_imports == []
