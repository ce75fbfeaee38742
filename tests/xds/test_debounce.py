"""Debounce timing, checked on a virtual-time event loop: time jumps, nothing sleeps."""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest

from meshplane.xds.debounce import Debouncer


class _JumpingSelector(selectors.DefaultSelector):
    """Never blocks: when the loop would wait for a timer, advance virtual time instead."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[Any]:
        ready: list[Any] = super().select(0)
        if ready:
            return ready
        if timeout is None:
            raise RuntimeError("virtual-time loop has nothing scheduled: the test would hang")
        self.now += timeout
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._selector_clock = _JumpingSelector()
        super().__init__(selector=self._selector_clock)

    def time(self) -> float:
        return self._selector_clock.now


def run_virtual(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    loop = VirtualTimeLoop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


def _union(a: frozenset[str], b: frozenset[str]) -> frozenset[str]:
    return a | b


class Recorder:
    """A push function that records (loop time, merged item) and can take a while."""

    def __init__(self, duration: float = 0.0) -> None:
        self.calls: list[tuple[float, frozenset[str]]] = []
        self.duration = duration

    async def __call__(self, item: frozenset[str]) -> None:
        self.calls.append((asyncio.get_running_loop().time(), item))
        if self.duration:
            await asyncio.sleep(self.duration)


async def _at(t: float) -> None:
    """Sleep until absolute virtual time t."""
    await asyncio.sleep(t - asyncio.get_running_loop().time())


def _scenario(
    events: list[tuple[float, str]],
    end: float,
    *,
    after: float = 0.1,
    max_wait: float = 10.0,
    push_duration: float = 0.0,
) -> list[tuple[float, frozenset[str]]]:
    rec = Recorder(push_duration)

    async def main() -> None:
        deb: Debouncer[frozenset[str]] = Debouncer(rec, _union, after=after, max_wait=max_wait)
        task = asyncio.create_task(deb.run())
        for t, name in events:
            await _at(t)
            deb.submit(frozenset({name}))
        await _at(end)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run_virtual(main)
    return [(round(t, 6), item) for t, item in rec.calls]


def test_single_event_pushes_after_quiet_period() -> None:
    assert _scenario([(1.0, "a")], end=5.0) == [(1.1, frozenset({"a"}))]


def test_each_event_restarts_the_quiet_period_and_items_merge() -> None:
    calls = _scenario([(1.0, "a"), (1.05, "b"), (1.12, "c")], end=5.0)
    assert calls == [(1.22, frozenset({"a", "b", "c"}))]


def test_separate_bursts_push_separately() -> None:
    calls = _scenario([(1.0, "a"), (2.0, "b")], end=5.0)
    assert calls == [(1.1, frozenset({"a"})), (2.1, frozenset({"b"}))]


def test_max_wait_caps_a_never_ending_burst() -> None:
    # An event every 50 ms never leaves 100 ms of quiet: the 0.99 s cap forces each push,
    # and the first event after a push starts the next burst's cap.
    events = [(1.0 + i * 0.05, f"e{i}") for i in range(60)]  # 1.00 .. 3.95
    calls = _scenario(events, end=10.0, max_wait=0.99)
    assert [t for t, _ in calls] == [1.99, 2.99, 3.99]
    assert [len(item) for _, item in calls] == [20, 20, 20]
    pushed = frozenset().union(*(item for _, item in calls))
    assert pushed == frozenset(name for _, name in events)


def test_only_one_push_in_flight_and_events_during_a_push_merge_into_the_next() -> None:
    # The first push starts at 1.1 and takes 1 s; b, c and d arrive while it runs.
    calls = _scenario(
        [(1.0, "a"), (1.3, "b"), (1.6, "c"), (1.65, "d")], end=10.0, push_duration=1.0
    )
    assert calls == [(1.1, frozenset({"a"})), (2.1, frozenset({"b", "c", "d"}))]


def test_zero_quiet_period_pushes_at_once() -> None:
    assert _scenario([(1.0, "a")], end=2.0, after=0.0, max_wait=0.0) == [(1.0, frozenset({"a"}))]


def test_failing_push_is_logged_and_the_next_burst_still_pushes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[frozenset[str]] = []

    async def push(item: frozenset[str]) -> None:
        seen.append(item)
        if "bad" in item:
            raise RuntimeError("translation exploded")

    async def main() -> None:
        deb: Debouncer[frozenset[str]] = Debouncer(push, _union)
        task = asyncio.create_task(deb.run())
        deb.submit(frozenset({"bad"}))
        await asyncio.sleep(1.0)
        deb.submit(frozenset({"good"}))
        await asyncio.sleep(1.0)
        assert not deb.busy
        task.cancel()

    run_virtual(main)
    assert seen == [frozenset({"bad"}), frozenset({"good"})]
    assert "translation exploded" in caplog.text


def test_wait_idle_returns_after_the_pending_push() -> None:
    rec = Recorder(duration=0.5)
    idle_at: list[float] = []

    async def main() -> None:
        deb: Debouncer[frozenset[str]] = Debouncer(rec, _union)
        task = asyncio.create_task(deb.run())
        deb.submit(frozenset({"a"}))
        assert deb.busy
        await deb.wait_idle()
        idle_at.append(asyncio.get_running_loop().time())
        task.cancel()

    run_virtual(main)
    assert idle_at == [pytest.approx(0.6)]
    assert [item for _, item in rec.calls] == [frozenset({"a"})]


@pytest.mark.parametrize(("after", "max_wait"), [(-1.0, 1.0), (2.0, 1.0)])
def test_rejects_inconsistent_settings(after: float, max_wait: float) -> None:
    async def noop(item: frozenset[str]) -> None:
        return None

    push: Callable[[frozenset[str]], Awaitable[None]] = noop
    with pytest.raises(ValueError):
        Debouncer(push, _union, after=after, max_wait=max_wait)
