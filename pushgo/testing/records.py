"""Append-only records kept by the mock servers, with event-based waiters.

Owns `Recorder`: a list that tests read directly and wait on ("until N items match") without
polling; every wait has a deadline. Imports nothing from pushgo.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar, overload

import anyio

T = TypeVar("T")


@dataclass(eq=False)
class _Waiter(Generic[T]):
    count: int
    predicate: Callable[[T], bool] | None
    matches: list[T] = field(default_factory=list)
    event: anyio.Event = field(default_factory=anyio.Event)

    def offer(self, item: T) -> None:
        if self.predicate is None or self.predicate(item):
            self.matches.append(item)
            if len(self.matches) >= self.count:
                self.event.set()


class Recorder(Generic[T]):
    """Items in arrival order; `await wait_for(n)` returns once n items (matching `predicate`,
    if given) have been recorded, counting items recorded before the call too."""

    def __init__(self) -> None:
        self._items: list[T] = []
        self._waiters: list[_Waiter[T]] = []

    def append(self, item: T) -> None:
        self._items.append(item)
        for waiter in self._waiters:
            waiter.offer(item)

    def clear(self) -> None:
        """Forget recorded items (waiters already pending keep what they matched)."""
        self._items.clear()

    @property
    def items(self) -> list[T]:
        """A snapshot copy."""
        return list(self._items)

    def matching(self, predicate: Callable[[T], bool]) -> list[T]:
        return [item for item in self._items if predicate(item)]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._items))

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> list[T]: ...
    def __getitem__(self, index: int | slice) -> T | list[T]:
        return self._items[index]

    async def wait_for(self, count: int = 1, predicate: Callable[[T], bool] | None = None, *,
                       within: float = 5.0) -> list[T]:
        """Wait until `count` items match; return the matching items (at least `count`).

        Raises TimeoutError after `within` seconds.
        """
        waiter: _Waiter[T] = _Waiter(count, predicate)
        for item in self._items:
            waiter.offer(item)
        if len(waiter.matches) >= count:
            return waiter.matches
        self._waiters.append(waiter)
        try:
            with anyio.fail_after(within):
                await waiter.event.wait()
        finally:
            self._waiters.remove(waiter)
        return waiter.matches
