"""Who may use the TLS xDS port: a join token whose identity is the node's own.

The TLS port serves secrets, so every stream there must present `authorization: Bearer
TOKEN` (gRPC metadata) with a token from `meshplane token`. No token, or one that fails
verification (expired, tampered, another audience or signer), ends the stream with
UNAUTHENTICATED; a valid token for another namespace, service account or proxy type
(sidecar or router, the node id's first field) than the node claims ends it with
PERMISSION_DENIED. Every refusal is logged with the node id and the reason, never the token.
An accepted stream is served as the token's SPIFFE identity and proxy type (ProxyIdentity):
only a router token may hold gateway credentials (credentials.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import grpc
from envoy.config.core.v3.base_pb2 import Node
from google.protobuf import json_format

from meshplane.ca.spiffe import SpiffeId
from meshplane.ca.tokens import BadToken, TokenSigner
from meshplane.model.proxy import BadNode, Proxy
from meshplane.xds.ads import StreamRefused
from meshplane.xds.credentials import ProxyIdentity

__all__ = ["TokenAuthorizer"]

log = logging.getLogger("meshplane.xds.auth")

_BEARER = "bearer "


class TokenAuthorizer:
    """The `authorize` hook of the TLS port's AdsServicer."""

    def __init__(
        self,
        signer: TokenSigner,
        trust_domain: str,
        *,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self.signer = signer
        self.trust_domain = trust_domain
        self._on_refused = on_refused

    async def __call__(self, node: Node, metadata: Mapping[str, str]) -> ProxyIdentity:
        """The stream's identity; StreamRefused with the status to end it with."""
        token = _bearer(metadata)
        if token is None:
            raise self._refuse(node, grpc.StatusCode.UNAUTHENTICATED, "no bearer token")
        try:
            claimed = self.signer.verify(token)
        except BadToken as err:
            raise self._refuse(node, grpc.StatusCode.UNAUTHENTICATED, str(err)) from None
        try:
            proxy = Proxy.from_node(node.id, json_format.MessageToDict(node.metadata))
        except BadNode as err:
            raise self._refuse(node, grpc.StatusCode.INVALID_ARGUMENT, str(err)) from None
        if (proxy.namespace, proxy.service_account) != (
            claimed.namespace,
            claimed.service_account,
        ):
            reason = (
                f"token is for {claimed.namespace}/{claimed.service_account}, node is "
                f"{proxy.namespace}/{proxy.service_account}"
            )
            raise self._refuse(node, grpc.StatusCode.PERMISSION_DENIED, reason)
        if proxy.type != claimed.proxy_type:
            reason = f"token is for a {claimed.proxy_type}, node is a {proxy.type}"
            raise self._refuse(node, grpc.StatusCode.PERMISSION_DENIED, reason)
        spiffe = SpiffeId(self.trust_domain, proxy.namespace, proxy.service_account)
        return ProxyIdentity(spiffe, router=claimed.proxy_type == "router")

    def _refuse(self, node: Node, code: grpc.StatusCode, reason: str) -> StreamRefused:
        log.warning("xds TLS stream refused (%s): node %r: %s", code.name, node.id, reason)
        if self._on_refused is not None:
            self._on_refused(code.name)
        return StreamRefused(code, f"{code.name.lower()}: {reason}")


def _bearer(metadata: Mapping[str, str]) -> str | None:
    value = metadata.get("authorization")
    if not isinstance(value, str) or not value.lower().startswith(_BEARER):
        return None
    token = value[len(_BEARER) :].strip()
    return token or None
