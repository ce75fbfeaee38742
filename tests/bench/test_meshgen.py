"""The synthetic mesh generator: valid input for meshplane, and edits that replace one file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bench.meshgen import (
    MeshSpec,
    edit_address,
    generate,
    host,
    move_endpoint,
    pod_address,
    service_file,
    shift_weights,
)
from meshplane.api import registry
from meshplane.sources import files
from meshplane.sources.events import Event

SPEC = MeshSpec(services=3, versions=2, endpoints=2, namespaces=2)


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_generated_mesh_parses_without_errors_or_warnings(tmp_path: Path) -> None:
    assert generate(SPEC, tmp_path) == 2 + 3 * 4
    events = files.read_dirs([tmp_path])
    assert all(isinstance(e, Event) for e in events), events
    kinds: dict[str, int] = {}
    for seq, event in enumerate(events):
        assert isinstance(event, Event)
        _, warnings = registry.parse(event.manifest, event.origin, seq)
        assert warnings == []
        kind = event.manifest["kind"]
        kinds[kind] = kinds.get(kind, 0) + 1
    assert kinds == {
        "Namespace": 2,
        "Service": 3,
        "DestinationRule": 3,
        "Pod": 3 * 2 * 2,
        "EndpointSlice": 3,
        "VirtualService": 3,
    }


def test_subsets_select_pods_and_addresses_are_unique(tmp_path: Path) -> None:
    generate(SPEC, tmp_path)
    service, rule = _docs(service_file(tmp_path, SPEC, 2, "service"))
    assert rule["spec"]["host"] == host(SPEC, 2) == "svc-2.ns-0.svc.cluster.local"
    pods = _docs(service_file(tmp_path, SPEC, 2, "pods"))
    for subset in rule["spec"]["subsets"]:
        chosen = [p for p in pods if subset["labels"].items() <= p["metadata"]["labels"].items()]
        assert len(chosen) == SPEC.endpoints
    assert all(service["spec"]["selector"].items() <= p["metadata"]["labels"].items() for p in pods)
    addresses = {pod_address(SPEC, i, v, e) for i in range(3) for v in range(2) for e in range(2)}
    assert len(addresses) == 12


def test_edits_replace_one_file_atomically(tmp_path: Path) -> None:
    generate(SPEC, tmp_path)
    slice_path = service_file(tmp_path, SPEC, 1, "endpointslice")
    before = slice_path.stat().st_ino
    address = edit_address(7)
    assert move_endpoint(tmp_path, SPEC, 1, address, version=1, endpoint=0) == slice_path
    assert slice_path.stat().st_ino != before  # renamed into place, not rewritten
    (endpoint_slice,) = _docs(slice_path)
    addresses = [e["addresses"][0] for e in endpoint_slice["endpoints"]]
    assert addresses[2] == address and pod_address(SPEC, 1, 1, 0) not in addresses
    assert address not in {
        pod_address(SPEC, i, v, e) for i in range(3) for v in (0, 1) for e in (0, 1)
    }

    shift_weights(tmp_path, SPEC, 1, [30, 70])
    (vs,) = _docs(service_file(tmp_path, SPEC, 1, "virtualservice"))
    assert [r["weight"] for r in vs["spec"]["http"][0]["route"]] == [30, 70]
    assert not list(tmp_path.rglob("*.tmp"))
