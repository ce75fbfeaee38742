"""List+watch of one Kubernetes resource, turned into the same Events the files source emits.

The loop is client-go's reflector: list (paged), emit every object, then watch from the
list's resourceVersion; bookmarks and events move that version on, so a dropped connection
resumes where it stopped. When the server no longer has that version (410 Gone) the loop
lists again and deletes whatever vanished in the gap. A resource the server does not serve
(404: its CRD is not installed) is logged once and asked for again slowly.

Each object's Origin is `k8s:APIVERSION/KIND/NAMESPACE/NAME`, fixed at its first sighting:
the store tells an object's owner by origin, so an update and its delete must carry it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from meshplane.sources.events import Event, Op, Origin
from meshplane.sources.k8s_client import ApiClient, ApiError, ResourceGone, ResourceNotFound
from meshplane.sources.k8s_resources import Resource
from meshplane.sources.kubeconfig import KubeconfigError

__all__ = ["ResourceWatch", "WatchTiming"]

log = logging.getLogger("meshplane.kubernetes")

Emit = Callable[[list[Event]], None]
Key = tuple[str, str]  # namespace, name
_PAGE_SIZE = "500"
_TRANSIENT = (ApiError, KubeconfigError, aiohttp.ClientError, TimeoutError, OSError, ValueError)


@dataclass(frozen=True)
class WatchTiming:
    """How long a watch runs, how retries back off; tests shorten these."""

    watch_timeout_s: float = 300.0
    """A watch asks the server to end after a random time in [this, twice this]."""
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    missing_retry_s: float = 30.0
    """How often a resource the server does not serve is asked for again."""


class _Backoff:
    """Doubling delays with jitter, capped; reset after a success."""

    def __init__(self, initial: float, cap: float) -> None:
        self._initial, self._cap, self._next = initial, cap, initial

    def reset(self) -> None:
        self._next = self._initial

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._cap, self._next * 2)
        return delay * random.uniform(0.8, 1.2)


class ResourceWatch:
    """Keeps one resource's objects flowing into `emit` until cancelled."""

    def __init__(
        self, client: ApiClient, resource: Resource, emit: Emit, timing: WatchTiming
    ) -> None:
        self.resource = resource
        self.synced = asyncio.Event()
        """Set once the first list is in (or the server said it does not serve the kind)."""
        self.served = False
        self._client = client
        self._emit = emit
        self._timing = timing
        self._version = resource.versions[0]
        self._rv = ""
        self._known: dict[Key, Origin] = {}
        self._missing_logged = False

    async def run(self) -> None:
        backoff = _Backoff(self._timing.backoff_initial_s, self._timing.backoff_max_s)
        while True:
            try:
                if not self._rv:
                    await self._relist()
                    backoff.reset()
                if await self._watch_once():
                    backoff.reset()
                else:  # ended at once with nothing: do not hammer a misbehaving server
                    await asyncio.sleep(backoff.next_delay())
            except ResourceGone as exc:
                if not self._rv:  # the list itself expired (a stale continue token): no spin
                    await asyncio.sleep(backoff.next_delay())
                log.info("%s: %s; listing again", self.resource, exc.message or "expired")
                self._rv = ""
            except ResourceNotFound:
                self._not_served()
                await asyncio.sleep(self._timing.missing_retry_s)
            except _TRANSIENT as exc:
                delay = backoff.next_delay()
                log.warning("%s: %s; retrying in %.1fs", self.resource, _describe(exc), delay)
                await asyncio.sleep(delay)
            except Exception:  # a bug here must not stop the mesh from following the cluster
                delay = backoff.next_delay()
                log.exception("%s: unexpected error; retrying in %.1fs", self.resource, delay)
                await asyncio.sleep(delay)

    # -- list ---------------------------------------------------------------------------

    async def _relist(self) -> None:
        items, rv = await self._list_any_version()
        events: list[Event] = []
        seen: set[Key] = set()
        for raw in items:
            obj = self._complete(raw)
            if self.resource.keep(obj):
                seen.add(_key(obj))
                events.append(self._upsert(obj))
        events += [self._delete(key) for key in sorted(set(self._known) - seen)]
        self._rv = rv
        if not self.served:
            if self._missing_logged:
                log.info("%s: served now (%s)", self.resource, self._api_version)
            self.served, self._missing_logged = True, False
        self._emit(events)
        self.synced.set()

    async def _list_any_version(self) -> tuple[list[dict[str, Any]], str]:
        """Every object at the first version the server serves (404 if none)."""
        for version in self.resource.versions:
            try:
                items, rv = await self._list(version)
            except ResourceNotFound:
                continue
            self._version = version
            return items, rv
        raise ResourceNotFound(404, "NotFound", "no version of this resource is served")

    async def _list(self, version: str) -> tuple[list[dict[str, Any]], str]:
        path = self.resource.path(version)
        params = self._selector()
        items: list[dict[str, Any]] = []
        rv, cont = "", ""
        for _ in range(100_000):  # bounded: a page each, 500 objects a page
            page_params = {**params, "limit": _PAGE_SIZE, **({"continue": cont} if cont else {})}
            page = await self._client.list_page(path, page_params)
            items += [i for i in page.get("items") or [] if isinstance(i, dict)]
            meta = page.get("metadata")
            meta = meta if isinstance(meta, dict) else {}
            rv = str(meta.get("resourceVersion") or "")
            cont = str(meta.get("continue") or "")
            if not cont:
                break
        return items, rv

    def _not_served(self) -> None:
        if self._known:
            self._emit([self._delete(key) for key in sorted(self._known)])
        self._rv, self.served = "", False
        if not self._missing_logged:
            log.warning(
                "%s: the API server does not serve %s (CRD not installed?); asking again every %gs",
                self.resource,
                " or ".join(self.resource.api_version(v) for v in self.resource.versions),
                self._timing.missing_retry_s,
            )
            self._missing_logged = True
        self.synced.set()

    # -- watch --------------------------------------------------------------------------

    async def _watch_once(self) -> bool:
        """One watch from the current version; whether it was worth it (events or time)."""
        params = {**self._selector(), "resourceVersion": self._rv, "allowWatchBookmarks": "true"}
        timeout = random.uniform(self._timing.watch_timeout_s, 2 * self._timing.watch_timeout_s)
        started, got = time.monotonic(), False
        path = self.resource.path(self._version)
        async for event in self._client.watch(path, params, timeout):
            got = True
            self._apply(event)
        return got or time.monotonic() - started > 1.0

    def _apply(self, event: Mapping[str, Any]) -> None:
        kind, raw = event.get("type"), event["object"]
        meta = raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {}
        rv = str(meta.get("resourceVersion") or "")
        if kind in ("ADDED", "MODIFIED"):
            obj = self._complete(raw)
            if self.resource.keep(obj):
                self._emit([self._upsert(obj)])
            elif _key(obj) in self._known:
                self._emit([self._delete(_key(obj))])
        elif kind == "DELETED":
            if _key(raw) in self._known:
                self._emit([self._delete(_key(raw))])
        elif kind != "BOOKMARK":
            log.warning("%s: unknown watch event type %r ignored", self.resource, kind)
        if rv:
            self._rv = rv

    # -- events -------------------------------------------------------------------------

    @property
    def _api_version(self) -> str:
        return self.resource.api_version(self._version)

    def _selector(self) -> dict[str, str]:
        selector = self.resource.field_selector
        return {"fieldSelector": selector} if selector else {}

    def _complete(self, raw: dict[str, Any]) -> dict[str, Any]:
        """The object as a manifest: list items carry no apiVersion/kind; managedFields are
        bookkeeping of the API server that would only cost memory."""
        obj = {**raw, "apiVersion": raw.get("apiVersion") or self._api_version}
        obj["kind"] = raw.get("kind") or self.resource.kind
        meta = raw.get("metadata")
        if isinstance(meta, dict) and "managedFields" in meta:
            obj["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
        return obj

    def _upsert(self, obj: dict[str, Any]) -> Event:
        key = _key(obj)
        origin = self._known.get(key)
        if origin is None:
            origin = self._known[key] = Origin(self._origin_path(key))
        return Event(Op.UPSERT, obj, origin)

    def _delete(self, key: Key) -> Event:
        origin = self._known.pop(key)
        namespace, name = key
        meta = {"name": name, **({"namespace": namespace} if namespace else {})}
        manifest = {"apiVersion": self._api_version, "kind": self.resource.kind, "metadata": meta}
        return Event(Op.DELETE, manifest, origin)

    def _origin_path(self, key: Key) -> str:
        namespace, name = key
        where = f"{namespace}/{name}" if namespace else name
        return f"k8s:{self._api_version}/{self.resource.kind}/{where}"


def _key(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
