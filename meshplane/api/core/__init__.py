"""Kubernetes core kinds the service registry is built from."""
