"""networking.istio.io kinds (v1, v1beta1 and v1alpha3 all map to these classes)."""
