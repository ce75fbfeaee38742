"""Synthetic meshes written as the YAML a user would keep in a config directory.

The bench needs meshes of a chosen size (S services x V versions x E endpoints) that load
through exactly the same path as a user's files, plus the two edits a running mesh sees most:
one endpoint moving (an EndpointSlice rewritten) and one traffic shift (VirtualService weights).
Edits are written to a temporary file and renamed into place, as deploy tools do, so the
watcher sees one atomic replacement.

Layout, per service `svc-N` in namespace `ns-(N mod K)`:
    ns-K/namespace.yaml             the Namespace
    ns-K/svc-N.service.yaml         Service (port `http` 8080), DestinationRule (subset per version)
    ns-K/svc-N.pods.yaml            V x E Pods labelled `app: svc-N`, `version: vX`
    ns-K/svc-N.endpointslice.yaml   one EndpointSlice naming those Pods by targetRef
    ns-K/svc-N.virtualservice.yaml  weighted routes across the subsets
Addresses are data only (10.0.0.0/9 for Pods, 10.96.0.0/16 for cluster IPs); nothing connects.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

try:  # libyaml makes writing S=1000 meshes several times faster
    from yaml import CSafeDumper as _Dumper
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeDumper as _Dumper  # type: ignore[assignment]

SERVICE_PORT = 8080
DOMAIN_SUFFIX = "svc.cluster.local"


@dataclass(frozen=True)
class MeshSpec:
    """The size of a synthetic mesh."""

    services: int
    versions: int = 2
    endpoints: int = 3
    namespaces: int = 10
    # One Sidecar per namespace importing only "./*": each proxy sees its own namespace.
    sidecar_scope: bool = False

    def namespace(self, index: int) -> str:
        return f"ns-{index % self.namespaces}"

    def namespace_count(self) -> int:
        return min(self.namespaces, self.services)


def service_name(index: int) -> str:
    return f"svc-{index}"


def host(spec: MeshSpec, index: int) -> str:
    """The service's FQDN, as Istio names it."""
    return f"{service_name(index)}.{spec.namespace(index)}.{DOMAIN_SUFFIX}"


def subset_cluster(spec: MeshSpec, index: int, version: int) -> str:
    """Istio's name of the cluster for one subset: ``outbound|PORT|SUBSET|FQDN``."""
    return f"outbound|{SERVICE_PORT}|v{version}|{host(spec, index)}"


def pod_address(spec: MeshSpec, index: int, version: int, endpoint: int) -> str:
    """A unique 10.x.y.z address per endpoint (below 10.128.0.0, so edits can use the rest)."""
    n = (index * spec.versions + version) * spec.endpoints + endpoint + 1
    if n >= 1 << 23:
        raise ValueError("mesh too large for the 10.0.0.0/9 address plan")
    return f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}"


def default_weights(versions: int) -> list[int]:
    """Weights summing to 100, the remainder on the first subset."""
    base = 100 // versions
    weights = [base] * versions
    weights[0] += 100 - base * versions
    return weights


def namespace_manifest(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def sidecar_manifest(namespace: str) -> dict[str, Any]:
    """The namespace's default Sidecar: egress to its own namespace only."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": {"name": "default", "namespace": namespace},
        "spec": {"egress": [{"hosts": ["./*"]}]},
    }


def service_manifests(spec: MeshSpec, index: int) -> list[dict[str, Any]]:
    """The Service and its DestinationRule (one subset per version)."""
    name, ns = service_name(index), spec.namespace(index)
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {
            "selector": {"app": name},
            "clusterIP": f"10.96.{(index >> 8) & 255}.{index & 255}",
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": SERVICE_PORT}],
        },
    }
    rule = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "host": host(spec, index),
            "subsets": [
                {"name": f"v{v}", "labels": {"version": f"v{v}"}} for v in range(spec.versions)
            ],
        },
    }
    return [service, rule]


def pod_name(index: int, version: int, endpoint: int) -> str:
    return f"{service_name(index)}-v{version}-{endpoint}"


def pod_manifests(spec: MeshSpec, index: int) -> list[dict[str, Any]]:
    """V x E Pods carrying the labels the DestinationRule subsets select on."""
    pods = []
    for v in range(spec.versions):
        for e in range(spec.endpoints):
            pods.append(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": pod_name(index, v, e),
                        "namespace": spec.namespace(index),
                        "labels": {"app": service_name(index), "version": f"v{v}"},
                    },
                    "spec": {
                        "serviceAccountName": service_name(index),
                        "containers": [
                            {"name": "app", "image": "app", "ports": [{"containerPort": 8080}]}
                        ],
                    },
                    "status": {"phase": "Running", "podIP": pod_address(spec, index, v, e)},
                }
            )
    return pods


def endpoint_slice_manifest(
    spec: MeshSpec, index: int, overrides: dict[tuple[int, int], str] | None = None
) -> dict[str, Any]:
    """The service's EndpointSlice; `overrides` maps (version, endpoint) to a new address."""
    overrides = overrides or {}
    name, ns = service_name(index), spec.namespace(index)
    endpoints = []
    for v in range(spec.versions):
        for e in range(spec.endpoints):
            address = overrides.get((v, e), pod_address(spec, index, v, e))
            endpoints.append(
                {
                    "addresses": [address],
                    "conditions": {"ready": True},
                    "targetRef": {"kind": "Pod", "name": pod_name(index, v, e), "namespace": ns},
                }
            )
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{name}-abcde",
            "namespace": ns,
            "labels": {"kubernetes.io/service-name": name},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": SERVICE_PORT, "protocol": "TCP"}],
        "endpoints": endpoints,
    }


