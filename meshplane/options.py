"""`meshplane serve` settings as one frozen value.

A leaf module so that both the CLI (which parses flags into it) and the composition
root (`meshplane.app`, which runs from it) can import it without importing each other.
Defaults are DESIGN.md's contract.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DEFAULT_GATEWAY_SERVICE_ACCOUNTS",
    "KEY_TYPES",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "ServeOptions",
]

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")
KEY_TYPES = ("ecdsa", "rsa")
# Istio's names for its gateways' service accounts (istio/manifests gateway charts).
DEFAULT_GATEWAY_SERVICE_ACCOUNTS = (
    ("istio-system", "istio-ingressgateway-service-account"),
    ("istio-system", "istio-egressgateway-service-account"),
)


@dataclass(frozen=True)
class ServeOptions:
    """Everything `meshplane serve` is told on its command line."""

    config_dirs: tuple[str, ...] = ()
    kubernetes: bool = False
    kubeconfig: str | None = None
    xds_address: str = "127.0.0.1:15010"
    xds_tls_address: str = "127.0.0.1:15012"
    http_address: str = "127.0.0.1:15014"
    state_dir: str = ".meshplane"
    trust_domain: str = "cluster.local"
    debounce_ms: int = 100
    debounce_max_ms: int = 10_000
    tls_sans: tuple[str, ...] = ()
    cert_ttl_s: float = 24 * 3600.0
    """Life of workload certificates (renewed at half of it)."""
    key_type: str = "ecdsa"
    """Key type of a self-signed root the first start creates, and of workload keys."""
    log_format: str = "text"
    log_level: str = "info"
    gateway_service_accounts: tuple[tuple[str, str], ...] = DEFAULT_GATEWAY_SERVICE_ACCOUNTS
    """With --kubernetes: the (namespace, service account) pairs whose Kubernetes tokens may
    run a router (gateway) on the TLS port; every other account's token runs sidecars only."""

    def __post_init__(self) -> None:
        if self.log_format not in LOG_FORMATS:
            raise ValueError(f"log_format {self.log_format!r}: want one of {LOG_FORMATS}")
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"log_level {self.log_level!r}: want one of {LOG_LEVELS}")
        if self.key_type not in KEY_TYPES:
            raise ValueError(f"key_type {self.key_type!r}: want one of {KEY_TYPES}")
        if not self.cert_ttl_s > 0:
            raise ValueError("cert_ttl_s must be positive")
        if self.debounce_ms < 0 or self.debounce_max_ms < self.debounce_ms:
            raise ValueError("want 0 <= debounce_ms <= debounce_max_ms")
