"""What `meshplane bootstrap` is told, checked once so the builders can trust it."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "PLAINTEXT_XDS_PORT",
    "TLS_XDS_PORT",
    "BadBootstrapOptions",
    "BootstrapOptions",
    "parse_host_port",
    "parse_labels",
]

PROXY_TYPES = ("sidecar", "router")
INTERCEPTION_MODES = ("REDIRECT", "NONE")
PLAINTEXT_XDS_PORT = 15010
TLS_XDS_PORT = 15012


class BadBootstrapOptions(ValueError):
    """An option value that cannot make a working bootstrap."""


@dataclass(frozen=True)
class BootstrapOptions:
    """One proxy's identity, ports and control-plane connection.

    `xds_address` empty means the default port on 127.0.0.1: 15012 with TLS (when
    `ca_cert_pem` is set), else 15010. `stats_port`/`health_port` 0 leave that listener
    out (several proxies sharing one IP on a laptop cannot all bind 15090).
    """

    workload: str
    type: str = "sidecar"
    namespace: str = "default"
    service_account: str = "default"
    ip: str = "127.0.0.1"
    labels: Mapping[str, str] = field(default_factory=dict)
    interception: str = "REDIRECT"
    stats_port: int = 15090
    health_port: int = 15021
    admin_port: int = 15000
    xds_address: str = ""
    token: str | None = None
    ca_cert_pem: str | None = None
    delta: bool = False
    dns_domain: str = "svc.cluster.local"

    def __post_init__(self) -> None:
        if self.type not in PROXY_TYPES:
            raise BadBootstrapOptions(f"--type {self.type!r}: want one of {PROXY_TYPES}")
        if self.interception not in INTERCEPTION_MODES:
            raise BadBootstrapOptions(
                f"--interception {self.interception!r}: want one of {INTERCEPTION_MODES}"
            )
        for flag, value in (("--workload", self.workload), ("--namespace", self.namespace)):
            if not value or "~" in value or "." in value:
                raise BadBootstrapOptions(f"{flag} {value!r}: want a DNS label (no '.' or '~')")
        if not self.service_account:
            raise BadBootstrapOptions("--service-account must not be empty")
        _check_ip(self.ip)
        for flag, port in (
            ("--stats-port", self.stats_port),
            ("--health-port", self.health_port),
            ("--admin-port", self.admin_port),
        ):
            if not 0 <= port <= 65535:
                raise BadBootstrapOptions(f"{flag} {port}: want 0..65535")
        if self.token is not None and self.ca_cert_pem is None:
            raise BadBootstrapOptions("--token needs --ca-cert: a token is only sent over TLS")
        if self.ca_cert_pem is not None and "-----BEGIN CERTIFICATE-----" not in self.ca_cert_pem:
            raise BadBootstrapOptions("--ca-cert: not a PEM certificate")
        parse_host_port(self.xds_target)

    @property
    def tls(self) -> bool:
        return self.ca_cert_pem is not None

    @property
    def xds_target(self) -> str:
        """HOST:PORT of the control plane, defaults applied."""
        if self.xds_address:
            return self.xds_address
        return f"127.0.0.1:{TLS_XDS_PORT if self.tls else PLAINTEXT_XDS_PORT}"

    @property
    def node_id(self) -> str:
        """Istio's ``TYPE~IP~NAME.NAMESPACE~NAMESPACE.svc.cluster.local``."""
        ns = self.namespace
        return f"{self.type}~{self.ip}~{self.workload}.{ns}~{ns}.{self.dns_domain}"


def _check_ip(value: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise BadBootstrapOptions(f"--ip {value!r}: not an IP address") from None


def parse_labels(text: str) -> dict[str, str]:
    """``k=v,k2=v2`` -> mapping; empty text -> no labels."""
    labels: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BadBootstrapOptions(f"--labels item {item!r}: want key=value")
        labels[key.strip()] = value.strip()
    return labels


def parse_host_port(address: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` -> (host, port)."""
    host, sep, port_text = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) <= 65535:
        raise BadBootstrapOptions(f"address {address!r}: want HOST:PORT")
    return host, int(port_text)
