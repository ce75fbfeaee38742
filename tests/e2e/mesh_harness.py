"""Processes for end-to-end tests: `meshplane serve`, Envoy, and tiny HTTP upstreams.

Everything binds loopback ports picked at run time and is stopped by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, host: str | None = None, timeout: float = 2.0) -> tuple[int, str]:
    req = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except OSError as exc:
        return 0, str(exc)


def wait_for(what: str, ok: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ok():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@contextlib.contextmanager
def upstream(name: str) -> Iterator[int]:
    """An HTTP/1.0 server answering every GET with its name; yields its port."""
    with behaving_upstream(name, protocol_version="HTTP/1.0") as port:
        yield port


class Proc:
    """A child process with its output in a file, stopped by PID."""

    def __init__(self, name: str, cmd: list[str], logdir: Path) -> None:
        self.log = logdir / f"{name}.log"
        self._out = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        self.p = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self._out.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


class ControlPlane(Proc):
    def __init__(self, config_dir: Path, logdir: Path, *extra: str) -> None:
        self.xds_port, self.http_port = free_port(), free_port()
        # The TLS port and the CA state (root-cert.pem, token key) of this control plane.
        self.xds_tls_port = free_port()
        self.state_dir = logdir / "state"
        super().__init__(
            "meshplane",
            [
                str(BIN / "meshplane"),
                "serve",
                "--config-dir",
                str(config_dir),
                "--xds-address",
                f"127.0.0.1:{self.xds_port}",
                "--http-address",
                f"127.0.0.1:{self.http_port}",
                "--debounce-ms",
                "50",
                "--xds-tls-address",
                f"127.0.0.1:{self.xds_tls_port}",
                "--state-dir",
                str(self.state_dir),
                *extra,
            ],
            logdir,
        )
        wait_for("meshplane /ready", lambda: self.get("/ready")[0] == 200)

    def get(self, path: str) -> tuple[int, str]:
        return http_get(f"http://127.0.0.1:{self.http_port}{path}")

    def json(self, path: str) -> object:
        status, body = self.get(path)
        assert status == 200, (path, status, body)
        return json.loads(body)

    def token(
        self, namespace: str, service_account: str, ttl: str = "1h", kind: str = "sidecar"
    ) -> str:
        """A join token for the TLS port (`meshplane token`), for a `kind` proxy."""
        done = subprocess.run(
            [
                *(str(BIN / "meshplane"), "token", "--namespace", namespace),
                *("--service-account", service_account, "--state-dir", str(self.state_dir)),
                *("--ttl", ttl, "--type", kind),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout.strip()


class Envoy(Proc):
    """A real Envoy bootstrapped by `meshplane bootstrap`."""

    def __init__(
        self,
        cp: ControlPlane,
        logdir: Path,
        *,
        kind: str,
        workload: str,
        namespace: str,
        labels: str,
        delta: bool = False,
        service_account: str = "",
        tls: bool = False,
        extra: tuple[str, ...] = (),
    ) -> None:
        """`tls`: connect to the TLS port with a token for namespace/service_account (so
        SDS serves `default`/`ROOTCA`); `extra`: more `meshplane bootstrap` flags."""
        self.admin_port = free_port()
        boot = logdir / f"{workload}.json"
        cmd = [
            str(BIN / "meshplane"),
            "bootstrap",
            "--type",
            kind,
            "--workload",
            workload,
            "--namespace",
            namespace,
            "--labels",
            labels,
            "--ip",
            "127.0.0.1",
            "--xds-address",
            f"127.0.0.1:{cp.xds_port}",
            "--admin-port",
            str(self.admin_port),
            "--stats-port",
            "0",
            "--health-port",
            "0",
            "-o",
            str(boot),
        ]
        if delta:
            cmd.append("--delta")
        if service_account:
            cmd += ["--service-account", service_account]
        if tls:
            token = cp.token(namespace, service_account or "default", kind=kind)
            cmd += ["--xds-address", f"127.0.0.1:{cp.xds_tls_port}", "--token", token]
            cmd += ["--ca-cert", str(cp.state_dir / "root-cert.pem")]
        cmd += extra
        subprocess.run(cmd, check=True)
        env_bin = str(BIN / "envoy")
        super().__init__(
            workload,
            [
                env_bin,
                "-c",
                str(boot),
                "--use-dynamic-base-id",
                "--drain-time-s",
                "1",
                "-l",
                "warning",
            ],
            logdir,
        )
        self.id_prefix = f"{kind}~127.0.0.1~{workload}.{namespace}~"

    def stats(self) -> dict[str, str]:
        status, body = http_get(f"http://127.0.0.1:{self.admin_port}/stats")
        if status != 200:
            return {}
        return dict(line.split(": ", 1) for line in body.splitlines() if ": " in line)

    def synced(self, cp: ControlPlane) -> bool:
        rows = cp.json("/debug/syncz")
        assert isinstance(rows, list)
        for row in rows:
            if row["proxy"].startswith(self.id_prefix):
                kinds = ("cds", "eds", "lds", "rds")
                return all(row["types"][t]["status"] == "SYNCED" for t in kinds)
        return False

    def rejected(self) -> int:
        return sum(int(v) for k, v in self.stats().items() if k.endswith("update_rejected"))


def write_atomically(path: Path, text: str) -> None:
    """Write then rename into place, as editors and deploy tools do."""
    tmp = path.with_suffix(".tmp~")
    tmp.write_text(text)
    os.replace(tmp, path)


@contextlib.contextmanager
def behaving_upstream(
    name: str, status: int = 200, delay: float = 0.0, protocol_version: str = "HTTP/1.1"
) -> Iterator[int]:
    """An HTTP server answering every GET with `status` and its name after `delay` seconds
    (a slow or failing backend); yields its port."""
    version = protocol_version

    class Handler(BaseHTTPRequestHandler):
        protocol_version = version

        def do_GET(self) -> None:
            if delay:
                time.sleep(delay)
            body = name.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


# --- TLS and TCP helpers (gateway TLS, TCP/TLS routes, TLS origination tests) ---


def write_test_pki(directory: Path, names: list[str]) -> dict[str, Path]:
    """A throwaway CA, a server certificate for `names` and a client certificate, as PEM
    files in `directory`: ca.pem, server.pem, server-key.pem, client.pem, client-key.pem."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def issue(
        subject: str,
        key: ec.EllipticCurvePrivateKey,
        ca: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    ) -> x509.Certificate:
        issuer, signer = ca if ca else (name(subject), key)
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca is None, path_length=None), critical=True)
        )
        if ca is not None and subject != "client":
            sans = [x509.DNSName(n) for n in names]
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(signer, hashes.SHA256())

    def write(stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        (directory / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (directory / f"{stem}-key.pem").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = issue("meshplane test CA", ca_key, None)
    write("ca", ca_cert, ca_key)
    for stem in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        write(stem, issue(stem, key, (ca_cert.subject, ca_key)), key)
    return {
        stem: directory / f"{stem}.pem"
        for stem in ("ca", "server", "server-key", "client", "client-key")
    }


@contextlib.contextmanager
def tls_upstream(name: str, pki: dict[str, Path], *, http: bool) -> Iterator[tuple[int, list[str]]]:
    """A TLS server with the PKI's server certificate. It answers each connection with its
    name (as an HTTP/1.1 200 response when `http`, else raw bytes) and records the SNI each
    client sent. Yields (port, recorded SNI names)."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki["server"], pki["server-key"])
    snis: list[str] = []

    def record_sni(_sock: ssl.SSLObject, sni: str | None, _ctx: ssl.SSLContext) -> None:
        snis.append(sni or "")

    context.sni_callback = record_sni  # type: ignore[assignment]
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            conn.settimeout(5)
            with context.wrap_socket(conn, server_side=True) as tls:
                if http:
                    data = b""
                    while b"\r\n\r\n" not in data and len(data) < 65536:
                        chunk = tls.recv(4096)
                        if not chunk:
                            return
                        data += chunk
                    body = name.encode()
                    head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n"
                    tls.sendall(head.encode() + b"Connection: close\r\n\r\n" + body)
                else:
                    tls.sendall(name.encode())

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1]), snis
    finally:
        stop.set()
        thread.join(5)
        listener.close()


@contextlib.contextmanager
def tcp_upstream(name: str) -> Iterator[int]:
    """A TCP server that writes its name to each connection and closes it; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with contextlib.suppress(OSError), conn:
                conn.sendall(name.encode())

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def tcp_read(port: int, timeout: float = 2.0) -> str:
    """Connect to 127.0.0.1:`port` and read until the peer closes; "" on any error."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            chunks = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
            return b"".join(chunks).decode(errors="replace")
    except OSError:
        return ""


def tls_read(
    port: int,
    sni: str,
    ca: Path,
    *,
    http: bool,
    client_cert: tuple[Path, Path] | None = None,
    timeout: float = 2.0,
) -> str:
    """Open TLS to 127.0.0.1:`port` with SNI `sni`, verifying against `ca` (optionally
    presenting a client certificate); with `http` send a GET for `sni`. Returns everything
    the server sent, or "error: ..." when the connection or handshake fails."""
    import ssl

    context = ssl.create_default_context(cafile=str(ca))
    if client_cert is not None:
        context.load_cert_chain(*client_cert)
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=sni) as tls,
        ):
            if http:
                request = f"GET / HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n"
                tls.sendall(request.encode())
            chunks = []
            while chunk := tls.recv(4096):
                chunks.append(chunk)
            return b"".join(chunks).decode(errors="replace")
    except (OSError, ssl.SSLError) as exc:
        return f"error: {exc}"


class NoneModeSidecar(Envoy):
    """A sidecar bootstrapped with ``--interception NONE``: its listeners bind where the
    Sidecar resource's egress/ingress entries say."""

    def __init__(
        self, cp: ControlPlane, logdir: Path, *, workload: str, namespace: str, labels: str
    ) -> None:
        self.admin_port = free_port()
        boot = logdir / f"{workload}.json"
        flags = (
            f"bootstrap --type sidecar --interception NONE --workload {workload}"
            f" --namespace {namespace} --labels {labels} --ip 127.0.0.1"
            f" --xds-address 127.0.0.1:{cp.xds_port} --admin-port {self.admin_port}"
            f" --stats-port 0 --health-port 0 -o {boot}"
        )
        subprocess.run([str(BIN / "meshplane"), *flags.split()], check=True)
        cmd = [str(BIN / "envoy"), "-c", str(boot), "--use-dynamic-base-id"]
        Proc.__init__(self, workload, [*cmd, "--drain-time-s", "1", "-l", "warning"], logdir)
        self.id_prefix = f"sidecar~127.0.0.1~{workload}.{namespace}~"


@contextlib.contextmanager
def client_first_upstream(name: str) -> Iterator[int]:
    """A TCP server that answers its name once the client has sent a line. Envoy's network
    RBAC decides on the client's first bytes, so a server that spoke first would be heard
    before the verdict (as in Istio)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            conn.settimeout(5)
            if conn.recv(1024):
                conn.sendall(name.encode())

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        listener.close()


class StatsNoneModeSidecar(Envoy):
    """A ``--interception NONE`` sidecar on its own loopback `ip` (as `meshplane up` gives
    each pod), with its Prometheus stats listener on `ip`:`stats_port`."""

    def __init__(
        self,
        cp: ControlPlane,
        logdir: Path,
        *,
        workload: str,
        namespace: str,
        labels: str,
        ip: str,
        stats_port: int,
    ) -> None:
        self.admin_port = free_port()
        self.ip, self.stats_port = ip, stats_port
        boot = logdir / f"{workload}.json"
        flags = (
            f"bootstrap --type sidecar --interception NONE --workload {workload}"
            f" --namespace {namespace} --labels {labels} --ip {ip}"
            f" --xds-address 127.0.0.1:{cp.xds_port} --admin-port {self.admin_port}"
            f" --stats-port {stats_port} --health-port 0 -o {boot}"
        )
        subprocess.run([str(BIN / "meshplane"), *flags.split()], check=True)
        cmd = [str(BIN / "envoy"), "-c", str(boot), "--use-dynamic-base-id"]
        # Access logs reach stdout within 0.2 s (Envoy's default is every 10 s).
        cmd += ["--file-flush-interval-msec", "200"]
        Proc.__init__(self, workload, [*cmd, "--drain-time-s", "1", "-l", "warning"], logdir)
        self.id_prefix = f"sidecar~{ip}~{workload}.{namespace}~"

    def prometheus(self) -> str:
        """The sidecar's /stats/prometheus as a scraper sees it ("" when not answering)."""
        status, body = http_get(f"http://{self.ip}:{self.stats_port}/stats/prometheus")
        return body if status == 200 else ""

    def config_dump(self) -> str:
        """Envoy's own /config_dump: what it has accepted."""
        return http_get(f"http://127.0.0.1:{self.admin_port}/config_dump", timeout=5)[1]


def free_port_on(ip: str) -> int:
    """A TCP port free on `ip` (a loopback address other than 127.0.0.1)."""
    with socket.socket() as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


class KubernetesControlPlane(ControlPlane):
    """`meshplane serve --kubernetes --kubeconfig PATH`: config from an API server."""

    def __init__(self, kubeconfig: Path, logdir: Path, *extra: str) -> None:
        self.xds_port, self.http_port = free_port(), free_port()
        self.xds_tls_port = free_port()
        self.state_dir = logdir / "state"
        cmd = [str(BIN / "meshplane"), "serve", "--kubernetes", "--kubeconfig", str(kubeconfig)]
        cmd += ["--xds-address", f"127.0.0.1:{self.xds_port}"]
        cmd += ["--http-address", f"127.0.0.1:{self.http_port}", "--debounce-ms", "50"]
        cmd += ["--xds-tls-address", f"127.0.0.1:{self.xds_tls_port}"]
        Proc.__init__(self, "meshplane", [*cmd, "--state-dir", str(self.state_dir), *extra], logdir)
        wait_for("meshplane /ready", lambda: self.get("/ready")[0] == 200)
