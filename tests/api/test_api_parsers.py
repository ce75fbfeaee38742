"""Table-driven parser tests: each bad input names the exact field paths it must report."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from meshplane.api.errors import InvalidObject
from meshplane.api.networking.virtual_service import VirtualServiceSpec
from meshplane.api.registry import UnsupportedKind, config_key, parse
from meshplane.sources.events import Origin

ORIGIN = Origin("test.yaml", 0, 1)


def manifest(
    kind: str, spec: Any, api: str = "networking.istio.io/v1", **meta: Any
) -> dict[str, Any]:
    metadata = {"name": "x", "namespace": "ns", **meta}
    return {"apiVersion": api, "kind": kind, "metadata": metadata, "spec": spec}


def error_fields(m: dict[str, Any]) -> set[str]:
    with pytest.raises(InvalidObject) as exc:
        parse(m, ORIGIN, 1)
    return {e.field for e in exc.value.errors if e.severity == "error"}


VS_OK = {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]}

BAD = [
    pytest.param(
        manifest("VirtualService", {"hosts": ["r"], "http": [{"route": [
            {"destination": {"host": "r", "subset": "v1"}, "weight": 50},
            {"destination": {"host": "r"}, "weight": 150},
        ]}]}),
        {"spec.http[0].route[1].weight"},
        id="vs-weight-out-of-range",
    ),
    pytest.param(
        manifest("VirtualService", {"hosts": ["r"], "http": [{"route": [
            {"destination": {"host": "r"}, "weight": 0},
            {"destination": {"host": "r"}, "weight": 0},
        ]}]}),
        {"spec.http[0].route"},
        id="vs-weights-sum-zero",
    ),
    pytest.param(
        manifest("VirtualService", {"hosts": ["r"], "htp": [], "http": [{"route": [
            {"destination": {"host": "r"}}]}]}),
        {"spec.htp"},
        id="vs-unknown-field",
    ),
    pytest.param(
        manifest("VirtualService", {"hosts": ["r"], "http": [{
            "match": [{"uri": {"prefix": "/a", "exact": "/a"}}, {"uri": {}},
                      {"headers": {"x": {"regex": "(?=a)"}}}],
            "route": [{"destination": {"host": "r"}}],
            "timeout": "-1s",
            "retries": {"attempts": -1, "perTryTimeout": "abc"},
        }]}),
        {"spec.http[0].match[0].uri", "spec.http[0].match[1].uri",
         "spec.http[0].match[2].headers.x.regex", "spec.http[0].timeout",
         "spec.http[0].retries.attempts", "spec.http[0].retries.perTryTimeout"},
        id="vs-collects-all-errors",
    ),
    pytest.param(
        manifest("VirtualService", {"hosts": ["foo.*.com"], "http": [{}]}),
        {"spec.hosts[0]", "spec.http[0]"},
        id="vs-bad-wildcard-and-no-action",
    ),
    pytest.param(
        manifest("VirtualService", {"hosts": ["*"], "http": [{"route": [
            {"destination": {"host": "r"}}]}]}),
        {"spec.hosts"},
        id="vs-star-host-on-mesh",
    ),
    pytest.param(
        manifest("VirtualService", {"hosts": ["r"], "tcp": [{"route": [
            {"destination": {"host": "r", "port": {"number": 70000}}}]}]}),
        {"spec.tcp[0].route[0].destination.port.number"},
        id="vs-tcp-port-range",
    ),
    pytest.param(
        manifest("VirtualService", {"hosts": ["r"], "http": [{"route": [
            {"destination": {"host": "r"}}], "fault": {"abort": {"percentage": {"value": 101}}}}]}),
        {"spec.http[0].fault.abort", "spec.http[0].fault.abort.percentage.value"},
        id="vs-fault-abort",
    ),
    pytest.param(
        manifest("DestinationRule", {"host": "r", "subsets": [
            {"name": "v1", "labels": {"version": "v1"}},
            {"name": "v1", "labels": {"bad key!": "x"}},
        ], "trafficPolicy": {"outlierDetection": {"interval": "5x"},
                             "connectionPool": {"tcp": {"maxConnections": "10"}},
                             "loadBalancer": {"simple": "FASTEST"}}}),
        {"spec.subsets[1].name", "spec.subsets[1].labels.bad key!",
         "spec.trafficPolicy.outlierDetection.interval",
         "spec.trafficPolicy.connectionPool.tcp.maxConnections",
         "spec.trafficPolicy.loadBalancer.simple"},
        id="dr-duplicate-subset-and-types",
    ),
    pytest.param(manifest("DestinationRule", {}), {"spec.host"}, id="dr-missing-host"),
    pytest.param(
        manifest("Gateway", {"servers": [{"port": {"number": 0, "protocol": "HTTP", "name": "h"},
                                          "hosts": ["*/foo.*"]}]}),
        {"spec.servers[0].port.number", "spec.servers[0].hosts[0]"},
        id="gw-port-and-host",
    ),
    pytest.param(
        manifest("ServiceEntry", {"hosts": ["*.example.com"], "resolution": "DNS",
                                  "ports": [{"number": 80, "protocol": "HTTP", "name": "http"}]}),
        {"spec.hosts[0]"},
        id="se-dns-wildcard",
    ),
    pytest.param(
        manifest("ServiceEntry", {"hosts": ["a.example.com"], "resolution": "STATIC",
                                  "ports": [{"number": 80, "protocol": "HTTP", "name": "http"}]}),
        {"spec.endpoints"},
        id="se-static-without-endpoints",
    ),
    pytest.param(
        manifest("ServiceEntry", {"hosts": ["a.example.com"]}),
        {"spec.ports"},
        id="se-ports-required",
    ),
    pytest.param(
        manifest("Sidecar", {"egress": [{"hosts": ["reviews"]}]}),
        {"spec.egress[0].hosts[0]"},
        id="sidecar-egress-host-needs-namespace",
    ),
    pytest.param(
        {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
         "metadata": {"namespace": "ns"}, "spec": VS_OK},
        {"metadata.name"},
        id="missing-name",
    ),
    pytest.param(
        manifest("VirtualService", VS_OK, name="Bad_Name"),
        {"metadata.name"},
        id="name-not-dns1123",
    ),
    pytest.param(
        manifest("Service", {"ports": [{"port": 80}, {"port": 81, "name": "b"}]}, api="v1"),
        {"spec.ports[0].name"},
        id="k8s-multiport-needs-names",
    ),
    pytest.param(
        manifest("VirtualService", {**VS_OK, "http": [{"directResponse": {
            "status": 200, "body": {"string": "a", "bytes": "Yg=="}}}]}),
        {"spec.http[0].directResponse.body"},
        id="direct-response-string-and-bytes",
    ),
    pytest.param(
        manifest("VirtualService", {**VS_OK, "http": [{"directResponse": {
            "status": 200, "body": {"bytes": "not base64!"}}}]}),
        {"spec.http[0].directResponse.body.bytes"},
        id="direct-response-bytes-not-base64",
    ),
    pytest.param(
        manifest("VirtualService", {**VS_OK, "http": [{"directResponse": {
            "status": 200, "body": {"string": "x" * (1024 * 1024 + 1)}}}]}),
        {"spec.http[0].directResponse.body"},
        id="direct-response-body-over-1mb",
    ),
    pytest.param(
        manifest("VirtualService", {**VS_OK, "http": [{
            "route": [{"destination": {"host": "r"}}],
            "retries": {"attempts": 1, "backoff": "0s"}}]}),
        {"spec.http[0].retries.backoff"},
        id="retry-backoff-zero",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("m", "fields"), BAD)
def test_bad_input_reports_exact_fields(m: dict[str, Any], fields: set[str]) -> None:
    assert error_fields(m) == fields


GOOD = """
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /v2}, headers: {x-user: {}}}]
    route:
    - {destination: {host: reviews, subset: v2}, weight: 30}
    - {destination: {host: reviews, subset: v1}, weight: 70}
    timeout: 1.5s
    retries: {attempts: 3, perTryTimeout: 100ms, retryOn: "5xx,503"}
    mirror: {host: shadow}
    mirrorPercentage: {value: 25}
    fault: {delay: {fixedDelay: 1h30m, percent: 10}}
  - route: [{destination: {host: reviews}}]
    mirrors:
    - destination: {host: shadow2}
      percentage: {value: 5}
