"""The Kubernetes config source: every watched resource of a cluster, as batches of Events.

It has the DirectoryWatcher's shape, so `serve` consumes either the same way: the first
batch holds the initial list of every resource (so /ready means the cluster's config is
loaded), later batches hold what changed, coalesced while the consumer was busy. Each
resource runs its own list+watch loop (`k8s_watch.ResourceWatch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

from meshplane.sources.events import Event
from meshplane.sources.k8s_client import ApiClient
from meshplane.sources.k8s_resources import RESOURCES, Resource
from meshplane.sources.k8s_watch import ResourceWatch, WatchTiming
from meshplane.sources.kubeconfig import ClusterAccess

__all__ = ["KubernetesSource", "WatchTiming"]

log = logging.getLogger("meshplane.kubernetes")

Batch = list[Event]
_PROGRESS_EVERY_S = 10.0


class KubernetesSource:
    """Async iterator of batches: first every watched object, then each change."""

    def __init__(
        self,
        access: ClusterAccess,
        *,
        resources: Sequence[Resource] = RESOURCES,
        timing: WatchTiming | None = None,
    ) -> None:
        self.access = access
        self._client = ApiClient(access)
        self._queue: asyncio.Queue[list[Event]] = asyncio.Queue()
        timing = timing or WatchTiming()
        self._watches = [
            ResourceWatch(self._client, r, self._queue.put_nowait, timing) for r in resources
        ]
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def server(self) -> str:
        return self.access.server

    def __aiter__(self) -> AsyncIterator[Batch]:
        return self._batches()

    async def close(self) -> None:
        """Stop every watch and close the connection pool."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self._client.close()

    async def _batches(self) -> AsyncIterator[Batch]:
        self._tasks = [
            asyncio.create_task(w.run(), name=f"k8s {w.resource.kind}") for w in self._watches
        ]
        await self._initial_sync()
        yield self._drain()
        while True:
            first = await self._queue.get()
            yield [*first, *self._drain()]

    async def _initial_sync(self) -> None:
        """Wait until every resource has been listed once (or found not served)."""
        log.info("listing %d resources from %s (%s)", len(self._watches), self.server,
                 self.access.source)  # fmt: skip
        pending = list(self._watches)
        while pending:
            waits = [asyncio.ensure_future(w.synced.wait()) for w in pending]
            try:
                await asyncio.wait(waits, timeout=_PROGRESS_EVERY_S)
            finally:
                for wait in waits:
                    wait.cancel()
            pending = [w for w in pending if not w.synced.is_set()]
            if pending:
                names = ", ".join(w.resource.kind for w in pending)
                log.warning("still waiting for the first list of: %s", names)

    def _drain(self) -> Batch:
        batch: Batch = []
        while not self._queue.empty():
            batch += self._queue.get_nowait()
        return batch
