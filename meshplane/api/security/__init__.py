"""Typed specs of the security.istio.io kinds (AuthorizationPolicy, RequestAuthentication,
PeerAuthentication): what the parsers in `api/parsers/` build and the model carries."""
