"""Kubernetes service account tokens on the TLS port's authorizer, with a scripted reviewer.

What the TokenReview answers is stubbed here (tests/sources/test_token_review.py runs the
real HTTP exchange): the username becomes the identity, which must be the node's; a
sidecar is always allowed, a router only for a listed gateway account; reviews are cached
briefly (bounded in time, by the token's exp, and in size) and failures are not; join tokens
keep working and never reach the reviewer; no token is ever logged.
"""

from __future__ import annotations

import base64
import json
import logging

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from test_credential_access import proxy_node

from meshplane.ca.tokens import BadToken, TokenSigner
from meshplane.xds.ads import StreamRefused
from meshplane.xds.auth import ReviewUnavailable, ServiceAccount, TokenAuthorizer
from meshplane.xds.service_account_auth import ServiceAccountTokens, service_account_of

GATEWAYS = [("istio-system", "istio-ingressgateway-service-account")]


def k8s_token(sub: str, exp: int | None = 4_000_000_000) -> str:
    def seg(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    claims: dict[str, object] = {"iss": "https://kubernetes.default.svc", "sub": sub}
    if exp is not None:
        claims["exp"] = exp
    return f"{seg({'alg': 'RS256'})}.{seg(claims)}.c2lnbmF0dXJl"


class Reviewer:
    """Stands in for the API server: token -> username, or an exception."""

    def __init__(self) -> None:
        self.users: dict[str, str] = {}
        self.asked: list[str] = []
        self.down = False

    async def __call__(self, token: str) -> str:
        self.asked.append(token)
        if self.down:
            raise ReviewUnavailable("TokenReview failed: connection refused")
        if token not in self.users:
            raise BadToken("token not authenticated by the API server")
        return self.users[token]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_username_must_be_a_service_account() -> None:
    assert service_account_of("system:serviceaccount:shop:cart") == ("shop", "cart")
    for user in ("kubernetes-admin", "system:serviceaccount:shop", "system:node:kind"):
        with pytest.raises(BadToken):
            service_account_of(user)


async def test_gateway_accounts_may_route_others_not() -> None:
    reviewer = Reviewer()
    gw = k8s_token("gw")
    app = k8s_token("app")
    reviewer.users = {gw: f"system:serviceaccount:{'istio-system'}:{GATEWAYS[0][1]}"}
    reviewer.users[app] = "system:serviceaccount:shop:cart"
    tokens = ServiceAccountTokens(reviewer, GATEWAYS)
    assert await tokens(gw) == ServiceAccount("istio-system", GATEWAYS[0][1], may_route=True)
    assert await tokens(app) == ServiceAccount("shop", "cart", may_route=False)


async def test_reviews_are_cached_briefly_and_failures_not() -> None:
    reviewer, clock = Reviewer(), Clock()
    good, bad = k8s_token("good", exp=5_000), k8s_token("bad")
    reviewer.users[good] = "system:serviceaccount:shop:cart"
    tokens = ServiceAccountTokens(reviewer, GATEWAYS, cache_s=60, clock=clock)
    await tokens(good)
    clock.now += 59
    await tokens(good)
    assert reviewer.asked == [good]  # the second came from the cache
    clock.now += 2
    await tokens(good)
    assert reviewer.asked == [good, good]  # 60 s later it is reviewed again
    for _ in range(2):
        with pytest.raises(BadToken):
            await tokens(bad)
    assert reviewer.asked.count(bad) == 2
    assert all(not isinstance(key, str) for key in tokens._cache)  # digests, not tokens


async def test_cache_never_outlives_the_token() -> None:
    reviewer, clock = Reviewer(), Clock()
    short = k8s_token("short", exp=int(clock.now) + 10)
    reviewer.users[short] = "system:serviceaccount:shop:cart"
    tokens = ServiceAccountTokens(reviewer, GATEWAYS, cache_s=60, clock=clock)
    await tokens(short)
    clock.now += 11
    reviewer.users.clear()  # the API server no longer accepts it
    with pytest.raises(BadToken):
        await tokens(short)


async def test_cache_is_bounded() -> None:
    reviewer = Reviewer()
    tokens = ServiceAccountTokens(reviewer, GATEWAYS, max_entries=3)
    minted = [k8s_token(f"t{i}") for i in range(10)]
    for i, token in enumerate(minted):
        reviewer.users[token] = f"system:serviceaccount:ns{i}:sa"
        await tokens(token)
    assert len(tokens) == 3
    await tokens(minted[-1])
    await tokens(minted[0])  # evicted: reviewed again
    assert reviewer.asked.count(minted[-1]) == 1
    assert reviewer.asked.count(minted[0]) == 2


@pytest.fixture
def signer() -> TokenSigner:
    return TokenSigner(ec.generate_private_key(ec.SECP256R1()))


async def _refusal(authorizer: TokenAuthorizer, token: str, kind: str, ns: str, sa: str) -> str:
    with pytest.raises(StreamRefused) as refused:
        await authorizer(proxy_node(kind, ns, sa), {"authorization": f"Bearer {token}"})
    return str(refused.value.code.name)


async def test_authorizer_takes_service_account_tokens(
    signer: TokenSigner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "meshplane")
    reviewer = Reviewer()
    app, gw, unknown = k8s_token("app"), k8s_token("gw"), k8s_token("unknown")
    reviewer.users[app] = "system:serviceaccount:shop:cart"
    reviewer.users[gw] = f"system:serviceaccount:istio-system:{GATEWAYS[0][1]}"
    authorizer = TokenAuthorizer(
        signer, "cluster.local", service_accounts=ServiceAccountTokens(reviewer, GATEWAYS)
    )

    def bearer(token: str) -> dict[str, str]:
        return {"authorization": f"Bearer {token}"}

    sidecar = await authorizer(proxy_node("sidecar", "shop", "cart"), bearer(app))
    assert str(sidecar.spiffe) == "spiffe://cluster.local/ns/shop/sa/cart"
    assert not sidecar.router
    gateway = await authorizer(proxy_node("router", "istio-system", GATEWAYS[0][1]), bearer(gw))
    assert gateway.router
    assert not (
        await authorizer(proxy_node("sidecar", "istio-system", GATEWAYS[0][1]), bearer(gw))
    ).router

    assert await _refusal(authorizer, app, "sidecar", "shop", "payments") == "PERMISSION_DENIED"
    assert await _refusal(authorizer, app, "router", "shop", "cart") == "PERMISSION_DENIED"
    assert await _refusal(authorizer, unknown, "sidecar", "shop", "cart") == "UNAUTHENTICATED"
    reviewer.down = True
    assert await _refusal(authorizer, unknown, "sidecar", "shop", "cart") == "UNAVAILABLE"
    assert "may not run a router (not a --gateway-service-account)" in caplog.text
    assert "token is for shop/cart, node is shop/payments" in caplog.text
    for token in (app, gw, unknown):
        assert token not in caplog.text


async def test_join_tokens_still_work_and_skip_the_review(signer: TokenSigner) -> None:
    reviewer = Reviewer()
    authorizer = TokenAuthorizer(
        signer, "cluster.local", service_accounts=ServiceAccountTokens(reviewer, GATEWAYS)
    )
    join = signer.issue("shop", "cart")
    identity = await authorizer(
        proxy_node("sidecar", "shop", "cart"), {"authorization": f"Bearer {join}"}
    )
    assert str(identity.spiffe) == "spiffe://cluster.local/ns/shop/sa/cart"
    forged = TokenSigner(ec.generate_private_key(ec.SECP256R1())).issue("shop", "cart")
    assert await _refusal(authorizer, forged, "sidecar", "shop", "cart") == "UNAUTHENTICATED"
    router_join = signer.issue("shop", "cart", proxy_type="router")
    assert await _refusal(authorizer, router_join, "sidecar", "shop", "cart") == "PERMISSION_DENIED"
    assert reviewer.asked == []  # meshplane's own tokens are never sent to the API server
