"""Coalesce bursts of config changes into few pushes, the way Istio's discovery server does.

Istio (pilot/pkg/xds/discovery.go `debounce`): after an event, wait for a quiet period
(PILOT_DEBOUNCE_AFTER, 100 ms) that every new event restarts, but never longer than
PILOT_DEBOUNCE_MAX (10 s) since the first event of the burst; only one push runs at a
time, and events that arrive during a push are merged into the next one. Without this,
an editor saving ten files or a rollout touching fifty pods would cost one full
translation and push per event.

Time comes from the running loop (`loop.time()` and its timers), so tests drive it with
a virtual-time event loop instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["Debouncer"]

T = TypeVar("T")

log = logging.getLogger("meshplane.xds.debounce")


class Debouncer(Generic[T]):
    """Merge submitted items and hand the merged value to `push` once things go quiet.

    `submit` never blocks. `run` is the single consumer task: it waits for a burst to
    settle, then awaits `push(merged)`; items submitted while a push is in flight start
    the next burst. A failing push is logged and the debouncer keeps going: the next
    change gets a fresh chance, and the caller's own state decides what to retry.
    """

    def __init__(
        self,
        push: Callable[[T], Awaitable[None]],
        merge: Callable[[T, T], T],
        *,
        after: float = 0.1,
        max_wait: float = 10.0,
    ) -> None:
        if after < 0 or max_wait < after:
            raise ValueError("want 0 <= after <= max_wait")
        self._push = push
        self._merge = merge
        self._after = after
        self._max_wait = max_wait
        self._pending: list[T] = []  # the merged burst: empty, or exactly one item
        self._first = 0.0  # loop time of the first event of the pending burst
        self._last = 0.0  # loop time of the latest event
        self._events = 0
        self._wake = asyncio.Event()
        self._pushing = False
        self._idle = asyncio.Event()
        self._idle.set()
        self.pushes = 0
        self.events = 0

    def submit(self, item: T) -> None:
        """Add one change; merged with whatever is pending."""
        now = asyncio.get_running_loop().time()
        if self._pending:
            self._pending[0] = self._merge(self._pending[0], item)
        else:
            self._pending.append(item)
            self._first = now
            self._events = 0
        self._last = now
        self._events += 1
        self.events += 1
        self._idle.clear()
        self._wake.set()

    @property
    def busy(self) -> bool:
        """True while something is pending or a push runs."""
        return bool(self._pending) or self._pushing

    async def wait_idle(self) -> None:
        """Return once nothing is pending and no push is running."""
        await self._idle.wait()

    async def run(self) -> None:
        """Consume bursts forever; cancel the task to stop."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._pending:
                continue
            await self._settle()
            merged, events, first = self._pending.pop(), self._events, self._first
            await self._push_one(merged, events, first)

    async def _settle(self) -> None:
        """Wait until the burst is quiet for `after`, or `max_wait` passed since it began."""
        loop = asyncio.get_running_loop()
        while True:
            deadline = min(self._last + self._after, self._first + self._max_wait)
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)
            self._wake.clear()

    async def _push_one(self, merged: T, events: int, first: float) -> None:
        loop = asyncio.get_running_loop()
        self._pushing = True
        started = loop.time()
        try:
            await self._push(merged)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("push of %d merged event(s) failed", events)
        finally:
            self._pushing = False
            self.pushes += 1
            log.debug(
                "pushed %d merged event(s); waited %.3fs since the first, push took %.3fs",
                events,
                started - first,
                loop.time() - started,
            )
            if not self._pending:
                self._idle.set()
