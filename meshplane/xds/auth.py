"""Who may use the TLS xDS port: a join token whose identity is the node's own.

The TLS port serves secrets, so every stream there must present `authorization: Bearer
TOKEN` (gRPC metadata) with a token from `meshplane token`. No token, or one that fails
verification (expired, tampered, another audience or signer), ends the stream with
UNAUTHENTICATED; a valid token for another namespace, service account or proxy type
(sidecar or router, the node id's first field) than the node claims ends it with
PERMISSION_DENIED. Every refusal is logged with the node id and the reason, never the token.
An accepted stream is served as the token's SPIFFE identity and proxy type (ProxyIdentity):
only a router token may hold gateway credentials (credentials.py).

With `serve --kubernetes` the port also takes a Kubernetes service account token (what
istio-proxy presents): a token meshplane did not issue goes to a `ServiceAccountAuthenticator`
(the app wires a TokenReview against the API server; xds does not know Kubernetes). Such a
token carries no proxy type, so it admits a sidecar always and a router only when the
authenticator says the account may run gateways.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import grpc
from envoy.config.core.v3.base_pb2 import Node
from google.protobuf import json_format

from meshplane.ca.spiffe import SpiffeId
from meshplane.ca.tokens import ISSUER, BadToken, TokenSigner
from meshplane.model.proxy import BadNode, Proxy
from meshplane.xds.ads import StreamRefused
from meshplane.xds.credentials import ProxyIdentity

__all__ = [
    "ReviewUnavailable",
    "ServiceAccount",
    "ServiceAccountAuthenticator",
    "TokenAuthorizer",
    "unverified_claims",
]

log = logging.getLogger("meshplane.xds.auth")

_BEARER = "bearer "


@dataclass(frozen=True)
class ServiceAccount:
    """Who a service account token speaks for, and whether that account may run gateways."""

    namespace: str
    service_account: str
    may_route: bool = False


class ReviewUnavailable(Exception):
    """The token could not be checked now (the API server did not answer); the proxy retries."""


ServiceAccountAuthenticator = Callable[[str], Awaitable[ServiceAccount]]
"""Checks a token meshplane did not issue: its ServiceAccount, or BadToken (not valid) or
ReviewUnavailable (could not tell). Messages never contain the token."""


@dataclass(frozen=True)
class _Claim:
    namespace: str
    service_account: str
    proxy_types: frozenset[str]
    join_token: bool


class TokenAuthorizer:
    """The `authorize` hook of the TLS port's AdsServicer."""

    def __init__(
        self,
        signer: TokenSigner,
        trust_domain: str,
        *,
        on_refused: Callable[[str], None] | None = None,
        service_accounts: ServiceAccountAuthenticator | None = None,
    ) -> None:
        self.signer = signer
        self.trust_domain = trust_domain
        self._on_refused = on_refused
        self._service_accounts = service_accounts

    async def __call__(self, node: Node, metadata: Mapping[str, str]) -> ProxyIdentity:
        """The stream's identity; StreamRefused with the status to end it with."""
        token = _bearer(metadata)
        if token is None:
            raise self._refuse(node, grpc.StatusCode.UNAUTHENTICATED, "no bearer token")
        try:
            claimed = await self._claim(token)
        except BadToken as err:
            raise self._refuse(node, grpc.StatusCode.UNAUTHENTICATED, str(err)) from None
        except ReviewUnavailable as err:
            raise self._refuse(node, grpc.StatusCode.UNAVAILABLE, str(err)) from None
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
        if proxy.type not in claimed.proxy_types:
            if claimed.join_token:
                reason = f"token is for a {min(claimed.proxy_types)}, node is a {proxy.type}"
            else:
                reason = (
                    f"service account {proxy.namespace}/{proxy.service_account} may not run a "
                    f"{proxy.type} (not a --gateway-service-account)"
                )
            raise self._refuse(node, grpc.StatusCode.PERMISSION_DENIED, reason)
        spiffe = SpiffeId(self.trust_domain, proxy.namespace, proxy.service_account)
        return ProxyIdentity(spiffe, router=proxy.type == "router")

    async def _claim(self, token: str) -> _Claim:
        """What the token claims: a join token, else (if configured) a service account's."""
        if self._service_accounts is None or _issuer(token) == ISSUER:
            joined = self.signer.verify(token)
            types = frozenset({joined.proxy_type})
            return _Claim(joined.namespace, joined.service_account, types, join_token=True)
        account = await self._service_accounts(token)
        types = frozenset({"sidecar", "router"} if account.may_route else {"sidecar"})
        return _Claim(account.namespace, account.service_account, types, join_token=False)

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


def _issuer(token: str) -> str | None:
    """The unverified `iss` claim: only picks which verifier to ask, proves nothing."""
    iss = unverified_claims(token).get("iss")
    return iss if isinstance(iss, str) else None


def unverified_claims(token: str) -> dict[str, object]:
    """A JWT's claims, not verified ({} if it is not one): for routing and cache bounds only."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return {}
    return claims if isinstance(claims, dict) else {}
