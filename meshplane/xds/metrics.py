"""Prometheus metrics of the xDS server, with Istio's names so its dashboards apply.

All metrics live on a CollectorRegistry passed in (no global state). Istio's counters are
exposed without the `_total` suffix that prometheus_client adds to its Counter type
(dashboards query `pilot_xds_pushes{type="cds"}`), hence the small `_IstioCounter`: its
family is exposed as untyped because prometheus_client's text format renames the TYPE line
of any counter family to `NAME_total`, which would no longer match the samples.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client.metrics_core import Metric

_SIZE_BUCKETS = (1e3, 1e4, 1e5, 1e6, 1e7)
_CONVERGENCE_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 3.0, 5.0, 10.0, 20.0, 30.0)


class _IstioCounter:
    """A counter with optional labels, exposed under its exact name."""

    def __init__(self, name: str, doc: str, label: str | None = None) -> None:
        self.name = name
        self.doc = doc
        self.label = label
        self.values: dict[str, float] = {}

    def inc(self, label_value: str = "", amount: float = 1.0) -> None:
        self.values[label_value] = self.values.get(label_value, 0.0) + amount

    def value(self, label_value: str = "") -> float:
        return self.values.get(label_value, 0.0)

    def collect(self) -> Iterator[Metric]:
        metric = Metric(self.name, self.doc, "unknown")
        if self.label is None:
            metric.add_sample(self.name, {}, self.values.get("", 0.0))
        else:
            for value, count in sorted(self.values.items()):
                metric.add_sample(self.name, {self.label: value}, count)
        yield metric


def istio_counter(
    registry: CollectorRegistry, name: str, doc: str, label: str | None = None
) -> _IstioCounter:
    """A counter under Istio's exact name (no `_total`), registered in `registry`."""
    counter = _IstioCounter(name, doc, label)
    registry.register(counter)  # type: ignore[arg-type]
    return counter


class XdsMetrics:
    """The counters, gauges and histograms the ADS servicer updates."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.connected = Gauge("pilot_xds", "Connected xDS streams.", registry=registry)
        self.pushes = istio_counter(registry, "pilot_xds_pushes", "xDS responses sent.", "type")
        self.total_rejects = istio_counter(
            registry, "pilot_total_xds_rejects", "xDS responses rejected by proxies."
        )
        self.rejects_by_type = {
            short: istio_counter(
                registry, f"pilot_xds_{short}_reject", f"{short.upper()} responses rejected."
            )
            for short in ("cds", "eds", "lds", "rds")
        }
        self.expired_nonce = istio_counter(
            registry, "pilot_xds_expired_nonce", "Requests with a stale nonce.", "type"
        )
        self.config_size = Histogram(
            "pilot_xds_config_size_bytes",
            "Size of xDS responses in bytes.",
            ["type"],
            buckets=_SIZE_BUCKETS,
            registry=registry,
        )
        self.convergence = Histogram(
            "pilot_proxy_convergence_time",
            "Seconds from a snapshot being published to a proxy acknowledging it.",
            buckets=_CONVERGENCE_BUCKETS,
            registry=registry,
        )

    def reject(self, short_type: str) -> None:
        """Count one NACK."""
        self.total_rejects.inc()
        by_type = self.rejects_by_type.get(short_type)
        if by_type is not None:
            by_type.inc()
