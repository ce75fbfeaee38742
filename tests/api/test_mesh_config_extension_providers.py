"""MeshConfig `extensionProviders` (ext_authz over HTTP and gRPC) from the `istio`
ConfigMap: read into typed providers, validated as Istio does, other kinds warned about."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from meshplane.api.core.mesh_config import ExtensionProvider
from meshplane.api.errors import InvalidObject
from meshplane.api.registry import parse
from meshplane.sources.events import Origin

ORIGIN = Origin("mesh.yaml", 0, 1)


def config_map(providers: list[Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "istio", "namespace": "istio-system"},
        "data": {"mesh": yaml.safe_dump({"extensionProviders": providers})},
    }


def test_http_and_grpc_providers_are_read() -> None:
    http = {
        "service": "authz.foo.svc.cluster.local",
        "port": 8000,
        "timeout": "2s",
        "pathPrefix": "/check",
        "statusOnError": "503",
        "includeRequestHeadersInCheck": ["x-a"],
    }
    grpc = {"service": "foo/authz.foo.svc.cluster.local", "port": "9000", "failOpen": True}
    obj, warnings = parse(
        config_map(
            [
                {"name": "h", "envoyExtAuthzHttp": http},
                {"name": "g", "envoyExtAuthzGrpc": grpc},
                {"name": "z", "zipkin": {"service": "zipkin", "port": 9411}},
            ]
        ),
        ORIGIN,
        1,
    )
    h, g = obj.spec.extension_providers
    assert h == ExtensionProvider(
        name="h",
        grpc=False,
        service="authz.foo.svc.cluster.local",
        port=8000,
        timeout=2.0,
        status_on_error=503,
        path_prefix="/check",
        include_request_headers_in_check=("x-a",),
    )
    assert (g.grpc, g.service, g.port, g.fail_open) == (
        True,
        "authz.foo.svc.cluster.local",
        9000,
        True,
    )
    assert [w.field for w in warnings] == ["data.mesh.extensionProviders[2].zipkin"]


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"name": "a", "envoyExtAuthzHttp": {"service": "s.local", "port": 0}}, "port"),
        ({"name": "a", "envoyExtAuthzHttp": {"port": 80}}, "service"),
        (
            {"name": "a", "envoyExtAuthzHttp": {"service": "s", "port": 80, "pathPrefix": "x"}},
            "pathPrefix",
        ),
        (
            {"name": "a", "envoyExtAuthzGrpc": {"service": "s", "port": 80, "statusOnError": "2"}},
            "statusOnError",
        ),
        ({"name": "a", "envoyExtAuthzGrpc": {"service": "s", "port": 80, "pathPrefix": "/"}}, ""),
    ],
)
def test_invalid_providers_name_their_field(entry: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidObject) as exc:
        parse(config_map([entry]), ORIGIN, 1)
    kind = next(k for k in entry if k != "name")
    expected = f"data.mesh.extensionProviders[0].{kind}.{field or 'pathPrefix'}"
    assert [e.field for e in exc.value.errors if e.severity == "error"] == [expected]


def test_provider_names_are_unique() -> None:
    entry = {"name": "a", "envoyExtAuthzHttp": {"service": "s", "port": 80}}
    with pytest.raises(InvalidObject) as exc:
        parse(config_map([entry, entry]), ORIGIN, 1)
    errors = [e.field for e in exc.value.errors if e.severity == "error"]
    assert errors == ["data.mesh.extensionProviders[1].name"]
