"""Composition root: wires sources -> store -> pusher -> xDS and the debug API, and stops them.

`meshplane serve` runs `run(options)`. Everything long-lived is created here and nowhere
else, so each stage below stays a plain, testable object.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Histogram

from meshplane.ca.tokens import BadToken
from meshplane.debug.app import build_app, start_debug_server
from meshplane.debug.sources import DebugSources
from meshplane.model.changes import Change
from meshplane.model.mesh import MeshConfig
from meshplane.model.store import ConfigStore
from meshplane.options import ServeOptions
from meshplane.sources.files import DirectoryWatcher
from meshplane.sources.k8s_token_review import ReviewError, TokenRejected, TokenReviewer
from meshplane.sources.kubeconfig import KubeconfigError, load_access
from meshplane.sources.kubernetes import KubernetesSource
from meshplane.xds.ads import AdsServicer
from meshplane.xds.auth import ReviewUnavailable, ServiceAccountAuthenticator
from meshplane.xds.cache import SnapshotCache
from meshplane.xds.debounce import Debouncer
from meshplane.xds.distribution import ConfigStatus
from meshplane.xds.metrics import XdsMetrics
from meshplane.xds.pusher import Pusher
from meshplane.xds.server import start_xds_server
from meshplane.xds.service_account_auth import ServiceAccountTokens
from meshplane.xds.sync_status import SyncStatus
from meshplane.xds.tls_port import TlsPort, start_tls_port

log = logging.getLogger("meshplane")


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for `--log-format json`."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out)


def configure_logging(options: ServeOptions) -> None:
    handler = logging.StreamHandler()
    if options.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(options.log_level.upper())


@dataclass
class ControlPlane:
    """The running parts, exposed for tests and for `meshplane up`."""

    options: ServeOptions
    store: ConfigStore
    cache: SnapshotCache
    sync_status: SyncStatus
    registry: CollectorRegistry
    pusher: Pusher
    debouncer: Debouncer[Change]
    xds_port: int = 0
    xds_tls_port: int = 0
    """0 when the TLS port is off (`--xds-tls-address ''`)."""
    tls: TlsPort | None = None
    http_port: int = 0
    ready: bool = False
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _stops: list[Any] = field(default_factory=list)

    async def stop(self) -> None:
        """Stop serving: close streams (Envoy keeps its config and reconnects later)."""
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for stop in reversed(self._stops):
            with contextlib.suppress(Exception):
                await stop()


# Where Debian, Ubuntu and Alpine keep the system trust bundle (Istio's agent looks there
# first too).
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def system_ca_bundle() -> str:
    """The system trust bundle's path when this machine has one, else ""."""
    return str(SYSTEM_CA_BUNDLE) if SYSTEM_CA_BUNDLE.is_file() else ""


async def start(options: ServeOptions) -> ControlPlane:
    """Load the initial config, start xDS and the debug API, and watch for changes."""
    source, where = _config_source(options)
    store = ConfigStore(
        MeshConfig(trust_domain=options.trust_domain, system_ca_bundle=system_ca_bundle())
    )
    cache = SnapshotCache()
    sync = SyncStatus(cache)
    registry = CollectorRegistry()
    metrics = XdsMetrics(registry)
    push_time = Histogram(
        "pilot_xds_push_time",
        "Time to translate and publish a push (seconds), by kind",
        ["type"],
        registry=registry,
        buckets=(0.001, 0.01, 0.1, 0.5, 1, 3, 5, 10, 20, 30),
    )
    pusher = Pusher(store, cache, on_push=lambda kind, s: push_time.labels(kind).observe(s))

    async def push(change: Change) -> None:
        await pusher.push(change)
        if cp.tls is not None:  # credentialName Secrets are served per stream, not snapshot
            cp.tls.secrets.refresh_credentials()

    debouncer: Debouncer[Change] = Debouncer(
        push,
        Change.merge,
        after=options.debounce_ms / 1000,
        max_wait=options.debounce_max_ms / 1000,
    )
    cp = ControlPlane(options, store, cache, sync, registry, pusher, debouncer)
    batches: AsyncIterator[Any] = aiter(source)
    started = time.perf_counter()
    store.apply_all(await anext(batches))
    store.mesh()  # build now, so /ready means "loaded and translatable"
    log.info(
        "loaded %d objects (%d rejected) from %s in %.3fs",
        len(store.objects()),
        len({(e.kind, e.namespace, e.name) for e in store.errors()}),
        where,
        time.perf_counter() - started,
    )
    servicer = AdsServicer(cache, pusher.resolve, sync, metrics, serve_secrets=False)
    server, cp.xds_port = await start_xds_server(options.xds_address, servicer)
    cp._stops.append(lambda: server.stop(grace=1.0))
    if options.xds_tls_address:
        cp.tls = await _start_tls(options, cp, metrics, _service_accounts(source, cp))
        cp.xds_tls_port = cp.tls.port
        cp._stops.append(cp.tls.stop)
    sources = DebugSources(
        ready=lambda: cp.ready,
        registry=registry,
        sync_status=sync,
        connections=cache.connections,
        store=store,
        config_status=ConfigStatus(store, cache, sync, pusher.versions).report,
    )
    runner, cp.http_port = await start_debug_server(build_app(sources), options.http_address)
    cp._stops.append(runner.cleanup)
    cp._stops.append(source.close if isinstance(source, KubernetesSource) else _stopper(source))
    cp.tasks.append(asyncio.create_task(debouncer.run(), name="debounce"))
    cp.tasks.append(asyncio.create_task(_follow(batches, store, debouncer), name="watch"))
    cp.ready = True
    log.info(
        "xDS on %s, TLS xDS on %s, debug on %s",
        _addr(options.xds_address, cp.xds_port),
        _addr(options.xds_tls_address, cp.xds_tls_port) if cp.tls else "(off)",
        _addr(options.http_address, cp.http_port),
    )
    return cp


