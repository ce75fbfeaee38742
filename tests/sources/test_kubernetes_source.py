"""The Kubernetes source against a fake API server speaking the real wire protocol.

List, then watch; ADDED/MODIFIED/DELETED become UPSERT/DELETE Events with a `k8s:` origin;
410 Gone (as an ERROR event or as HTTP 410) relists and deletes what vanished in the gap;
bookmarks move the resume version; errors back off and recover; a resource the server does
not serve holds nothing up and is picked up once installed; only TLS Secrets are kept.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_apiserver import CORE, NETWORKING, SECURITY, FakeApiServer
from fake_apiserver_pki import make_pki

from meshplane.model.store import ConfigStore
from meshplane.sources.events import Event, Op
from meshplane.sources.kubeconfig import load_access
from meshplane.sources.kubernetes import KubernetesSource, WatchTiming

FAST = WatchTiming(
    watch_timeout_s=5, backoff_initial_s=0.05, backoff_max_s=0.2, missing_retry_s=0.2
)
VS = "k8s:networking.istio.io/v1/VirtualService"


def service(name: str, ns: str = "demo") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"ports": [{"name": "http", "port": 8000}], "selector": {"app": name}},
    }


def virtual_service(name: str, host: str = "echo", ns: str = "demo") -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"hosts": [host], "http": [{"route": [{"destination": {"host": host}}]}]},
    }


def summary(batch: list[Event]) -> list[tuple[str, str]]:
    return [(e.op.value, e.origin.path) for e in batch]


class Follower:
    """Runs a KubernetesSource and collects every Event it emits."""

    def __init__(self, source: KubernetesSource) -> None:
        self.source = source
        self.events: list[Event] = []
        self.first: list[Event] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        batches = aiter(self.source)
        self.first = await asyncio.wait_for(anext(batches), 10)
        self.events += self.first

        async def follow() -> None:
            async for batch in batches:
                self.events += batch

        self._task = asyncio.create_task(follow())

    async def wait(self, what: str, ok: Callable[[], bool], timeout: float = 10) -> None:
        for _ in range(int(timeout / 0.02)):
            if ok():
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}: {summary(self.events)[-10:]}")

    def seen(self, op: Op, path: str) -> bool:
        return any(e.op is op and e.origin.path == path for e in self.events)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.source.close()


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    with FakeApiServer(CORE + NETWORKING) as server:  # security.istio.io not installed
        yield server


@pytest.fixture
async def follow(api: FakeApiServer, tmp_path: Path) -> AsyncIterator[Callable[[], Any]]:
    followers: list[Follower] = []

    async def start() -> Follower:
        access = load_access(str(api.write_kubeconfig(tmp_path / "kubeconfig")))
        f = Follower(KubernetesSource(access, timing=FAST))
        followers.append(f)
        await f.start()
        return f

    yield start
    for f in followers:
        await f.stop()


def lists_of(api: FakeApiServer, plural: str) -> int:
    return sum(1 for r in api.requests if r.split("?")[0].endswith(plural) and "watch=" not in r)


async def test_initial_list_then_watch_events(
    api: FakeApiServer, follow: Any, caplog: pytest.LogCaptureFixture
) -> None:
    api.create(service("echo"))
    api.create(virtual_service("echo"))
    caplog.set_level(logging.INFO, "meshplane.kubernetes")
    f = await follow()
    assert sorted(summary(f.first)) == [
        ("upsert", f"{VS}/demo/echo"),
        ("upsert", "k8s:v1/Service/demo/echo"),
    ]
    vs = next(e for e in f.first if e.manifest["kind"] == "VirtualService")
    # List items come without apiVersion/kind; the source puts them back, and drops
    # the server's managedFields.
    assert vs.manifest["apiVersion"] == "networking.istio.io/v1"
    assert "managedFields" not in vs.manifest["metadata"]
    assert vs.manifest["metadata"]["resourceVersion"]
    # The security CRDs are not installed: logged once each, and the first batch came anyway.
    missing = [r for r in caplog.records if "does not serve" in r.getMessage()]
    assert sorted(r.getMessage().split(" (")[0] for r in missing) == [
        "AuthorizationPolicy",
        "PeerAuthentication",
        "RequestAuthentication",
    ]

    changed = virtual_service("echo", host="other")
    api.replace(changed)
    await f.wait(
        "MODIFIED",
        lambda: any(
            e.op is Op.UPSERT and e.manifest["spec"]["hosts"] == ["other"]
            for e in f.events[len(f.first) :]
        ),
    )
    api.create(virtual_service("second"))
    await f.wait("ADDED", lambda: f.seen(Op.UPSERT, f"{VS}/demo/second"))
    api.delete("networking.istio.io/v1", "VirtualService", "demo", "echo")
    await f.wait("DELETED", lambda: f.seen(Op.DELETE, f"{VS}/demo/echo"))
    gone = next(e for e in f.events if e.op is Op.DELETE)
    assert gone.manifest == {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "echo", "namespace": "demo"},
    }
    assert len([r for r in caplog.records if "does not serve" in r.getMessage()]) == 3


@pytest.mark.parametrize("as_http", [False, True], ids=["error-event", "http-410"])
async def test_410_relists_and_deletes_what_vanished(
    api: FakeApiServer, follow: Any, as_http: bool
) -> None:
    api.gone_as_http = as_http
    for name in ("keep", "vanish"):
        api.create(virtual_service(name))
    f = await follow()
    await f.wait("the watch", lambda: api.open_watches() >= len(CORE) + len(NETWORKING))
    before = lists_of(api, "virtualservices")
    # Deleted while nobody watched, and the history compacted: only a relist can tell.
    api.delete("networking.istio.io/v1", "VirtualService", "demo", "vanish", record=False)
    api.compact()
    if as_http:
        api.end_watches()  # the reconnect gets HTTP 410
    else:
        api.expire_watches()  # an ERROR event with a 410 Status
    await f.wait("the relist's DELETE", lambda: f.seen(Op.DELETE, f"{VS}/demo/vanish"))
    assert lists_of(api, "virtualservices") == before + 1
    assert not f.seen(Op.DELETE, f"{VS}/demo/keep")
    # And the watch resumes from the new list: later changes still arrive.
    api.create(virtual_service("later"))
    await f.wait("an event after the relist", lambda: f.seen(Op.UPSERT, f"{VS}/demo/later"))


async def test_bookmark_moves_the_resume_version(api: FakeApiServer, follow: Any) -> None:
    api.create(virtual_service("a"))
    f = await follow()
    await f.wait("the watch", lambda: api.open_watches() >= len(CORE) + len(NETWORKING))
    api.create(service("unrelated"))  # moves the global version past the VS watch's last one
    api.bookmark()
    await asyncio.sleep(0.3)
    before = lists_of(api, "virtualservices")
    api.compact()  # history before now is gone: only a bookmarked watch resumes without 410
    api.end_watches()
    await f.wait("a new VS watch", lambda: _watches_since(api, "virtualservices") >= 2)
    api.create(virtual_service("b"))
    await f.wait("an event on the resumed watch", lambda: f.seen(Op.UPSERT, f"{VS}/demo/b"))
    assert lists_of(api, "virtualservices") == before


def _watches_since(api: FakeApiServer, plural: str) -> int:
    return sum(1 for r in api.requests if plural in r and "watch=1" in r)


async def test_watch_requests_carry_version_and_bookmarks(api: FakeApiServer, follow: Any) -> None:
    await follow()
    rv = api.resource_version()
    await asyncio.sleep(0.2)
    watch = next(r for r in api.requests if "/virtualservices?" in r and "watch=1" in r)
    assert f"resourceVersion={rv}" in watch and "allowWatchBookmarks=true" in watch
    assert "timeoutSeconds=" in watch
    assert any(r.startswith("/apis/networking.istio.io/v1/virtualservices?") for r in api.requests)
    assert any(r.startswith("/apis/discovery.k8s.io/v1/endpointslices?") for r in api.requests)
    config_map = next(r for r in api.requests if "configmaps" in r)
    assert config_map.startswith("/api/v1/namespaces/istio-system/configmaps?")
    assert "fieldSelector=metadata.name%3Distio" in config_map


async def test_errors_back_off_and_recover(api: FakeApiServer, follow: Any) -> None:
    api.create(virtual_service("a"))
    api.fail_next(5)  # some first lists fail with 500
    f = await follow()
    assert (Op.UPSERT.value, f"{VS}/demo/a") in summary(f.first)
    api.fail_next(3)
    api.end_watches()  # reconnects meet errors, then resume from their versions
    api.create(virtual_service("b"))
    await f.wait("recovery", lambda: f.seen(Op.UPSERT, f"{VS}/demo/b"))


async def test_only_tls_secrets_and_the_mesh_config_map(api: FakeApiServer, follow: Any) -> None:
    def secret(name: str, kind: str, data: dict[str, str]) -> dict[str, Any]:
        meta = {"name": name, "namespace": "istio-system"}
        return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": kind, "data": data}

    api.create(secret("gw-cert", "kubernetes.io/tls", {"tls.crt": "eA==", "tls.key": "eA=="}))
    api.create(secret("generic", "Opaque", {"cert": "eA==", "key": "eA=="}))
    api.create(secret("password", "Opaque", {"password": "eA=="}))
    api.create(secret("sa", "kubernetes.io/service-account-token", {"ca.crt": "eA=="}))
    for ns, name in (("istio-system", "istio"), ("istio-system", "other"), ("demo", "istio")):
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}}
        api.create({**cm, "data": {"mesh": "{}"}})
    f = await follow()
    paths = sorted(p for _, p in summary(f.first) if "Secret" in p or "ConfigMap" in p)
    assert paths == [
        "k8s:v1/ConfigMap/istio-system/istio",
        "k8s:v1/Secret/istio-system/generic",
        "k8s:v1/Secret/istio-system/gw-cert",
    ]
    # A Secret that stops holding a certificate leaves the mesh; one that starts, joins.
    api.replace(secret("generic", "Opaque", {"token": "eA=="}))
    api.replace(secret("password", "Opaque", {"ca.crt": "eA=="}))
    await f.wait(
        "the secret to go", lambda: f.seen(Op.DELETE, "k8s:v1/Secret/istio-system/generic")
    )
    await f.wait(
        "the secret to come", lambda: f.seen(Op.UPSERT, "k8s:v1/Secret/istio-system/password")
    )


async def test_a_crd_installed_later_is_picked_up(api: FakeApiServer, follow: Any) -> None:
    f = await follow()
    api.install(*SECURITY)
    policy = {
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": {"name": "default", "namespace": "istio-system"},
        "spec": {"mtls": {"mode": "STRICT"}},
    }
    api.create(policy)
    path = "k8s:security.istio.io/v1/PeerAuthentication/istio-system/default"
    await f.wait("the new kind's object", lambda: f.seen(Op.UPSERT, path))


async def test_lists_are_paged(api: FakeApiServer, follow: Any) -> None:
    for i in range(520):
        api.create(service(f"s{i}"))
    f = await follow()
    assert len([e for e in f.first if e.manifest["kind"] == "Service"]) == 520
    pages = [r for r in api.requests if r.startswith("/api/v1/services?") and "watch" not in r]
    assert any("continue=500" in r for r in pages) and all("limit=500" in r for r in pages)


async def test_bad_objects_are_reported_with_their_k8s_origin(
    api: FakeApiServer, follow: Any
) -> None:
    bad = virtual_service("bad")
    bad["spec"]["http"][0]["route"][0]["weight"] = "heavy"
    api.create(bad)
    f = await follow()
    store = ConfigStore()
    store.apply_all(f.first)
    errors = [e.to_dict() for e in store.errors()]
    assert [(e["file"], e["name"]) for e in errors] == [(f"{VS}/demo/bad", "bad")], errors
    assert "weight" in errors[0]["field"]


async def test_https_with_token_and_client_certificates(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    with FakeApiServer(CORE, token="s3cret", tls_dir=pki, client_certs=True) as api:
        api.create(service("echo"))
        path = api.write_kubeconfig(tmp_path / "kubeconfig", client_certs=True)
        source = KubernetesSource(load_access(str(path)), timing=FAST)
        try:
            first = await asyncio.wait_for(anext(aiter(source)), 10)
        finally:
            await source.close()
        assert ("upsert", "k8s:v1/Service/demo/echo") in summary(first)


async def test_a_wrong_token_is_retried_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with FakeApiServer(CORE, token="right") as api:
        path = api.write_kubeconfig(tmp_path / "kubeconfig")
        path.write_text(path.read_text().replace("right", "wrong"))
        source = KubernetesSource(load_access(str(path)), timing=FAST)
        batches = aiter(source)
        first = asyncio.ensure_future(anext(batches))
        try:
            for _ in range(200):
                if any("401 Unauthorized" in r.getMessage() for r in caplog.records):
                    break
                await asyncio.sleep(0.02)
            assert not first.done(), "no first batch without a successful list"
            assert any("401 Unauthorized" in r.getMessage() for r in caplog.records)
        finally:
            first.cancel()
            await source.close()
