"""`meshplane serve --kubernetes` refuses a kubeconfig it cannot use, naming file and field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def serve(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [str(BIN / "meshplane"), "serve", *args, "--xds-address", "127.0.0.1:0"]
    cmd += ["--http-address", "127.0.0.1:0", "--xds-tls-address", ""]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def test_bad_kubeconfig_exits_2_with_the_field(tmp_path: Path) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text(
        "current-context: ctx\n"
        "contexts: [{name: ctx, context: {cluster: prod, user: me}}]\n"
        "clusters: [{name: prod, cluster: {server: 'localhost:6443'}}]\n"
    )
    done = serve("--kubernetes", "--kubeconfig", str(config))
    assert done.returncode == 2, done.stderr
    assert f"{config}: clusters[name=prod].cluster.server: want an http(s):// URL" in done.stderr


def test_missing_kubeconfig_exits_2(tmp_path: Path) -> None:
    done = serve("--kubernetes", "--kubeconfig", str(tmp_path / "absent"))
    assert done.returncode == 2
    assert "absent: no such kubeconfig file" in done.stderr


def test_files_and_kubernetes_together_are_refused(tmp_path: Path) -> None:
    done = serve("--kubernetes", "--config-dir", str(tmp_path))
    assert done.returncode == 2
    assert "either --config-dir or --kubernetes" in done.stderr
