"""A real Envoy on the TLS xDS port: token, per-identity SDS, and rotation without drops.

`meshplane bootstrap --token ... --ca-cert root-cert.pem` makes the bootstrap; a static
listener added to it terminates TLS with the SDS secrets `default` and `ROOTCA` (served
over ADS), so the test can hold a keep-alive connection to the workload certificate while
meshplane renews it (6 s certificates, renewed at half life).
"""

from __future__ import annotations

import calendar
import http.client
import json
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from mesh_harness import BIN, ControlPlane, Proc, free_port, http_get, wait_for

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

MESH = """\
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec:
  ports: [{name: http, port: 8000}]
  selector: {app: cart}
"""
SPIFFE = "spiffe://cluster.local/ns/shop/sa/cart"


def _sds(name: str) -> dict[str, Any]:
    # Exactly the translators' config source: Envoy shares one SDS subscription per
    # (config source, name), and a second, differently spelled source for the same name
    # over the same ADS stream gets nothing until the secret next changes.
    source = {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"}
    return {"name": name, "sds_config": source}


def _probe_listener(port: int) -> dict[str, Any]:
    """HTTPS on `port` with the workload certificate from SDS; answers 200 "ok"."""
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager"
        ".v3.HttpConnectionManager",
        "stat_prefix": "probe",
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"prefix": "/"},
                            "direct_response": {"status": 200, "body": {"inline_string": "ok"}},
                        }
                    ],
                }
            ]
        },
    }
    tls = {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
        "DownstreamTlsContext",
        "require_client_certificate": False,
        "common_tls_context": {
            "tls_certificate_sds_secret_configs": [_sds("default")],
            "validation_context_sds_secret_config": _sds("ROOTCA"),
        },
    }
    return {
        "name": "probe",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [
            {
                "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": tls},
                "filters": [
                    {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                ],
            }
        ],
    }


class TlsEnvoy(Proc):
    """Envoy bootstrapped for the TLS port with a token, plus the probe listener."""

    def __init__(self, cp: ControlPlane, logdir: Path, name: str, token: str) -> None:
        self.admin_port, self.probe_port = free_port(), free_port()
        boot = logdir / f"{name}.json"
        subprocess.run(
            [
                *(str(BIN / "meshplane"), "bootstrap", "--workload", name, "--namespace", "shop"),
                *("--service-account", "cart", "--token", token),
                *("--ca-cert", str(cp.state_dir / "root-cert.pem")),
                *("--xds-address", f"127.0.0.1:{cp.xds_tls_port}", "--delta"),
                *("--admin-port", str(self.admin_port), "--stats-port", "0", "--health-port", "0"),
                *("-o", str(boot)),
            ],
            check=True,
        )
        config = json.loads(boot.read_text())
        config["static_resources"].setdefault("listeners", []).append(
            _probe_listener(self.probe_port)
        )
        boot.write_text(json.dumps(config))
        super().__init__(
            name,
            [
                *(str(BIN / "envoy"), "-c", str(boot), "--use-dynamic-base-id"),
                *("-l", "warning", "--drain-time-s", "1"),
            ],
            logdir,
        )

    def admin(self, path: str) -> str:
        status, body = http_get(f"http://127.0.0.1:{self.admin_port}{path}")
        return body if status == 200 else ""

    def stat(self, name: str) -> str:
        for line in self.admin(f"/stats?filter=^{name}$").splitlines():
            key, _, value = line.partition(": ")
            if key == name:
                return value
        return ""

    def workload_cert(self) -> dict[str, Any] | None:
        """The /certs entry of the SDS `default` certificate, if Envoy has one."""
        text = self.admin("/certs")
        if not text:
            return None
        for entry in json.loads(text).get("certificates", []):
            for cert in entry.get("cert_chain", []):
                if any(s.get("uri") == SPIFFE for s in cert.get("subject_alt_names", [])):
                    return dict(cert)
        return None


def _client_context(root: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(root))
    ctx.check_hostname = False  # the certificate's only name is its SPIFFE URI
    return ctx


def _peer_serial(conn: http.client.HTTPSConnection) -> int:
    assert isinstance(conn.sock, ssl.SSLSocket)
    der = conn.sock.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def _get(conn: http.client.HTTPSConnection) -> int:
    conn.request("GET", "/")
    resp = conn.getresponse()
    resp.read()
    return resp.status


def test_envoy_gets_its_certificate_and_keeps_connections_through_rotation(
    tmp_path: Path, logdir: Path
) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "mesh.yaml").write_text(MESH)
    cp = ControlPlane(config, logdir, "--cert-ttl", "6s")
    envoy: TlsEnvoy | None = None
    impostor: TlsEnvoy | None = None
    try:
        envoy = TlsEnvoy(cp, logdir, "cart", cp.token("shop", "cart"))
        wait_for(
            "the SPIFFE certificate in Envoy's /certs", lambda: envoy.workload_cert() is not None
        )
        assert envoy.stat("control_plane.connected_state") == "1"
        first = envoy.workload_cert()
        assert first is not None

        conn = http.client.HTTPSConnection(
            "127.0.0.1",
            envoy.probe_port,
            context=_client_context(cp.state_dir / "root-cert.pem"),
            timeout=5,
        )
        wait_for("the probe listener", lambda: _try(conn))
        local = conn.sock.getsockname() if conn.sock else None
        serial_on_open = _peer_serial(conn)

        # Watch at least two renewals; every sample must show an unexpired certificate and a
        # connected control plane.
        serials = {first["serial_number"]}
        deadline = time.monotonic() + 20
        while len(serials) < 3 and time.monotonic() < deadline:
            cert = envoy.workload_cert()
            assert cert is not None
            expires = calendar.timegm(time.strptime(cert["expiration_time"], "%Y-%m-%dT%H:%M:%SZ"))
            assert time.time() < expires, f"Envoy holds an expired certificate: {cert}"
            assert envoy.stat("control_plane.connected_state") == "1"
            serials.add(cert["serial_number"])
            time.sleep(0.2)
        assert len(serials) >= 3, f"renewals seen: {serials}"

        # The connection opened before the renewals is the same one and still serves.
        assert _get(conn) == 200
        assert conn.sock is not None and conn.sock.getsockname() == local
        assert _peer_serial(conn) == serial_on_open
        fresh = http.client.HTTPSConnection(
            "127.0.0.1",
            envoy.probe_port,
            context=_client_context(cp.state_dir / "root-cert.pem"),
            timeout=5,
        )
        assert _get(fresh) == 200
        assert _peer_serial(fresh) != serial_on_open  # new handshakes use the new certificate
        fresh.close()
        conn.close()
        assert int(envoy.stat("sds.default.update_rejected") or 0) == 0

        # A token for another identity: the TLS port refuses the stream.
        impostor = TlsEnvoy(cp, logdir, "intruder", cp.token("bank", "vault"))
        wait_for(
            "the refusal in meshplane's log",
            lambda: "PERMISSION_DENIED" in cp.output() and "intruder.shop" in cp.output(),
        )
        assert impostor.stat("control_plane.connected_state") in ("0", "")
        assert impostor.workload_cert() is None
    finally:
        for proc in (impostor, envoy):
            if proc is not None:
                proc.stop()
        cp.stop()
    log = cp.output()
    key = (cp.state_dir / "ca-key.pem").read_text().splitlines()[1]
    assert key not in log


def _try(conn: http.client.HTTPSConnection) -> bool:
    try:
        return _get(conn) == 200
    except (OSError, http.client.HTTPException):
        conn.close()
        return False