def virtual_service_manifest(
    spec: MeshSpec, index: int, weights: Sequence[int] | None = None
) -> dict[str, Any]:
    """Weighted routes across the subsets (weights default to an even split)."""
    weights = list(weights) if weights is not None else default_weights(spec.versions)
    if len(weights) != spec.versions:
        raise ValueError(f"need {spec.versions} weights, got {len(weights)}")
    name = service_name(index)
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": spec.namespace(index)},
        "spec": {
            "hosts": [name],
            "http": [
                {
                    "route": [
                        {"destination": {"host": name, "subset": f"v{v}"}, "weight": w}
                        for v, w in enumerate(weights)
                    ]
                }
            ],
        },
    }


def _dump(documents: Iterable[dict[str, Any]]) -> str:
    return yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def write_atomically(path: Path, text: str) -> None:
    """Write to a temporary file in the same directory, then rename it over `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def service_file(out: Path, spec: MeshSpec, index: int, what: str) -> Path:
    """Path of one of a service's files (`service`, `pods`, `endpointslice`, `virtualservice`)."""
    return out / spec.namespace(index) / f"{service_name(index)}.{what}.yaml"


def generate(spec: MeshSpec, out: Path) -> int:
    """Write the whole mesh under `out`; returns the number of files written."""
    written = 0
    for k in range(spec.namespace_count()):
        ns_dir = out / f"ns-{k}"
        ns_dir.mkdir(parents=True, exist_ok=True)
        (ns_dir / "namespace.yaml").write_text(_dump([namespace_manifest(f"ns-{k}")]))
        written += 1
        if spec.sidecar_scope:
            (ns_dir / "sidecar.yaml").write_text(_dump([sidecar_manifest(f"ns-{k}")]))
            written += 1
    for i in range(spec.services):
        files = {
            "service": service_manifests(spec, i),
            "pods": pod_manifests(spec, i),
            "endpointslice": [endpoint_slice_manifest(spec, i)],
            "virtualservice": [virtual_service_manifest(spec, i)],
        }
        for what, docs in files.items():
            service_file(out, spec, i, what).write_text(_dump(docs))
            written += 1
    return written


def edit_address(serial: int) -> str:
    """A fresh address for the `serial`-th endpoint edit, outside the generated Pod range."""
    return f"10.{200 + (serial >> 16) % 50}.{(serial >> 8) & 255}.{serial & 255}"


def move_endpoint(
    out: Path, spec: MeshSpec, index: int, address: str, version: int = 0, endpoint: int = 0
) -> Path:
    """Give one endpoint of service `index` a new address by replacing its EndpointSlice file."""
    path = service_file(out, spec, index, "endpointslice")
    manifest = endpoint_slice_manifest(spec, index, {(version, endpoint): address})
    write_atomically(path, _dump([manifest]))
    return path


def shift_weights(out: Path, spec: MeshSpec, index: int, weights: Sequence[int]) -> Path:
    """Set new route weights on service `index` by replacing its VirtualService file."""
    path = service_file(out, spec, index, "virtualservice")
    write_atomically(path, _dump([virtual_service_manifest(spec, index, weights)]))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.meshgen", description=__doc__)
    parser.add_argument("--services", type=int, required=True)
    parser.add_argument("--versions", type=int, default=2)
    parser.add_argument("--endpoints", type=int, default=3, help="endpoints per version")
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--sidecar-scope", action="store_true", help="a Sidecar per namespace importing ./*"
    )
    args = parser.parse_args(argv)
    spec = MeshSpec(
        args.services, args.versions, args.endpoints, args.namespaces, args.sidecar_scope
    )
    count = generate(spec, args.out)
    print(f"wrote {count} files for {spec.services} services to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