def _config_source(options: ServeOptions) -> tuple[DirectoryWatcher | KubernetesSource, str]:
    """The watched directories, or the cluster (KubeconfigError if it cannot be reached)."""
    if options.kubernetes:
        source = KubernetesSource(load_access(options.kubeconfig))
        return source, source.server
    return DirectoryWatcher(list(options.config_dirs)), ", ".join(options.config_dirs)


def _stopper(watcher: DirectoryWatcher) -> Callable[[], Awaitable[None]]:
    async def stop() -> None:
        watcher.stop()

    return stop


def _service_accounts(
    source: DirectoryWatcher | KubernetesSource, cp: ControlPlane
) -> ServiceAccountAuthenticator | None:
    """On Kubernetes, the TLS port also takes service account tokens, checked by TokenReview
    with serve's own credentials (as istiod does); None elsewhere."""
    if not isinstance(source, KubernetesSource):
        return None
    reviewer = TokenReviewer(source.access)
    cp._stops.append(reviewer.close)

    async def review(token: str) -> str:
        try:
            return await reviewer.username(token)
        except TokenRejected as exc:
            raise BadToken(str(exc)) from None
        except ReviewError as exc:
            raise ReviewUnavailable(str(exc)) from None

    return ServiceAccountTokens(review, cp.options.gateway_service_accounts)


async def _start_tls(
    options: ServeOptions,
    cp: ControlPlane,
    metrics: XdsMetrics,
    service_accounts: ServiceAccountAuthenticator | None,
) -> TlsPort:
    """The authenticated port: CA from --state-dir, token checks, per-identity SDS."""
    return await start_tls_port(
        options.xds_tls_address,
        state_dir=options.state_dir,
        trust_domain=options.trust_domain,
        tls_sans=options.tls_sans,
        cert_ttl=datetime.timedelta(seconds=options.cert_ttl_s),
        key_type=options.key_type,
        cache=cp.cache,
        resolver=cp.pusher.resolve,
        sync_status=cp.sync_status,
        metrics=metrics,
        registry=cp.registry,
        mesh=cp.store.mesh,
        service_accounts=service_accounts,
    )


async def _follow(batches: Any, store: ConfigStore, debouncer: Debouncer[Change]) -> None:
    """Apply each batch of changes (files or cluster) and hand what changed to the debouncer."""
    async for batch in batches:
        change = store.apply_all(batch)
        if not change.is_empty:
            debouncer.submit(change)


def _addr(address: str, port: int) -> str:
    return f"{address.rpartition(':')[0]}:{port}"


async def serve(options: ServeOptions) -> int:
    """Run until SIGINT/SIGTERM."""
    cp = await start(options)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopped.set)
    await stopped.wait()
    log.info("stopping")
    await cp.stop()
    return 0


def run(options: ServeOptions) -> int:
    """`meshplane serve`."""
    configure_logging(options)
    try:
        return asyncio.run(serve(options))
    except (NotImplementedError, KubeconfigError) as exc:
        log.error("%s", exc)
        return 2
