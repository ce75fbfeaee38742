"""The rendered examples in envoy-bootstrap/ are what the CLI writes, and Envoy accepts them.

Regenerate after an intended change with
`MESHPLANE_UPDATE_EXAMPLES=1 .venv/bin/pytest tests/bootstrap/test_bootstrap_examples.py`
and review the diff.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
EXAMPLES = REPO / "envoy-bootstrap" / "examples"
BIN = Path(sys.executable).parent
ROOT_CERT = "envoy-bootstrap/examples/example-root-cert.pem"

# file name -> `meshplane bootstrap` arguments (as in envoy-bootstrap/README.md)
CASES: dict[str, list[str]] = {
    "sidecar.json": [
        "--type=sidecar", "--namespace=default", "--workload=productpage-v1",
        "--service-account=bookinfo-productpage", "--ip=10.244.0.11",
        "--labels=app=productpage,version=v1",
    ],
    "router.json": [
        "--type=router", "--namespace=istio-system", "--workload=istio-ingressgateway",
        "--service-account=istio-ingressgateway", "--ip=10.244.0.5",
        "--labels=istio=ingressgateway,app=istio-ingressgateway",
    ],
    "sidecar-interception-none.json": [
        "--type=sidecar", "--namespace=vm", "--workload=ratings-vm",
        "--service-account=ratings", "--ip=127.0.0.1", "--labels=app=ratings,version=v1",
        "--interception=NONE", "--stats-port=0", "--health-port=0",
    ],
    "sidecar-tls.json": [
        "--type=sidecar", "--namespace=default", "--workload=reviews-v1",
        "--service-account=bookinfo-reviews", "--ip=10.244.0.12",
        "--labels=app=reviews,version=v1", "--xds-address=meshplane.istio-system.svc:15012",
        f"--ca-cert={ROOT_CERT}", "--token=EXAMPLE-TOKEN-NOT-VALID", "--delta",
    ],
}  # fmt: skip


def render(args: list[str]) -> str:
    done = subprocess.run(
        [str(BIN / "meshplane"), "bootstrap", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("name", sorted(CASES))
def test_example_matches_cli_output(name: str) -> None:
    rendered = render(CASES[name])
    path = EXAMPLES / name
    if os.environ.get("MESHPLANE_UPDATE_EXAMPLES"):
        path.write_text(rendered)
    assert path.exists(), f"missing {path}: run with MESHPLANE_UPDATE_EXAMPLES=1"
    assert path.read_text() == rendered


@pytest.mark.envoy
@pytest.mark.parametrize("name", sorted(CASES))
def test_envoy_accepts_example(name: str) -> None:
    done = subprocess.run(
        [str(BIN / "envoy"), "--mode", "validate", "--use-dynamic-base-id", "-l", "warning",
         "-c", str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK" in done.stdout + done.stderr


def test_cli_writes_a_token_bearing_bootstrap_owner_only(tmp_path: Path) -> None:
    out = tmp_path / "bootstrap.json"
    render([*CASES["sidecar-tls.json"], f"-o={out}"])
    assert out.stat().st_mode & 0o777 == 0o600
    assert out.read_text() == (EXAMPLES / "sidecar-tls.json").read_text()


def test_cli_reports_bad_options_and_exits_2() -> None:
    done = subprocess.run(
        [str(BIN / "meshplane"), "bootstrap", "--workload=a", "--token=t"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--token needs --ca-cert" in done.stderr
    assert done.stdout == ""
