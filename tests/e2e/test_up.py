"""`meshplane up examples/bookinfo` (what `make demo` runs), run as a user runs it, in both
interception modes: REDIRECT (a network namespace per pod, iptables; needs root) and NONE
(loopback addresses, no root). Asserts the ready line, a page routed by the VirtualService,
mutual TLS between sidecars (reviews sees productpage's SPIFFE ID), a live route edit under
load with no failed request, a killed control plane leaving traffic flowing and proxies
resyncing once `up` restarts it, and nothing left behind after SIGTERM (no process, no
namespace, no /etc/netns entry). Uses the gateway's port 8080, as the demo does."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mesh_harness import BIN, free_port, http_get, wait_for, write_atomically

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PRODUCTPAGE_ID = "URI=spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
URL = "http://127.0.0.1:8080/productpage"


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; only its parent has not reaped it yet.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def netns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def redirect_possible() -> bool:
    tools = ("ip", "iptables", "setpriv")
    return os.geteuid() == 0 and all(shutil.which(t) for t in tools)


MODES = [
    "NONE",
    pytest.param(
        "REDIRECT",
        marks=pytest.mark.skipif(not redirect_possible(), reason="needs root, ip and iptables"),
    ),
]


class Load:
    """Bounded page requests in a thread, recording every failure."""

    def __init__(self, limit: int = 4000) -> None:
        self.failures: list[tuple[int, str]] = []
        self.sent = 0
        self.limit = limit
        self.done = threading.Event()
        self.worker = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.done.is_set() and self.sent < self.limit:
            status, body = http_get(URL)
            self.sent += 1
            if status != 200 or "reviews served by: reviews-v" not in body:
                self.failures.append((status, body[:300]))

    def __enter__(self) -> Load:
        self.worker.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.done.set()
        self.worker.join(timeout=10)

    def more(self, n: int, timeout: float = 20) -> None:
        before = self.sent
        wait_for(f"{n} more requests", lambda: self.sent >= before + n, timeout=timeout)


def only(version: str) -> bool:
    pages = [http_get(URL)[1] for _ in range(5)]
    return all(f"reviews served by: reviews-{version}" in p for p in pages)


def edit_reviews(example: Path, old: str, new: str) -> None:
    vs = example / "virtual-service-reviews.yaml"
    text = vs.read_text()
    assert old in text
    write_atomically(vs, text.replace(old, new))


def set_replicas(example: Path, deployment: str, replicas: int) -> None:
    path = example / "deployments.yaml"
    docs = path.read_text().split("\n---\n")
    for i, doc in enumerate(docs):
        if f"name: {deployment}\n" in doc:
            docs[i] = re.sub(r"replicas: \d+", f"replicas: {replicas}", doc)
    write_atomically(path, "\n---\n".join(docs))


def endpoints_of(debug: str, service: str) -> int:
    status, body = http_get(f"http://{debug}/debug/registryz")
    assert status == 200
    host = f"{service}.default.svc.cluster.local"
    return next(len(s["endpoints"]) for s in json.loads(body) if s["hostname"] == host)


def all_synced(debug: str, proxies: int) -> bool:
    status, body = http_get(f"http://{debug}/debug/syncz")
    if status != 200:
        return False
    rows = json.loads(body)
    ok = [
        r for r in rows if all(t["status"] in ("SYNCED", "NOT_SENT") for t in r["types"].values())
    ]
    return len(rows) == proxies and len(ok) == proxies


PLAIN_GET = (
    "import socket,sys; s=socket.create_connection((sys.argv[1], 9080), 2); "
    "s.sendall(b'GET /reviews/0 HTTP/1.1\\r\\nHost: reviews\\r\\n\\r\\n'); s.settimeout(2)\n"
    "try: print(s.recv(100))\nexcept OSError as e: print(e)"
)


def plaintext_refused(mode: str, pod: str) -> bool:
    """A plaintext request to the pod's port 9080 gets no HTTP answer (STRICT mTLS); in
    REDIRECT mode sent from the node namespace, in NONE mode to the pod's loopback IP."""
    if mode == "NONE":
        return http_get("http://127.0.10.3:9080/reviews/0", timeout=1.0)[0] == 0
    node = next(n for n in netns_names() if n.endswith("-node"))
    pod_ns = next(n for n in netns_names() if n.endswith(f"-{pod}"))
    ip = (
        subprocess.run(
            ["ip", "-n", pod_ns, "-4", "-o", "addr", "show", "eth0"], capture_output=True, text=True
        )
        .stdout.split()[3]
        .split("/")[0]
    )
    cmd = ["ip", "netns", "exec", node, sys.executable, "-c", PLAIN_GET, ip]
    answer = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
    return "HTTP/1.1" not in answer


