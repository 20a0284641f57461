"""A named registry: one line adds a strategy, component, schedule, stopping rule or method.

Unknown names get a one-line error with the close matches ("did you mean") and the list
of what is registered, which is also what `star list` prints.
"""

from __future__ import annotations

import difflib
from typing import Generic, Iterator, TypeVar

from star_al.errors import StarError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered already")
        self._items[name] = item
        return item

    def remove(self, name: str) -> None:
        self._items.pop(name, None)

    def get(self, name: str) -> T:
        if name not in self._items:
            raise StarError(self.unknown(name))
        return self._items[name]

    def unknown(self, name) -> str:
        close = difflib.get_close_matches(str(name), list(self._items), n=2)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        return f"unknown {self.kind} {name!r}; {hint}choose one of {', '.join(self._items)}"

    def __contains__(self, name) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def items(self):
        return self._items.items()
