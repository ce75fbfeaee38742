"""The Istio and Kubernetes API as typed, validated values."""