POD_GET = (
    "import sys, urllib.request; "
    "print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"
)


def pod_get(mode: str, pod: str, index: int, path: str) -> str:
    """GET a sidecar's stats port (15090): on its pod IP (NONE) or inside its netns."""
    if mode == "NONE":
        status, body = http_get(f"http://127.0.10.{index}:15090{path}")
        assert status == 200
        return body
    pod_ns = next(n for n in netns_names() if n.endswith(f"-{pod}"))
    cmd = ["ip", "netns", "exec", pod_ns, sys.executable, "-c", POD_GET]
    out = subprocess.run([*cmd, f"http://127.0.0.1:15090{path}"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


CANARY_SERVICE = """apiVersion: v1
kind: Service
metadata:
  name: details-canary
spec:
  ports:
  - port: 9080
    name: http
  selector:
    app: details
"""


def canary_answers() -> bool:
    """From inside productpage's pod, by name: resolved by its /etc/hosts, sent by iptables
    through its sidecar, which routes the new host (mTLS to details' sidecar)."""
    pod_ns = next(n for n in netns_names() if n.endswith("-productpage-v1-0"))
    cmd = ["ip", "netns", "exec", pod_ns, sys.executable, "-c", POD_GET]
    out = subprocess.run(
        [*cmd, "http://details-canary:9080/details/0"], capture_output=True, text=True
    )
    return out.returncode == 0 and "William Shakespeare" in out.stdout


def traced_through_reviews() -> bool:
    status, body = http_get("http://127.0.0.1:9411/api/v2/traces?serviceName=reviews-v3-0.default")
    if status != 200:
        return False
    for trace in json.loads(body):
        names = {s.get("localEndpoint", {}).get("serviceName", "") for s in trace}
        if {"istio-ingressgateway.istio-system", "productpage-v1-0.default"} <= names:
            return True
    return False


def control_plane_pid(up_pid: int) -> int | None:
    for pid in children_of(up_pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in cmdline and any(part.endswith(b"meshplane") for part in cmdline):
            return pid
    return None


@pytest.fixture
def up_mesh(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], Path, str, Path, str]]:
    mode = request.param
    example = tmp_path / "bookinfo"
    shutil.copytree(ROOT / "examples" / "bookinfo", example)
    out = tmp_path / "up.out"
    debug = f"127.0.0.1:{free_port()}"
    cmd = [str(BIN / "meshplane"), "up", str(example), "--http-address", debug]
    cmd += ["--workdir", str(tmp_path / "work")]
    namespaces_before = netns_names() if shutil.which("ip") else set()
    with open(out, "wb") as sink:
        up = subprocess.Popen(
            cmd,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "INTERCEPTION_MODE": mode},
        )
    started: list[int] = []
    try:
        wait_for(
            "mesh ready", lambda: "mesh ready:" in out.read_text() or up.poll() is not None, 90
        )
        assert up.poll() is None, out.read_text()
        assert f"INTERCEPTION_MODE={mode}" in out.read_text()
        started = children_of(up.pid)
        yield up, example, debug, out, mode
    finally:
        started = started or children_of(up.pid)
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(30)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()
            raise
    assert up.returncode == 0, out.read_text()
    deadline = time.monotonic() + 10
    while any(alive(p) for p in started) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [p for p in started if alive(p)] == []
    if shutil.which("ip"):
        assert netns_names() - namespaces_before == set()
    for etc in (Path("/etc/netns"), Path("/run/meshplane/netns")):
        if etc.is_dir():
            assert [p.name for p in etc.iterdir() if p.name.startswith("meshplane-")] == []


