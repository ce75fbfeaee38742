"""A fake Kubernetes API server that speaks the real wire protocol, for tests.

No API server can run on these machines, so this one stands in. It answers what a list+watch
client sends, the way kube-apiserver does: HTTP/1.1 (or HTTPS with a test CA, a bearer token
and optionally client certificates, as a kubeconfig gives them), JSON lists
(`{"kind":"ServiceList","apiVersion":"v1","metadata":{"resourceVersion":"N"},"items":[...]}`
with `limit`/`continue` paging and items without kind/apiVersion), and watches
(`?watch=1&resourceVersion=N&allowWatchBookmarks=true&timeoutSeconds=S`) streaming one JSON
event per line in a chunked response: ADDED, MODIFIED, DELETED, BOOKMARK, and ERROR with a
Status object of code 410 when the version asked for was compacted away (or HTTP 410, as
some paths of the real server answer). Unknown resources get a 404 Status, as a CRD that is
not installed does. Field selectors on metadata.name, metadata.namespace and type work.
TokenReview (POST /apis/authentication.k8s.io/v1/tokenreviews) authenticates the service
account tokens `service_account_token` minted, for their audiences only.

It runs its own event loop in a thread; tests mutate it through plain methods. Its TLS
files come from fake_apiserver_pki.make_pki.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import copy
import datetime
import json
import ssl
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from aiohttp import web

T = TypeVar("T")
Obj = dict[str, Any]


@dataclass(frozen=True)
class FakeResource:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


CORE = (
    FakeResource("", "v1", "Namespace", "namespaces", namespaced=False),
    FakeResource("", "v1", "Service", "services"),
    FakeResource("", "v1", "Pod", "pods"),
    FakeResource("", "v1", "Secret", "secrets"),
    FakeResource("", "v1", "ConfigMap", "configmaps"),
    FakeResource("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices"),
)
NETWORKING = tuple(
    FakeResource("networking.istio.io", "v1", kind, plural)
    for kind, plural in (
        ("VirtualService", "virtualservices"),
        ("DestinationRule", "destinationrules"),
        ("Gateway", "gateways"),
        ("ServiceEntry", "serviceentries"),
        ("WorkloadEntry", "workloadentries"),
        ("Sidecar", "sidecars"),
    )
)
SECURITY = tuple(
    FakeResource("security.istio.io", "v1", kind, plural)
    for kind, plural in (
        ("PeerAuthentication", "peerauthentications"),
        ("AuthorizationPolicy", "authorizationpolicies"),
        ("RequestAuthentication", "requestauthentications"),
    )
)
ALL = CORE + NETWORKING + SECURITY


def status(code: int, reason: str, message: str) -> Obj:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


@dataclass
class _Watch:
    resource: FakeResource
    namespace: str
    selector: str
    bookmarks: bool
    queue: asyncio.Queue[Obj | None] = field(default_factory=asyncio.Queue)


def _matches(obj: Obj, namespace: str, selector: str) -> bool:
    meta = obj.get("metadata", {})
    if namespace and meta.get("namespace") != namespace:
        return False
    values = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "type": obj.get("type", ""),
    }
    for term in filter(None, selector.split(",")):
        negate = "!=" in term
        name, _, want = term.partition("!=" if negate else "=")
        if (values.get(name, "") == want.lstrip("=")) == negate:
            return False
    return True


class FakeApiServer:
    """Start with `with FakeApiServer(...) as api:`; `api.url` is where it listens."""

    def __init__(
        self,
        resources: Iterable[FakeResource] = ALL,
        *,
        token: str = "",
        tls_dir: Path | None = None,
        client_certs: bool = False,
        gone_as_http: bool = False,
    ) -> None:
        self.resources = {(r.group, r.plural): r for r in resources}
        self.token = token
        self.tls_dir = tls_dir
        self.client_certs = client_certs
        self.gone_as_http = gone_as_http
        self.requests: list[str] = []
        self.url = ""
        self._rv = 100
        self._floor = 0
        self._objects: dict[tuple[str, str], dict[tuple[str, str], Obj]] = {}
        self._history: list[tuple[int, FakeResource, Obj]] = []
        self._watches: list[_Watch] = []
        self._fail: list[int] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._sa_tokens: dict[str, tuple[str, tuple[str, ...]]] = {}
        self.token_reviews = 0

    # -- lifecycle ----------------------------------------------------------------------

    def __enter__(self) -> FakeApiServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()
        port = asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(10)
        scheme = "https" if self.tls_dir else "http"
        self.url = f"{scheme}://127.0.0.1:{port}"

    def stop(self) -> None:
        if self._runner is not None:
            self._run(self.end_watches_now)
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _serve(self) -> int:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        app.router.add_post(TOKEN_REVIEWS, self._token_review)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self._ssl_context())
        await site.start()
        server = site._server
        assert server is not None
        return int(server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    def _ssl_context(self) -> ssl.SSLContext | None:
        if self.tls_dir is None:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.tls_dir / "server.crt", self.tls_dir / "server.key")
        if self.client_certs:
            ctx.load_verify_locations(self.tls_dir / "ca.crt")
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def _run(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the server's loop (all state lives there) and return its result."""
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def call() -> None:
            try:
                done.set_result(fn())
            except BaseException as exc:  # handed to the caller
                done.set_exception(exc)

        self._loop.call_soon_threadsafe(call)
        return done.result(10)

    # -- what tests do ------------------------------------------------------------------

    def create(self, obj: Obj) -> Obj:
        return self._run(lambda: self._write("ADDED", obj))

    def replace(self, obj: Obj) -> Obj:
        return self._run(lambda: self._write("MODIFIED", obj))

    def delete(
        self, api_version: str, kind: str, namespace: str, name: str, *, record: bool = True
    ) -> None:
        """Delete an object; `record=False` deletes it without any watch event (a gap)."""
        self._run(lambda: self._remove(api_version, kind, namespace, name, record))

    def install(self, *resources: FakeResource) -> None:
        """Serve more resources from now on (a CRD installed while the client runs)."""
        self._run(lambda: self.resources.update({(r.group, r.plural): r for r in resources}))

    def compact(self) -> None:
        """Forget the history: a watch from any earlier version gets 410 Gone."""
        self._run(self._compact)

    def expire_watches(self) -> None:
        """Send every open watch an ERROR event with a 410 Status, then end it."""
        self._run(lambda: self._end_watches(status(410, "Expired", "too old resource version")))

    def end_watches_now(self) -> None:
        self._end_watches(None)

    def end_watches(self) -> None:
        """End every open watch normally, as timeoutSeconds does."""
        self._run(self.end_watches_now)

    def bookmark(self) -> None:
        """Send a BOOKMARK with the current version to watches that allow them."""
        self._run(self._bookmark)

    def fail_next(self, count: int, code: int = 500) -> None:
        """The next `count` requests get an error Status with this code."""
        self._run(lambda: self._fail.extend([code] * count))

    def open_watches(self) -> int:
        return self._run(lambda: len(self._watches))

    def resource_version(self) -> str:
        return self._run(lambda: str(self._rv))

    def write_kubeconfig(self, path: Path, *, client_certs: bool = False) -> Path:
        """A kubeconfig for this server, as `kind` or a cloud would write it."""
        cluster: Obj = {"server": self.url}
        user: Obj = {}
        if self.tls_dir is not None:
            cluster["certificate-authority-data"] = _b64(self.tls_dir / "ca.crt")
            if client_certs:
                user["client-certificate-data"] = _b64(self.tls_dir / "client.crt")
                user["client-key-data"] = _b64(self.tls_dir / "client.key")
        if self.token:
            user["token"] = self.token
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": cluster}],
            "users": [{"name": "fake-user", "user": user}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake-user"}}],
        }
        path.write_text(yaml.safe_dump(doc))
        return path

    # -- TokenReview ----------------------------------------------------------------------

    def service_account_token(
        self,
        namespace: str,
        service_account: str,
        *,
        audiences: tuple[str, ...] = ("istio-ca",),
        ttl_s: int = 3600,
    ) -> str:
        """A projected token for the account that TokenReview authenticates for `audiences`."""
        now = int(datetime.datetime.now(datetime.UTC).timestamp())
        user = f"system:serviceaccount:{namespace}:{service_account}"
        token = _jwt_like(
            {
                "aud": list(audiences),
                "exp": now + ttl_s,
                "iat": now,
                "iss": "https://fake",
                "sub": user,
            }
        )
        self._run(lambda: self._sa_tokens.__setitem__(token, (user, audiences)))
        return token

    async def _token_review(self, request: web.Request) -> web.StreamResponse:
        """As kube-apiserver: the caller needs credentials; the answer says who the token is."""
        self.requests.append(request.path_qs)
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response(status(401, "Unauthorized", "Unauthorized"), status=401)
        body = await request.json()
        spec = body.get("spec", {}) if isinstance(body, dict) else {}
        self.token_reviews += 1
        want = list(spec.get("audiences") or [])
        known = self._sa_tokens.get(str(spec.get("token", "")))
        answer: Obj = {"user": {}}
        if known is None:
            answer["error"] = (
                "[invalid bearer token, square/go-jose: error in cryptographic primitive]"
            )
        elif want and not set(want) & set(known[1]):
            answer["error"] = (
                f"[invalid bearer token, token audiences {list(known[1])} is invalid for the "
                f"target audiences {want}]"
            )
        else:
            namespace = known[0].split(":")[2]
            groups = ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"]
            user = {"username": known[0], "uid": str(uuid.uuid4()), "groups": groups}
            answer = {"authenticated": True, "user": user, "audiences": want or list(known[1])}
        review = {
            "kind": "TokenReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": None},
            "spec": spec,
            "status": answer,
        }
        return web.json_response(review, status=201)

    # -- state (on the loop) ------------------------------------------------------------

    def _resource_of(self, api_version: str, kind: str) -> FakeResource:
        group = api_version.rpartition("/")[0]
        for r in self.resources.values():
            if (r.group, r.kind) == (group, kind):
                return r
        raise KeyError(f"the fake does not serve {kind} ({api_version})")

    def _write(self, op: str, obj: Obj) -> Obj:
        r = self._resource_of(obj["apiVersion"], obj["kind"])
        obj = copy.deepcopy(obj)
        obj["apiVersion"] = r.api_version
        meta = obj.setdefault("metadata", {})
        if r.namespaced:
            meta.setdefault("namespace", "default")
        key = (meta.get("namespace", ""), meta["name"])
        store = self._objects.setdefault((r.group, r.plural), {})
        old = store.get(key)
        if (old is None) != (op == "ADDED"):
            raise KeyError(f"{op}: {r.kind} {key} {'exists' if old else 'does not exist'}")
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        meta["uid"] = old["metadata"]["uid"] if old else str(uuid.uuid4())
        meta["creationTimestamp"] = (
            old["metadata"]["creationTimestamp"]
            if old
            else datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        )
        meta["managedFields"] = [{"manager": "fake", "operation": "Update"}]
        store[key] = obj
        self._publish(r, op, obj)
        return copy.deepcopy(obj)

    def _remove(self, api_version: str, kind: str, namespace: str, name: str, record: bool) -> None:
        r = self._resource_of(api_version, kind)
        obj = self._objects.get((r.group, r.plural), {}).pop((namespace, name))
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        if record:
            self._publish(r, "DELETED", obj)

    def _publish(self, r: FakeResource, op: str, obj: Obj) -> None:
        event = {"type": op, "object": copy.deepcopy(obj)}
        self._history.append((self._rv, r, event))
        for w in self._watches:
            if w.resource == r and _matches(obj, w.namespace, w.selector):
                w.queue.put_nowait(event)

    def _compact(self) -> None:
        self._history.clear()
        self._floor = self._rv

    def _end_watches(self, error: Obj | None) -> None:
        for w in self._watches:
            if error is not None:
                w.queue.put_nowait({"type": "ERROR", "object": error})
            w.queue.put_nowait(None)

    def _bookmark(self) -> None:
        for w in self._watches:
            if w.bookmarks:
                meta = {"resourceVersion": str(self._rv)}
                obj = {"kind": w.resource.kind, "apiVersion": w.resource.api_version}
                w.queue.put_nowait({"type": "BOOKMARK", "object": {**obj, "metadata": meta}})

    # -- HTTP ---------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.path_qs)
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response(status(401, "Unauthorized", "Unauthorized"), status=401)
        if self._fail:
            code = self._fail.pop(0)
            return web.json_response(status(code, "InternalError", "injected"), status=code)
        found = self._route(request.path)
        if found is None:
            msg = "the server could not find the requested resource"
            return web.json_response(status(404, "NotFound", msg), status=404)
        resource, namespace = found
        query = request.query
        selector = query.get("fieldSelector", "")
        if query.get("watch") in ("1", "true"):
            return await self._watch(request, resource, namespace, selector)
        return web.json_response(self._list(resource, namespace, selector, query))

    def _route(self, path: str) -> tuple[FakeResource, str] | None:
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "v1"]:
            group, rest = "", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 4:
            group, rest = parts[1], parts[3:]
            if any(r.group == group and r.version != parts[2] for r in self.resources.values()):
                return None
        else:
            return None
        namespace = ""
        if len(rest) == 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if len(rest) != 1 or (group, rest[0]) not in self.resources:
            return None
        return self.resources[(group, rest[0])], namespace

    def _list(self, r: FakeResource, namespace: str, selector: str, query: Any) -> Obj:
        objs = self._objects.get((r.group, r.plural), {})
        items = [
            {k: v for k, v in copy.deepcopy(o).items() if k not in ("apiVersion", "kind")}
            for _, o in sorted(objs.items())
            if _matches(o, namespace, selector)
        ]
        start = int(query.get("continue") or 0)
        limit = int(query.get("limit") or 0) or len(items) or 1
        page = items[start : start + limit]
        meta: Obj = {"resourceVersion": str(self._rv)}
        if start + limit < len(items):
            meta["continue"] = str(start + limit)
        return {
            "kind": f"{r.kind}List",
            "apiVersion": r.api_version,
            "metadata": meta,
            "items": page,
        }

    async def _watch(
        self, request: web.Request, r: FakeResource, namespace: str, selector: str
    ) -> web.StreamResponse:
        query = request.query
        since = query.get("resourceVersion", "")
        if since not in ("", "0") and int(since) < self._floor:
            gone = status(410, "Expired", f"too old resource version: {since} ({self._floor})")
            if self.gone_as_http:
                return web.json_response(gone, status=410)
            replay: list[Obj | None] = [{"type": "ERROR", "object": gone}, None]
        elif since in ("", "0"):
            objs = self._objects.get((r.group, r.plural), {}).values()
            replay = [{"type": "ADDED", "object": copy.deepcopy(o)} for o in objs]
        else:
            replay = [
                e
                for rv, res, e in self._history
                if res == r and rv > int(since) and _matches(e["object"], namespace, selector)
            ]
        watch = _Watch(r, namespace, selector, query.get("allowWatchBookmarks") == "true")
        for item in replay:
            watch.queue.put_nowait(item)
        self._watches.append(watch)
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            await self._stream(resp, watch, float(query.get("timeoutSeconds") or 1800))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._watches.remove(watch)
        return resp

    async def _stream(self, resp: web.StreamResponse, watch: _Watch, timeout: float) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            try:
                item = await asyncio.wait_for(watch.queue.get(), remaining)
            except TimeoutError:
                return
            if item is None:
                return
            await resp.write(json.dumps(item).encode() + b"\n")


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


# -- TokenReview (authentication.k8s.io/v1), appended for the TLS port's service account tokens

TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"


def _jwt_like(claims: Obj) -> str:
    """A token shaped like the kubelet's projected ones (only this server can check it)."""

    def seg(value: Obj | bytes) -> str:
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return ".".join([seg({"alg": "RS256", "kid": "fake"}), seg(claims), seg(uuid.uuid4().bytes)])
