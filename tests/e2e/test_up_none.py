"""`meshplane up` in INTERCEPTION_MODE=NONE, run as a user runs it: a sidecar per pod of
examples/bookinfo-mesh, the ready line, a page routed by the VirtualService, mutual TLS
between sidecars (reviews sees productpage's SPIFFE ID), a live route edit under load with
no failed request, and nothing left behind after SIGTERM. Uses the gateway's port 8080 (as
the demo does) and pod addresses in 127.0.10-12.0/24."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from mesh_harness import BIN, free_port, http_get, wait_for, write_atomically
from test_demo import alive, children_of

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PRODUCTPAGE_ID = "URI=spiffe://cluster.local/ns/default/sa/bookinfo-productpage"


def test_up_runs_bookinfo_with_sidecars_and_follows_edits(tmp_path: Path) -> None:
    example = tmp_path / "bookinfo-mesh"
    shutil.copytree(ROOT / "examples" / "bookinfo-mesh", example)
    out = tmp_path / "up.out"
    debug = f"127.0.0.1:{free_port()}"
    cmd = [str(BIN / "meshplane"), "up", str(example), "--http-address", debug]
    with open(out, "wb") as sink:
        up = subprocess.Popen(
            [*cmd, "--workdir", str(tmp_path / "work")], stdout=sink, stderr=subprocess.STDOUT
        )
    started: list[int] = []
    try:
        wait_for(
            "mesh ready",
            lambda: "mesh ready:" in out.read_text() or up.poll() is not None,
            timeout=60,
        )
        text = out.read_text()
        assert up.poll() is None, text
        assert "INTERCEPTION_MODE=NONE" in text
        url = re.search(r"mesh ready: (\S+)", text).group(1)  # type: ignore[union-attr]
        assert url == "http://127.0.0.1:8080/productpage"
        started = children_of(up.pid)
        assert len(started) == 14, started  # control plane, gateway, 6 apps, 6 sidecars

        status, page = http_get(url)
        assert status == 200 and "William Shakespeare" in page, page
        assert re.search(r"reviews served by: reviews-v[13]", page), page
        assert PRODUCTPAGE_ID in page, page  # reviews' sidecar saw productpage's cert
        # STRICT: a pod's inbound listener refuses plaintext.
        assert http_get("http://127.0.10.3:9080/reviews/0", timeout=1.0)[0] == 0

        failures: list[tuple[int, str]] = []
        done = threading.Event()
        sent = 0

        def load() -> None:
            nonlocal sent
            while not done.is_set() and sent < 3000:  # bounded
                status, body = http_get(url)
                sent += 1
                if status != 200 or "reviews served by: reviews-v" not in body:
                    failures.append((status, body[:300]))

        worker = threading.Thread(target=load, daemon=True)
        worker.start()
        try:
            vs = example / "virtual-service-reviews.yaml"
            write_atomically(
                vs,
                vs.read_text()
                .replace("subset: v1\n      weight: 50", "subset: v2\n      weight: 50")
                .replace("subset: v3\n      weight: 50", "subset: v2\n      weight: 50"),
            )

            def only_v2() -> bool:
                pages = [http_get(url)[1] for _ in range(5)]
                return all("reviews served by: reviews-v2" in p for p in pages)

            wait_for("reviews v2 only", only_v2, timeout=15)
            before = sent
            wait_for("more requests after the switch", lambda: sent > before + 20, timeout=15)
        finally:
            done.set()
            worker.join(timeout=10)
        assert failures == []
        assert "color:black" in http_get(url)[1]  # v2 shows black stars, fetched from ratings
    finally:
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
