"""Resolving a cluster from kubeconfig files or a pod's service account, as kubectl does."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml
from fake_apiserver_pki import make_pki

from meshplane.sources.kubeconfig import KubeconfigError, load_access


def kubeconfig(
    path: Path,
    cluster: dict[str, Any],
    user: dict[str, Any] | None = None,
    current: str = "ctx",
    name: str = "c",
) -> Path:
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": current,
        "clusters": [{"name": name, "cluster": cluster}],
        "contexts": [{"name": "ctx", "context": {"cluster": name, "user": "u"}}],
        "users": [{"name": "u", "user": user or {}}],
    }
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    return make_pki(tmp_path / "pki")


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def test_current_context_with_data_fields(tmp_path: Path, pki: Path) -> None:
    path = kubeconfig(
        tmp_path / "config",
        {"server": "https://127.0.0.1:6443/", "certificate-authority-data": b64(pki / "ca.crt")},
        {
            "client-certificate-data": b64(pki / "client.crt"),
            "client-key-data": b64(pki / "client.key"),
        },
    )
    access = load_access(str(path), env={})
    assert access.server == "https://127.0.0.1:6443"
    assert access.ca_pem == (pki / "ca.crt").read_bytes()
    assert access.client_key_pem == (pki / "client.key").read_bytes()
    assert access.ssl_context() is not None
    assert str(path) in access.source


def test_file_paths_are_relative_to_the_kubeconfig(tmp_path: Path, pki: Path) -> None:
    (tmp_path / "token").write_text("abc\n")
    path = kubeconfig(
        tmp_path / "config",
        {"server": "https://k:6443", "certificate-authority": "pki/ca.crt"},
        {"tokenFile": "token"},
    )
    access = load_access(str(path), env={})
    assert access.ca_pem == (pki / "ca.crt").read_bytes()
    assert access.bearer_token() == "abc"
    (tmp_path / "token").write_text("rotated")
    assert access.bearer_token() == "rotated"  # read again: projected tokens rotate


def test_kubeconfig_env_merges_first_wins(tmp_path: Path) -> None:
    a = kubeconfig(tmp_path / "a", {"server": "http://a:1"}, {"token": "ta"}, name="c")
    b = tmp_path / "b"
    b.write_text(
        yaml.safe_dump(
            {
                "current-context": "other",
                "clusters": [{"name": "c", "cluster": {"server": "http://b:1"}}],
                "contexts": [{"name": "other", "context": {"cluster": "c", "user": "u"}}],
            }
        )
    )
    missing = tmp_path / "missing"
    access = load_access(env={"KUBECONFIG": f"{missing}:{a}:{b}"})
    assert (access.server, access.token) == ("http://a:1", "ta")


def test_in_cluster_when_nothing_else_is_given(tmp_path: Path, pki: Path) -> None:
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("pod-token")
    (sa / "ca.crt").write_bytes((pki / "ca.crt").read_bytes())
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    access = load_access(env=env, service_account_dir=sa)
    assert access.server == "https://10.96.0.1:443"
    assert access.bearer_token() == "pod-token"
    assert access.ca_pem == (pki / "ca.crt").read_bytes()
    v6 = load_access(env={**env, "KUBERNETES_SERVICE_HOST": "fd00::1"}, service_account_dir=sa)
    assert v6.server == "https://[fd00::1]:443"


def test_home_kube_config_last(tmp_path: Path) -> None:
    (tmp_path / ".kube").mkdir()
    kubeconfig(tmp_path / ".kube" / "config", {"server": "http://home:1"})
    assert load_access(env={"HOME": str(tmp_path)}).server == "http://home:1"
    with pytest.raises(KubeconfigError, match="no cluster configured"):
        load_access(env={"HOME": str(tmp_path / "nowhere")})


@pytest.mark.parametrize(
    ("cluster", "user", "current", "message"),
    [
        ({"server": "http://a:1"}, None, "nope", r"current-context 'nope': no context named"),
        ({"server": "a:1"}, None, "ctx", r"clusters\[name=c\]\.cluster\.server: want an http"),
        (
            {"server": "https://a:1", "certificate-authority-data": "%%%"},
            None,
            "ctx",
            r"clusters\[name=c\]\.cluster\.certificate-authority-data: not valid base64",
        ),
        (
            {"server": "https://a:1", "certificate-authority-data": "bm90IGEgY2VydA=="},
            None,
            "ctx",
            r"clusters\[name=c\]\.cluster\.certificate-authority: not PEM",
        ),
        (
            {"server": "https://a:1", "certificate-authority": "nofile.crt"},
            None,
            "ctx",
            r"certificate-authority: cannot read .*nofile\.crt",
        ),
        (
            {"server": "https://a:1"},
            {"exec": {"command": "aws"}},
            "ctx",
            r"users\[name=u\]\.user\.exec: not supported",
        ),
        (
            {"server": "https://a:1"},
            {"client-certificate-data": "eA=="},
            "ctx",
            r"users\[name=u\]\.user\.client-key: required",
        ),
    ],
    ids=["context", "server", "ca-base64", "ca-pem", "ca-file", "exec", "half-pair"],
)
def test_errors_name_file_and_field(
    tmp_path: Path,
    cluster: dict[str, Any],
    user: dict[str, Any] | None,
    current: str,
    message: str,
) -> None:
    path = kubeconfig(tmp_path / "config", cluster, user, current=current)
    with pytest.raises(KubeconfigError, match=message) as err:
        load_access(str(path), env={})
    assert str(path) in str(err.value)


def test_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(KubeconfigError, match="no such kubeconfig file"):
        load_access(str(tmp_path / "absent"), env={})
    (tmp_path / "broken").write_text("clusters: [unclosed\n")
    with pytest.raises(KubeconfigError, match="broken: not valid YAML"):
        load_access(str(tmp_path / "broken"), env={})
