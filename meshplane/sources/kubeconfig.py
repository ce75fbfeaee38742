"""How to reach a Kubernetes API server: a kubeconfig's current context, or the pod's own.

kubectl's rules, in the order a user expects them: `--kubeconfig PATH`, else `$KUBECONFIG`
(files merged, the first to set a name wins), else the service account of the pod we run
in (KUBERNETES_SERVICE_HOST and /var/run/secrets/kubernetes.io/serviceaccount), else
~/.kube/config. A problem names the file and the field, because a kubeconfig is usually
written by some other tool and the user has to find what it got wrong.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["SERVICE_ACCOUNT_DIR", "ClusterAccess", "KubeconfigError", "load_access"]

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubeconfigError(Exception):
    """The cluster cannot be reached as configured; the message names file and field."""


@dataclass(frozen=True)
class ClusterAccess:
    """Server URL and credentials, resolved from one context."""

    server: str
    source: str
    """Where this came from, for messages: "kubeconfig PATH (context NAME)" or "in-cluster"."""
    ca_pem: bytes | None = None
    insecure: bool = False
    tls_server_name: str = ""
    client_cert_pem: bytes | None = None
    client_key_pem: bytes | None = None
    token: str = ""
    token_file: str = ""
    """Read again for every request: projected service-account tokens are rotated."""

    def bearer_token(self) -> str:
        """The token to send now ("" for none)."""
        if self.token_file:
            try:
                return Path(self.token_file).read_text().strip()
            except OSError as exc:
                raise KubeconfigError(f"{self.source}: cannot read token file: {exc}") from exc
        return self.token

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS settings for an https server (None for http)."""
        if not self.server.startswith("https://"):
            return None
        ctx = ssl.create_default_context()
        if self.ca_pem:
            ctx = ssl.create_default_context(cadata=self.ca_pem.decode("ascii", "replace"))
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.client_cert_pem and self.client_key_pem:
            _load_client_pair(ctx, self.client_cert_pem, self.client_key_pem)
        return ctx


