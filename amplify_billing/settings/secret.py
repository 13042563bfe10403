"""``Secret``: a credential whose ``repr``/``str`` never show the value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema


class Secret:
    """A credential. Only ``reveal()`` gives the value; ``repr``/``str`` print ``<hidden>``."""

    __slots__ = ("_value", "file")

    def __init__(self, value: str, *, file: Path | None = None) -> None:
        self._value = value
        # the file it was read from (a ``*_file`` key), whose mode the settings check; None for a value in the text
        self.file = file

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

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        # A settings field holds a Secret as it is: the validators in ``values`` build it from the file's text,
        # and pydantic must neither copy nor serialize the value it hides.
        return core_schema.is_instance_schema(cls)
