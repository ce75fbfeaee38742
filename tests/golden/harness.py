"""The golden-file harness: find cases, render each proxy's Resources as canonical JSON the
way `serve` would compute them, and write or compare the committed outputs.

A case is a folder with `input.yaml` (or an `input/` folder of manifests), `proxies.yaml`
(stem -> node id + metadata), optional `options.yaml` (``mesh:`` MeshConfig fields) and the
outputs: one `STEM.json` per proxy and `errors.txt` when some input is rejected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Every extension packed into an Any must be importable for json_format to render it.
import envoy.config.accesslog.v3.accesslog_pb2
import envoy.extensions.access_loggers.stream.v3.stream_pb2
import envoy.extensions.filters.http.ext_authz.v3.ext_authz_pb2
import envoy.extensions.filters.http.jwt_authn.v3.config_pb2
import envoy.extensions.filters.http.rbac.v3.rbac_pb2
import envoy.extensions.filters.http.router.v3.router_pb2
import envoy.extensions.filters.listener.original_dst.v3.original_dst_pb2
import envoy.extensions.filters.listener.tls_inspector.v3.tls_inspector_pb2
import envoy.extensions.filters.network.ext_authz.v3.ext_authz_pb2
import envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2
import envoy.extensions.filters.network.rbac.v3.rbac_pb2
import envoy.extensions.filters.network.tcp_proxy.v3.tcp_proxy_pb2
import envoy.extensions.retry.host.previous_hosts.v3.previous_hosts_pb2
import envoy.extensions.transport_sockets.tls.v3.tls_pb2
import envoy.extensions.upstreams.http.v3.http_protocol_options_pb2  # noqa: F401
import yaml
from google.protobuf.json_format import MessageToDict

from meshplane.model.mesh import MeshConfig
from meshplane.translators.resources import Resources

GOLDEN_DIR = Path(__file__).parent
REPO_ROOT = GOLDEN_DIR.parent.parent
KINDS = ("listeners", "routes", "clusters", "endpoints", "secrets")


@dataclass(frozen=True)
class Rendered:
    """What one case produces: per proxy stem its Resources and canonical JSON, plus the
    validation errors of the input (paths relative to the case folder)."""

    resources: dict[str, Resources]
    outputs: dict[str, str]
    errors: list[str]


def discover_cases() -> list[Path]:
    """Case folders under tests/golden, sorted by name."""
    return sorted(p.parent for p in GOLDEN_DIR.glob("*/proxies.yaml") if _inputs(p.parent))


def _inputs(case: Path) -> list[Path]:
    return [p for p in (case / "input.yaml", case / "input") if p.exists()]


def proxies(case: Path) -> dict[str, dict[str, Any]]:
    data = yaml.safe_load((case / "proxies.yaml").read_text()) or {}
    return {str(stem): dict(spec) for stem, spec in data.items()}


def options(case: Path) -> dict[str, Any]:
    path = case / "options.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def canonical_json(resources: Resources) -> str:
    """The committed form: per kind a list sorted by name, snake_case fields, sorted keys."""
    doc = {
        kind: [
            MessageToDict(getattr(resources, kind)[name], preserving_proto_field_name=True)
            for name in sorted(getattr(resources, kind))
        ]
        for kind in KINDS
    }
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def render_case(case: Path) -> Rendered:
    """Load the case's input as `serve` does and translate it for every proxy."""
    from meshplane.model.load import load_paths
    from meshplane.model.proxy import Proxy
    from meshplane.model.views import view_for
    from meshplane.translators import translate

    mesh_config = MeshConfig(**(options(case).get("mesh") or {}))
    store = load_paths([str(p) for p in _inputs(case)], mesh_config)
    mesh = store.mesh()
    resources = {}
    for stem, spec in proxies(case).items():
        proxy = Proxy.from_node(spec["id"], spec.get("metadata") or {})
        resources[stem] = translate(view_for(mesh, proxy))
    prefix = str(case) + "/"
    errors = [str(e).replace(prefix, "") for e in store.errors()]
    outputs = {stem: canonical_json(r) for stem, r in resources.items()}
    return Rendered(resources, outputs, errors)


def write_case(case: Path, rendered: Rendered) -> None:
    """Rewrite outputs, delete stale `*.json`, write errors.txt only when there are errors."""
    for stem, text in rendered.outputs.items():
        (case / f"{stem}.json").write_text(text)
    for stale in case.glob("*.json"):
        if stale.stem not in rendered.outputs:
            stale.unlink()
    errors_file = case / "errors.txt"
    if rendered.errors:
        errors_file.write_text("".join(f"{e}\n" for e in rendered.errors))
    elif errors_file.exists():
        errors_file.unlink()


def expected_errors(case: Path) -> list[str]:
    path = case / "errors.txt"
    return path.read_text().splitlines() if path.exists() else []