def _load_client_pair(ctx: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    """ssl only loads a key pair from files: write them to a private temp dir, then drop it."""
    with tempfile.TemporaryDirectory(prefix="meshplane-kube-") as tmp:
        cert_path, key_path = Path(tmp) / "client.crt", Path(tmp) / "client.key"
        for path, data in ((cert_path, cert), (key_path, key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
        try:
            ctx.load_cert_chain(cert_path, key_path)
        except ssl.SSLError as exc:
            raise KubeconfigError(f"client certificate and key do not load: {exc}") from exc


def load_access(
    kubeconfig: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    service_account_dir: Path = SERVICE_ACCOUNT_DIR,
) -> ClusterAccess:
    """Resolve which cluster to talk to, with kubectl's precedence (see module docstring)."""
    env = os.environ if env is None else env
    if kubeconfig:
        return _from_files([Path(kubeconfig)], explicit=True)
    listed = [Path(p) for p in env.get("KUBECONFIG", "").split(os.pathsep) if p]
    if listed:
        return _from_files(listed, explicit=False)
    if env.get("KUBERNETES_SERVICE_HOST") and (service_account_dir / "token").is_file():
        return _in_cluster(env, service_account_dir)
    default = Path(env.get("HOME") or Path.home()) / ".kube" / "config"
    if default.is_file():
        return _from_files([default], explicit=True)
    raise KubeconfigError(
        "no cluster configured: give --kubeconfig PATH, set KUBECONFIG, "
        f"or run in a pod with a service account (no {default})"
    )


def _in_cluster(env: Mapping[str, str], sa_dir: Path) -> ClusterAccess:
    host = env["KUBERNETES_SERVICE_HOST"]
    port = env.get("KUBERNETES_SERVICE_PORT", "443")
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    ca = sa_dir / "ca.crt"
    return ClusterAccess(
        server=f"https://{host}:{port}",
        source=f"in-cluster ({sa_dir})",
        ca_pem=ca.read_bytes() if ca.is_file() else None,
        token_file=str(sa_dir / "token"),
    )


def _from_files(paths: list[Path], *, explicit: bool) -> ClusterAccess:
    """Merge kubeconfig files as kubectl does and resolve the current context."""
    merged: dict[str, dict[str, tuple[Path, dict[str, Any]]]] = {
        "clusters": {},
        "users": {},
        "contexts": {},
    }
    current: tuple[Path, str] | None = None
    for path in paths:
        if not path.is_file():
            if explicit:
                raise KubeconfigError(f"{path}: no such kubeconfig file")
            continue  # kubectl skips missing KUBECONFIG entries
        doc = _read_yaml(path)
        if current is None and doc.get("current-context"):
            current = (path, str(doc["current-context"]))
        for section in merged:
            for entry in _named_entries(path, doc, section):
                merged[section].setdefault(entry[0], (path, entry[1]))
    if current is None:
        raise KubeconfigError(f"{', '.join(map(str, paths))}: current-context is not set")
    ctx_path, ctx_name = current
    context = _entry(merged, "contexts", ctx_name, ctx_path, f"current-context {ctx_name!r}")
    cluster_name = str(context[1].get("cluster") or "")
    user_name = str(context[1].get("user") or "")
    where = f"{context[0]}: contexts[name={ctx_name}].context"
    cluster = _entry(merged, "clusters", cluster_name, context[0], f"{where}.cluster")
    access = _cluster_access(cluster[0], cluster_name, cluster[1], f"{ctx_path} ({ctx_name})")
    if user_name:
        user = _entry(merged, "users", user_name, context[0], f"{where}.user")
        access = _with_user(access, user[0], user_name, user[1])
    return access


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise KubeconfigError(f"{path}: cannot read kubeconfig: {exc}") from exc
    except yaml.YAMLError as exc:
        raise KubeconfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise KubeconfigError(f"{path}: a kubeconfig is a mapping (kind: Config)")
    return doc


def _named_entries(path: Path, doc: dict[str, Any], section: str) -> list[tuple[str, Any]]:
    """(name, body) of each entry of clusters/users/contexts, with the body checked."""
    body_key = section[:-1]  # clusters -> cluster
    raw = doc.get(section) or []
    if not isinstance(raw, list):
        raise KubeconfigError(f"{path}: {section}: must be a list")
    out: list[tuple[str, Any]] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not item.get("name"):
            raise KubeconfigError(f"{path}: {section}[{i}].name: required")
        body = item.get(body_key) or {}
        if not isinstance(body, dict):
            raise KubeconfigError(f"{path}: {section}[name={item['name']}].{body_key}: not a map")
        out.append((str(item["name"]), body))
    return out


def _entry(
    merged: dict[str, dict[str, tuple[Path, dict[str, Any]]]],
    section: str,
    name: str,
    path: Path,
    field: str,
) -> tuple[Path, dict[str, Any]]:
    found = merged[section].get(name)
    if not name or found is None:
        raise KubeconfigError(f"{path}: {field}: no {section[:-1]} named {name!r} in {section}")
    return found


def _cluster_access(path: Path, name: str, body: dict[str, Any], source: str) -> ClusterAccess:
    where = f"{path}: clusters[name={name}].cluster"
    server = str(body.get("server") or "")
    if not server.startswith(("https://", "http://")):
        raise KubeconfigError(f"{where}.server: want an http(s):// URL, got {server!r}")
    ca = _pem(path, body, "certificate-authority", where)
    if ca:
        try:
            ssl.create_default_context(cadata=ca.decode("ascii", "replace"))
        except (ssl.SSLError, ValueError) as exc:
            raise KubeconfigError(f"{where}.certificate-authority: not PEM certificates") from exc
    return ClusterAccess(
        server=server.rstrip("/"),
        source=source,
        ca_pem=ca,
        insecure=bool(body.get("insecure-skip-tls-verify")),
        tls_server_name=str(body.get("tls-server-name") or ""),
    )


def _with_user(access: ClusterAccess, path: Path, name: str, body: dict[str, Any]) -> ClusterAccess:
    where = f"{path}: users[name={name}].user"
    for unsupported in ("exec", "auth-provider", "username"):
        if body.get(unsupported):
            raise KubeconfigError(
                f"{where}.{unsupported}: not supported by meshplane yet; "
                "use a token, tokenFile or a client certificate"
            )
    cert = _pem(path, body, "client-certificate", where)
    key = _pem(path, body, "client-key", where)
    if bool(cert) != bool(key):
        missing = "client-key" if cert else "client-certificate"
        raise KubeconfigError(f"{where}.{missing}: required with the other half of the pair")
    token_file = str(body.get("tokenFile") or "")
    if token_file and not Path(token_file).is_absolute():
        token_file = str(path.parent / token_file)
    with_user = dataclasses.replace(
        access,
        client_cert_pem=cert,
        client_key_pem=key,
        token=str(body.get("token") or ""),
        token_file=token_file,
    )
    if cert and key and with_user.server.startswith("https://"):
        try:
            with_user.ssl_context()
        except KubeconfigError as exc:
            raise KubeconfigError(f"{where}.client-certificate/client-key: {exc}") from exc
    return with_user


def _pem(path: Path, body: dict[str, Any], field: str, where: str) -> bytes | None:
    """`FIELD-data` (base64) or `FIELD` (a file, relative to the kubeconfig's directory)."""
    data = body.get(f"{field}-data")
    if data:
        try:
            return base64.b64decode(str(data), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise KubeconfigError(f"{where}.{field}-data: not valid base64") from exc
    file = body.get(field)
    if not file:
        return None
    file_path = Path(str(file))
    if not file_path.is_absolute():
        file_path = path.parent / file_path
    try:
        return file_path.read_bytes()
    except OSError as exc:
        raise KubeconfigError(f"{where}.{field}: cannot read {file_path}: {exc.strerror}") from exc