@pytest.mark.parametrize("up_mesh", MODES, indirect=True)
def test_up_runs_bookinfo_and_survives_edits_and_a_control_plane_restart(
    up_mesh: tuple[subprocess.Popen[bytes], Path, str, Path, str],
) -> None:
    up, example, debug, out, mode = up_mesh
    text = out.read_text()
    assert re.search(r"mesh ready: (\S+)", text).group(1) == URL  # type: ignore[union-attr]
    # control plane, trace collector, gateway, 6 apps, 6 sidecars
    assert len(children_of(up.pid)) == 15

    status, page = http_get(URL)
    assert status == 200 and "William Shakespeare" in page, page
    assert re.search(r"reviews served by: reviews-v[13]", page), page
    assert PRODUCTPAGE_ID in page, page  # reviews' sidecar saw productpage's certificate
    assert plaintext_refused(mode, "reviews-v1-0")  # STRICT: no mTLS, no entry

    with Load() as load:
        edit_reviews(example, "subset: v1\n      weight: 50", "subset: v2\n      weight: 50")
        edit_reviews(example, "subset: v3\n      weight: 50", "subset: v2\n      weight: 50")
        wait_for("reviews v2 only", lambda: only("v2"), timeout=15)
        load.more(20)

        # The control plane dies: proxies keep their config and traffic keeps flowing.
        old = control_plane_pid(up.pid)
        assert old is not None
        os.kill(old, signal.SIGKILL)
        load.more(30)
        wait_for(
            "the control plane restarted", lambda: control_plane_pid(up.pid) not in (None, old), 20
        )
        assert "restarting it" in out.read_text()
        wait_for("every proxy resynced", lambda: all_synced(debug, 7), timeout=30)
        # The resynced proxies follow new config.
        edit_reviews(example, "subset: v2\n      weight: 50", "subset: v3\n      weight: 50")
        wait_for("reviews v3 only", lambda: only("v3"), timeout=15)
        load.more(20)
    assert load.failures == []
    assert "color:red" in http_get(URL)[1]  # v3 shows red stars, fetched from ratings

    # A Deployment scaled to 2 replicas and back while requests flow (reviews v3 calls ratings).
    with Load() as load:
        set_replicas(example, "ratings-v1", 2)
        wait_for("ratings-v1-1 started", lambda: "+ratings-v1-1" in out.read_text(), 15)
        wait_for("8 proxies synced", lambda: all_synced(debug, 8), timeout=30)
        wait_for("two ratings endpoints", lambda: endpoints_of(debug, "ratings") == 2, 10)
        load.more(30)
        set_replicas(example, "ratings-v1", 1)
        wait_for("ratings-v1-1 stopped", lambda: "-ratings-v1-1" in out.read_text(), 15)
        wait_for("7 proxies synced", lambda: all_synced(debug, 7), timeout=30)
        assert endpoints_of(debug, "ratings") == 1
        load.more(20)
    assert load.failures == []
    assert len(children_of(up.pid)) == 15

    if mode == "REDIRECT":  # a Service added while up runs: pods resolve it and reach it
        (example / "details-canary.yaml").write_text(CANARY_SERVICE)
        wait_for("hosts updated", lambda: "default/details-canary" in out.read_text(), 10)
        wait_for("details-canary through the mesh", canary_answers, timeout=15)

    # Telemetry: Istio-style labels on productpage's sidecar stats, one trace across hops.
    stats = pod_get(mode, "productpage-v1-0", 2, "/stats/prometheus")
    assert re.search(r'destination_service="reviews\.default\.svc\.cluster\.local"', stats)
    wait_for("a trace through gateway, productpage and reviews", traced_through_reviews, 20)
