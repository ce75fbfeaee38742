"""Prometheus metrics of the built-in CA, under Istio's `citadel_server_*` names.

Istio's dashboards and alerts (root expiry, issuance rate, authentication failures) read
these names, so they apply to meshplane unchanged.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

from meshplane.ca.issuer import WorkloadCert
from meshplane.ca.root import CertificateAuthority
from meshplane.ca.spiffe import SpiffeId
from meshplane.xds.metrics import istio_counter

__all__ = ["CaMetrics"]


class CaMetrics:
    """Counters and gauges the TLS port and the CA update."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.csr = istio_counter(
            registry, "citadel_server_csr_count", "Certificate requests (one per issuance)."
        )
        self.issued = istio_counter(
            registry,
            "citadel_server_success_cert_issuance_count",
            "Workload certificates issued.",
        )
        self.auth_failures = istio_counter(
            registry,
            "citadel_server_authentication_failure_count",
            "Refused TLS xDS streams, by gRPC status.",
            "code",
        )
        self.root_expiry = Gauge(
            "citadel_server_root_cert_expiry_timestamp",
            "Unix time the (earliest) trusted root expires.",
            registry=registry,
        )
        self.chain_expiry = Gauge(
            "citadel_server_cert_chain_expiry_timestamp",
            "Unix time the signing certificate expires.",
            registry=registry,
        )

    def watch_ca(self, ca: CertificateAuthority) -> None:
        """Publish the expiry of `ca`'s roots and signing certificate."""
        self.root_expiry.set(min(r.not_valid_after_utc.timestamp() for r in ca.roots))
        self.chain_expiry.set(ca.cert.not_valid_after_utc.timestamp())

    def cert_issued(self, identity: SpiffeId, cert: WorkloadCert) -> None:
        del identity, cert
        self.csr.inc()
        self.issued.inc()

    def refused(self, code: str) -> None:
        self.auth_failures.inc(code)
