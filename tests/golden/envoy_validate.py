"""Wrap one golden PROXY.json into a bootstrap that `envoy --mode validate` accepts.

Bootstrap `static_resources` holds only listeners, clusters and secrets, so route
configurations are inlined into the HTTP connection managers that name them (rds ->
route_config) and ClusterLoadAssignments into their EDS clusters (type STATIC with a
load_assignment). Everything else is passed to Envoy exactly as meshplane would send it.
"""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

HCM_TYPE = (
    "type.googleapis.com/"
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)
VALIDATE_TIMEOUT_S = 60


class MissingResource(Exception):
    """A listener names a route configuration the golden output does not contain."""


def _filter_chains(listener: dict[str, Any]) -> list[dict[str, Any]]:
    chains = list(listener.get("filter_chains", []))
    if "default_filter_chain" in listener:
        chains.append(listener["default_filter_chain"])
    return chains


def _inline_routes(listener: dict[str, Any], routes: dict[str, dict[str, Any]]) -> None:
    for chain in _filter_chains(listener):
        for network_filter in chain.get("filters", []):
            config = network_filter.get("typed_config", {})
            if config.get("@type") != HCM_TYPE or "rds" not in config:
                continue
            name = config.pop("rds")["route_config_name"]
            if name not in routes:
                raise MissingResource(f"listener {listener['name']}: no route config {name!r}")
            config["route_config"] = routes[name]


def _inline_endpoints(cluster: dict[str, Any], endpoints: dict[str, dict[str, Any]]) -> None:
    if cluster.get("type") != "EDS":
        return
    eds = cluster.pop("eds_cluster_config", {})
    name = eds.get("service_name") or cluster["name"]
    cluster["type"] = "STATIC"
    cluster["load_assignment"] = endpoints.get(name, {"cluster_name": name})


CERTS_DIR = Path(__file__).parent.parent / "fixtures" / "certs"
MESH_SECRETS = ("default", "ROOTCA")
CREDENTIAL_PREFIX = "kubernetes://"  # credentialName Secrets (Istio's SDS names)


def _served_by_meshplane(name: Any) -> bool:
    return isinstance(name, str) and (name in MESH_SECRETS or name.startswith(CREDENTIAL_PREFIX))


def _static_mesh_secrets(node: Any, credentials: set[str] | None = None) -> set[str]:
    """SDS references to `default`/`ROOTCA`/`kubernetes://...` over ADS become references to
    static secrets (there is no ADS server in validate mode): an SdsSecretConfig without
    `sds_config`. Returns the `kubernetes://` names seen."""
    found = set() if credentials is None else credentials
    if isinstance(node, dict):
        if _served_by_meshplane(node.get("name")) and "sds_config" in node:
            del node["sds_config"]
            if node["name"].startswith(CREDENTIAL_PREFIX):
                found.add(node["name"])
        for value in node.values():
            _static_mesh_secrets(value, found)
    elif isinstance(node, list):
        for item in node:
            _static_mesh_secrets(item, found)
    return found


def credential_secrets(names: set[str]) -> list[dict[str, Any]]:
    """`kubernetes://NAME` as the fixed test certificate and key, `kubernetes://NAME-cacert`
    as the test root (what the Secrets in the golden inputs hold)."""
    secrets: list[dict[str, Any]] = []
    for name in sorted(names):
        if name.endswith("-cacert"):
            trusted = {"trusted_ca": {"filename": str(CERTS_DIR / "root-cert.pem")}}
            secrets.append({"name": name, "validation_context": trusted})
            continue
        secrets.append(
            {
                "name": name,
                "tls_certificate": {
                    "certificate_chain": {"filename": str(CERTS_DIR / "cert-chain.pem")},
                    "private_key": {"filename": str(CERTS_DIR / "key.pem")},
                },
            }
        )
    return secrets


def mesh_secrets() -> list[dict[str, Any]]:
    """`default` and `ROOTCA` from the fixed test certificates (tests/fixtures/certs)."""
    return [
        {
            "name": "default",
            "tls_certificate": {
                "certificate_chain": {"filename": str(CERTS_DIR / "cert-chain.pem")},
                "private_key": {"filename": str(CERTS_DIR / "key.pem")},
            },
        },
        {
            "name": "ROOTCA",
            "validation_context": {"trusted_ca": {"filename": str(CERTS_DIR / "root-cert.pem")}},
        },
    ]


def bootstrap_for(golden: dict[str, Any], node_id: str) -> dict[str, Any]:
    """A bootstrap whose static resources are `golden`'s, with RDS and EDS inlined."""
    doc = copy.deepcopy(golden)
    routes = {r["name"]: r for r in doc.get("routes", [])}
    endpoints = {e["cluster_name"]: e for e in doc.get("endpoints", [])}
    for listener in doc.get("listeners", []):
        _inline_routes(listener, routes)
    for cluster in doc.get("clusters", []):
        _inline_endpoints(cluster, endpoints)
    credentials = _static_mesh_secrets(doc)
    secrets = doc.get("secrets", [])
    have = {s.get("name") for s in secrets}
    secrets += [s for s in mesh_secrets() if s["name"] not in have]
    secrets += [s for s in credential_secrets(credentials) if s["name"] not in have]
    return {
        "node": {"id": node_id, "cluster": "meshplane-golden"},
        "static_resources": {
            "listeners": doc.get("listeners", []),
            "clusters": doc.get("clusters", []),
            "secrets": secrets,
        },
    }


def validate(envoy: str, golden_path: Path, node_id: str, workdir: Path, cwd: Path) -> str | None:
    """Run `envoy --mode validate` on `golden_path`; None if accepted without deprecation
    warnings, else Envoy's output.

    `cwd` is where relative file paths in the config (test certificates) resolve.
    """
    golden = json.loads(golden_path.read_text())
    config = workdir / f"{golden_path.parent.name}-{golden_path.stem}.bootstrap.json"
    config.write_text(json.dumps(bootstrap_for(golden, node_id), indent=1))
    proc = subprocess.run(
        [envoy, "--mode", "validate", "-c", str(config), "--use-dynamic-base-id", "-l", "warn"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=VALIDATE_TIMEOUT_S,
        check=False,
    )
    output = proc.stdout + proc.stderr
    # Deprecated fields are accepted today and removed in a later Envoy: fail on them now.
    if proc.returncode == 0 and "Deprecated field" not in output:
        return None
    return f"exit {proc.returncode}\n{output[-8000:]}"
