"""`make demo`'s program, run as a user runs it: ready line, a real page, a live route edit,
and nothing left behind after SIGTERM. Uses the demo's fixed ports (8080, 15010, 15014)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mesh_harness import http_get, wait_for, write_atomically

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


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


def test_demo_serves_bookinfo_and_follows_edits(tmp_path: Path) -> None:
    example = tmp_path / "bookinfo"
    shutil.copytree(ROOT / "examples" / "bookinfo", example)
    out = tmp_path / "demo.out"
    with open(out, "wb") as sink:
        demo = subprocess.Popen(
            [sys.executable, "-m", "meshplane.local.demo", str(example)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    started: list[int] = []
    try:
        wait_for(
            "mesh ready",
            lambda: "mesh ready:" in out.read_text() or demo.poll() is not None,
            timeout=90,
        )
        text = out.read_text()
        assert demo.poll() is None, text
        url = re.search(r"mesh ready: (\S+)", text).group(1)  # type: ignore[union-attr]
        assert url == "http://127.0.0.1:8080/productpage"
        started = children_of(demo.pid)
        assert len(started) >= 8, started  # control plane, gateway, six apps

        status, page = http_get(url)
        assert status == 200
        assert "The Comedy of Errors" in page and "William Shakespeare" in page
        assert re.search(r"reviews served by: reviews-v[13]", page), page

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

        wait_for("reviews v2 only", only_v2, timeout=10)
        page = http_get(url)[1]
        assert "color:black" in page  # v2 shows black stars, fetched from ratings
    finally:
        demo.send_signal(signal.SIGTERM)
        try:
            demo.wait(30)
        except subprocess.TimeoutExpired:
            demo.kill()
            demo.wait()
            raise
    assert demo.returncode == 0, out.read_text()
    deadline = time.monotonic() + 10
    while any(alive(p) for p in started) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [p for p in started if alive(p)] == []
