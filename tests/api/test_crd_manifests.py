"""The CRDs of meshplane/api/crds: one per Istio kind the registry reads, each a structurally
valid apiextensions.k8s.io/v1 object named as Istio names it, and `meshplane crds` prints a
stream that kubectl can apply and that meshplane's own loader ignores as Kubernetes' kind."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshplane.api.registry import KINDS
from meshplane.cli.crds_cmd import crd_files, crd_stream
from meshplane.model.load import load_paths

ISTIO_GROUPS = ("networking.istio.io", "security.istio.io")
MESHPLANE = str(Path(sys.executable).parent / "meshplane")

# What Istio's own CRDs say (manifests/charts/base/files/crd-all.gen.yaml, from the
# `+cue-gen` tags of istio/api): plural, short names, and the version stored in etcd.
ISTIO_NAMES = {
    "VirtualService": ("virtualservices", ["vs"]),
    "DestinationRule": ("destinationrules", ["dr"]),
    "Gateway": ("gateways", ["gw"]),
    "ServiceEntry": ("serviceentries", ["se"]),
    "WorkloadEntry": ("workloadentries", ["we"]),
    "Sidecar": ("sidecars", []),
    "PeerAuthentication": ("peerauthentications", ["pa"]),
    "AuthorizationPolicy": ("authorizationpolicies", []),
    "RequestAuthentication": ("requestauthentications", ["ra"]),
}
ISTIO_STORAGE = {"networking.istio.io": "v1alpha3", "security.istio.io": "v1beta1"}
PRINTER_TYPES = {"integer", "number", "string", "boolean", "date"}
VERSION_NAME = re.compile(r"^v[1-9][0-9]*((alpha|beta)[1-9][0-9]*)?$")
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def _crds() -> list[dict[str, Any]]:
    return [yaml.safe_load(f.read_text(encoding="utf-8")) for f in crd_files()]


def _by_kind() -> dict[str, dict[str, Any]]:
    return {crd["spec"]["names"]["kind"]: crd for crd in _crds()}


def _registry_versions() -> dict[tuple[str, str], set[str]]:
    """(group, kind) -> the versions meshplane parses, for the Istio groups."""
    found: dict[tuple[str, str], set[str]] = {}
    for group, version, kind in KINDS:
        if group in ISTIO_GROUPS:
            found.setdefault((group, kind), set()).add(version)
    return found


def test_every_istio_kind_meshplane_reads_has_exactly_one_crd() -> None:
    kinds = [crd["spec"]["names"]["kind"] for crd in _crds()]
    assert len(kinds) == len(set(kinds))
    assert {(crd["spec"]["group"], crd["spec"]["names"]["kind"]) for crd in _crds()} == set(
        _registry_versions()
    )


def test_served_versions_are_the_ones_meshplane_parses() -> None:
    by_kind = _by_kind()
    for (_group, kind), versions in _registry_versions().items():
        served = {v["name"] for v in by_kind[kind]["spec"]["versions"] if v["served"]}
        assert served == versions, kind


@pytest.mark.parametrize("kind", sorted(ISTIO_NAMES))
def test_names_scope_and_storage_are_istios(kind: str) -> None:
    crd = _by_kind()[kind]
    spec, names = crd["spec"], crd["spec"]["names"]
    plural, short = ISTIO_NAMES[kind]
    assert names["plural"] == plural
    assert names.get("shortNames", []) == short
    assert names["singular"] == kind.lower()
    assert names["listKind"] == f"{kind}List"
    assert spec["scope"] == "Namespaced"
    assert crd["metadata"]["name"] == f"{plural}.{spec['group']}"
    storage = [v["name"] for v in spec["versions"] if v["storage"]]
    assert storage == [ISTIO_STORAGE[spec["group"]]]


@pytest.mark.parametrize("path", crd_files(), ids=lambda f: f.name)
def test_each_crd_is_a_structurally_valid_apiextensions_v1_object(path: Any) -> None:
    crd = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert path.name == f"{crd['metadata']['name']}.yaml"
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert set(crd) == {"apiVersion", "kind", "metadata", "spec"}
    spec = crd["spec"]
    assert spec["group"] in ISTIO_GROUPS
    assert crd["metadata"]["name"] == f"{spec['names']['plural']}.{spec['group']}"
    names = spec["names"]
    for key in ("plural", "singular", *names.get("shortNames", [])):
        value = names.get(key, key)
        assert DNS_LABEL.match(value) and value == value.lower(), key
    assert re.match(r"^[A-Z][A-Za-z0-9]*$", names["kind"])
    assert spec["scope"] in ("Namespaced", "Cluster")
    versions = spec["versions"]
    assert len({v["name"] for v in versions}) == len(versions)
    assert sum(1 for v in versions if v["storage"] is True) == 1
    for version in versions:
        _check_version(version)


def _check_version(version: dict[str, Any]) -> None:
    assert VERSION_NAME.match(version["name"]), version["name"]
    assert isinstance(version["served"], bool) and isinstance(version["storage"], bool)
    assert version["served"] or not version["storage"]  # a stored version must be served
    assert set(version) <= {
        "name",
        "served",
        "storage",
        "schema",
        "subresources",
        "additionalPrinterColumns",
    }
    schema = version["schema"]["openAPIV3Schema"]
    assert schema["type"] == "object"
    # A structural schema: metadata is the API server's, spec and status are typed objects
    # that keep every field (meshplane validates them itself, with better messages).
    assert set(schema) == {"type", "properties"}
    assert set(schema["properties"]) == {"spec", "status"}
    for part in ("spec", "status"):
        assert schema["properties"][part] == {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
        }
    assert version.get("subresources", {}) == {"status": {}}
    for column in version.get("additionalPrinterColumns", []):
        assert set(column) <= {"name", "type", "jsonPath", "description", "format", "priority"}
        assert column["type"] in PRINTER_TYPES
        assert column["jsonPath"].startswith(".")
        assert column["name"]


def test_printer_columns_are_istios_where_istio_has_them() -> None:
    columns = {
        kind: [c["name"] for c in crd["spec"]["versions"][0].get("additionalPrinterColumns", [])]
        for kind, crd in _by_kind().items()
    }
    assert columns["VirtualService"] == ["Gateways", "Hosts", "Age"]
    assert columns["DestinationRule"] == ["Host", "Age"]
    assert columns["ServiceEntry"] == ["Hosts", "Location", "Resolution", "Age"]
    assert columns["PeerAuthentication"] == ["Mode", "Age"]
    # The same columns on every version: `kubectl get` looks the same whichever is asked for.
    for crd in _crds():
        per_version = [v.get("additionalPrinterColumns") for v in crd["spec"]["versions"]]
        assert all(c == per_version[0] for c in per_version)


def test_meshplane_crds_prints_one_stream_with_every_crd() -> None:
    done = subprocess.run(
        [MESHPLANE, "crds"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == crd_stream()
    docs = list(yaml.safe_load_all(done.stdout))
    assert [d["metadata"]["name"] for d in docs] == [f.name[: -len(".yaml")] for f in crd_files()]
    assert len(docs) == len(ISTIO_NAMES)


def test_meshplanes_loader_ignores_the_crds_as_kubernetes_kinds(tmp_path: Path) -> None:
    """Applying a folder that holds the CRDs next to config must not warn or fail."""
    (tmp_path / "crds.yaml").write_text(crd_stream())
    store = load_paths([tmp_path])
    assert store.errors() == []
    assert store.warnings() == []
    assert store.objects() == []


def test_analyze_reports_nothing_for_the_crds(tmp_path: Path) -> None:
    (tmp_path / "crds.yaml").write_text(crd_stream())
    done = subprocess.run(
        [MESHPLANE, "analyze", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "no problems found"