"""


def test_good_virtual_service_normalises() -> None:
    obj, warnings = parse(yaml.safe_load(GOOD), ORIGIN, 7)
    assert warnings == []
    assert obj.key == config_key(yaml.safe_load(GOOD))
    assert (obj.namespace, obj.seq, obj.api_version) == (
        "default",
        7,
        "networking.istio.io/v1alpha3",
    )
    spec = obj.spec
    assert isinstance(spec, VirtualServiceSpec)
    route = spec.http[0]
    assert route.timeout == 1.5
    assert route.retries is not None and route.retries.per_try_timeout == 0.1
    assert route.fault is not None and route.fault.delay is not None
    assert route.fault.delay.fixed_delay == 5400.0 and route.fault.delay.percentage == 10
    assert [(m.destination.host, m.percentage) for m in route.mirrors] == [("shadow", 25.0)]
    assert [(m.destination.host, m.percentage) for m in spec.http[1].mirrors] == [("shadow2", 5.0)]
    assert route.match[0].headers["x-user"].exact is None  # presence match


def test_same_content_same_revision_across_versions() -> None:
    a = yaml.safe_load(GOOD)
    b = {**a, "apiVersion": "networking.istio.io/v1"}
    assert parse(a, ORIGIN, 1)[0].revision == parse(b, Origin("other.yaml"), 2)[0].revision
    c = yaml.safe_load(GOOD)
    c["spec"]["http"][0]["timeout"] = "2s"
    assert parse(c, ORIGIN, 1)[0].revision != parse(a, ORIGIN, 1)[0].revision


@pytest.mark.parametrize(
    ("spec", "field", "fragment"),
    [
        ({**VS_OK, "http": [{"route": [{"destination": {"host": "r"}, "weight": 30},
                                       {"destination": {"host": "r"}, "weight": 30}]}]},
         "spec.http[0].route", "sum to 60"),
        ({**VS_OK, "http": [{"route": [{"destination": {"host": "r"}}],
                             "fault": {"delay": {"fixedDelay": "1s",
                                                 "exponentialDelay": "1s"}}}]},
         "spec.http[0].fault.delay.exponentialDelay", "not implemented by Istio either"),
        ({**VS_OK, "http": [{"directResponse": {"status": 200,
                                                "body": {"string": "x" * 200_000}}}]},
         "spec.http[0].directResponse.body", "large direct responses"),
    ],
)  # fmt: skip
def test_warnings(spec: dict[str, Any], field: str, fragment: str) -> None:
    _, warnings = parse(manifest("VirtualService", spec), ORIGIN, 1)
    assert [(w.field, w.severity) for w in warnings] == [(field, "warning")]
    assert fragment in warnings[0].reason


def test_peer_authentication_is_parsed() -> None:
    m = manifest(
        "PeerAuthentication", {"mtls": {"mode": "STRICT"}}, api="security.istio.io/v1beta1"
    )
    obj, warnings = parse(m, ORIGIN, 1)
    assert obj.spec.mode == "STRICT" and obj.spec.selector is None
    assert warnings == []


def test_security_kinds_not_enforced_yet_are_accepted_with_warning() -> None:
    from meshplane.api.registry import NOT_IN_MODEL

    for kind in sorted(NOT_IN_MODEL):
        _, warnings = parse(manifest(kind, {}, api="security.istio.io/v1"), ORIGIN, 1)
        assert len(warnings) == 1 and "not enforced yet by meshplane" in warnings[0].reason


def test_unsupported_kinds() -> None:
    with pytest.raises(UnsupportedKind) as exc:
        parse({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a"}}, ORIGIN, 1)
    assert not exc.value.warn
    with pytest.raises(UnsupportedKind) as exc:
        parse(
            {"apiVersion": "foo.example/v1", "kind": "Thing", "metadata": {"name": "a"}}, ORIGIN, 1
        )
    assert exc.value.severity == "error" and "unknown kind 'Thing'" in exc.value.reason
    with pytest.raises(UnsupportedKind) as exc:
        parse(manifest("EnvoyFilter", {}, api="networking.istio.io/v1alpha3"), ORIGIN, 1)
    assert exc.value.warn
    with pytest.raises(UnsupportedKind) as exc:
        parse(manifest("VirtualService", VS_OK, api="networking.istio.io/v2"), ORIGIN, 1)
    assert exc.value.warn


def test_error_message_names_file_object_field() -> None:
    m = manifest("DestinationRule", {"host": "r", "subsets": [{"name": "a"}, {"name": "a"}]})
    with pytest.raises(InvalidObject) as exc:
        parse(m, Origin("dir/dr.yaml", 2, 14), 1)
    assert str(exc.value.errors[0]) == (
        "dir/dr.yaml:14: error: DestinationRule ns/x spec.subsets[1].name: "
        "duplicate subset name 'a'"
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1.5s", 1.5),
        ("100ms", 0.1),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("0", 0.0),
        ("250us", 0.00025),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    from meshplane.api.formats import parse_duration

    value, reason = parse_duration(text)
    assert reason == "" and value == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["-1s", "1", "1.5", "s", "1d", ""])
def test_bad_durations(text: str) -> None:
    from meshplane.api.formats import parse_duration

    assert parse_duration(text)[0] is None


def test_gateway_tls_modes_warn_only_where_they_do_nothing() -> None:
    """AUTO_PASSTHROUGH on a plain-HTTP port: one warning saying it is served as plain HTTP
    (no "not supported" beside it); ISTIO_MUTUAL and AUTO_PASSTHROUGH on TLS ports: none."""

    def server(number: int, protocol: str, mode: str) -> dict[str, Any]:
        port = {"number": number, "protocol": protocol, "name": f"p{number}"}
        return {"port": port, "hosts": ["*"], "tls": {"mode": mode}}

    plain = {"servers": [server(80, "HTTP", "AUTO_PASSTHROUGH")]}
    _, warnings = parse(manifest("Gateway", plain), ORIGIN, 1)
    assert [(w.field, w.severity) for w in warnings] == [("spec.servers[0].tls.mode", "warning")]
    assert "served as plain HTTP" in warnings[0].reason
    served = {
        "servers": [
            server(443, "HTTPS", "ISTIO_MUTUAL"),
            server(15443, "TLS", "AUTO_PASSTHROUGH"),
        ]
    }
    assert parse(manifest("Gateway", served), ORIGIN, 1)[1] == []
