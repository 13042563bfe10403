"""A listed resource kept compact in memory (a large run holds tens of thousands of them)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any


class CompactResource(Mapping[str, Any]):
    """A resource kept as its JSON text and decoded on access: a tenth of the memory of the decoded dict.

    Read rarely (a write-back, a stand-in check) and never changed in place, so decoding on access is cheap
    where it happens and saves most of a large run's memory where it does not."""

    __slots__ = ("_text",)

    def __init__(self, text: bytes) -> None:
        self._text = text

    @classmethod
    def of(cls, resource: Mapping[str, Any]) -> CompactResource:
        return cls(json.dumps(resource, separators=(",", ":"), ensure_ascii=False).encode())

    def _decoded(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self._text)
        return value

    def __getitem__(self, key: str) -> Any:
        return self._decoded()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._decoded())

    def __len__(self) -> int:
        return len(self._decoded())

    def get(self, key: str, default: Any = None) -> Any:
        return self._decoded().get(key, default)
