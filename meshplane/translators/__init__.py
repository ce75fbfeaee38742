"""Pure functions from a ProxyView to Envoy protobufs. No I/O, no globals."""
