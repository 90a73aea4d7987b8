"""A hook the CLI sets to hear how far a run in this process has got (files done, total, seconds)."""

from __future__ import annotations

from typing import Callable

Listener = Callable[[int, "int | None", float], None]
_listeners: list[Listener] = []


def listen(listener: Listener) -> Callable[[], None]:
    """Register listener; returns a function that removes it."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener)


def report(done: int, total: int | None, elapsed: float) -> None:
    for listener in list(_listeners):
        listener(done, total, elapsed)
