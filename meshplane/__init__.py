"""meshplane: a service-mesh control plane speaking the Istio API to real Envoy."""

__version__ = "0.1.0"
__all__ = ["__version__"]
