"""Auto mTLS toward a workload whose own PeerAuthentication is DISABLE, with real Envoy: the
client sidecar must speak plaintext to it (Istio drops the endpoint's tlsMode in EDS), and
mTLS again once the policy turns STRICT.

Without that rule the client keeps offering mTLS to a server sidecar that only has a
plaintext filter chain, and every request fails (503, upstream connect error).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from mesh_harness import ControlPlane, Envoy, free_port, http_get, wait_for, write_atomically
from test_mtls_traffic import CLIENT_ID, CONFIG, xfcc_app

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

SERVER_POLICY = """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: srv, namespace: demo}}
spec:
  selector: {{matchLabels: {{app: srv}}}}
  mtls: {{mode: {mode}}}
"""


def synced(cp: ControlPlane, proxy: Envoy) -> bool:
    """Listeners and clusters acknowledged, nothing STALE or NACKed (a DISABLE server with
    no outbound cluster references no secret, so it may never ask for SDS)."""
    rows = cp.json("/debug/syncz")
    assert isinstance(rows, list)
    for row in rows:
        if row["proxy"].startswith(proxy.id_prefix):
            types = row["types"]
            acked = all(types[t]["status"] == "SYNCED" for t in ("cds", "lds"))
            return acked and all(v["status"] in ("SYNCED", "NOT_SENT") for v in types.values())
    return False


@pytest.fixture
def mesh(tmp_path: Path, logdir: Path) -> Iterator[tuple[int, int, Path]]:
    inbound, outbound = free_port(), free_port()
    config = tmp_path / "config"
    config.mkdir()
    with contextlib.ExitStack() as stack, xfcc_app() as app:
        (config / "mesh.yaml").write_text(
            CONFIG.format(inbound=inbound, outbound=outbound, app=app)
        )
        (config / "pa.yaml").write_text(SERVER_POLICY.format(mode="DISABLE"))
        cp = ControlPlane(config, logdir)
        stack.callback(cp.stop)
        wait_for("control plane ready", lambda: cp.get("/ready")[0] == 200)
        proxies = []
        for workload, sa in (("srv", "server"), ("cli", "client")):
            proxy = Envoy(
                cp,
                logdir,
                kind="sidecar",
                workload=workload,
                namespace="demo",
                labels=f"app={workload}",
                service_account=sa,
                tls=True,
                extra=("--interception", "NONE"),
            )
            stack.callback(proxy.stop)
            proxies.append(proxy)
        for proxy in proxies:
            wait_for(f"{proxy.id_prefix} synced", lambda p=proxy: synced(cp, p))  # type: ignore[misc]
        yield inbound, outbound, config


def mesh_get(outbound: int) -> tuple[int, str]:
    return http_get(f"http://127.0.0.1:{outbound}/", host="srv.demo.svc.cluster.local")


def test_disabled_workload_is_reached_in_plaintext_then_mtls_when_strict(
    mesh: tuple[int, int, Path],
) -> None:
    inbound, outbound, config = mesh
    wait_for("mesh request to the DISABLE workload", lambda: mesh_get(outbound)[0] == 200)
    for _ in range(5):
        status, xfcc = mesh_get(outbound)
        # Plaintext all the way: the server sidecar had no client certificate to forward.
        assert (status, xfcc) == (200, "-")
    assert http_get(f"http://127.0.0.1:{inbound}/", timeout=1.0)[0] == 200

    write_atomically(config / "pa.yaml", SERVER_POLICY.format(mode="STRICT"))
    wait_for("mTLS once STRICT", lambda: CLIENT_ID in mesh_get(outbound)[1], timeout=20)
    assert http_get(f"http://127.0.0.1:{inbound}/", timeout=1.0)[0] == 0  # plaintext refused
