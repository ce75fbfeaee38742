"""Service account tokens on the TLS port: who a reviewed token is, which proxy it may run.

Istio's proxies present a Kubernetes service account token (projected, audience `istio-ca`)
instead of a join token. Whoever can check such a token (a TokenReview against the API
server, wired by the app) hands back the Kubernetes username; this module turns
`system:serviceaccount:NS:SA` into a ServiceAccount and decides what proxy it may run.

Kubernetes tokens carry no proxy type, and a router may hold its namespace's gateway
credentials (TLS keys of `credentialName` Secrets), so a service account runs a router only
when it is one of the gateway service accounts the operator listed
(`--gateway-service-account`, by default Istio's ingress and egress gateway accounts); every
other account runs sidecars only. Granting "router" to any token would let any pod's
service account read the gateway TLS keys of its namespace.

Successful reviews are cached briefly (bounded in size and time, never past the token's own
`exp`) so that reconnecting proxies do not cost an API call each; failures are not cached.
Tokens are kept only as SHA-256 digests and never logged.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable

from meshplane.ca.tokens import BadToken
from meshplane.xds.auth import ServiceAccount, unverified_claims

__all__ = ["ServiceAccountTokens", "service_account_of"]

_PREFIX = "system:serviceaccount:"

Review = Callable[[str], Awaitable[str]]
"""Token -> the Kubernetes username it authenticates as; BadToken or ReviewUnavailable."""


def service_account_of(username: str) -> tuple[str, str]:
    """(namespace, name) of `system:serviceaccount:NS:SA`; BadToken for any other user."""
    namespace, sep, name = username.removeprefix(_PREFIX).partition(":")
    if not username.startswith(_PREFIX) or not sep or not namespace or not name or ":" in name:
        raise BadToken(f"token authenticates {username!r}, not a service account")
    return namespace, name


class ServiceAccountTokens:
    """A ServiceAccountAuthenticator: review (cached), then map the account to its rights."""

    def __init__(
        self,
        review: Review,
        gateway_accounts: Iterable[tuple[str, str]],
        *,
        cache_s: float = 60.0,
        max_entries: int = 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._review = review
        self.gateway_accounts = frozenset(gateway_accounts)
        self._cache_s = cache_s
        self._max_entries = max_entries
        self._clock = clock
        self._cache: OrderedDict[bytes, tuple[float, ServiceAccount]] = OrderedDict()
        self.reviews = 0
        """TokenReviews asked for (cache misses), for tests and metrics."""

    async def __call__(self, token: str) -> ServiceAccount:
        key = hashlib.sha256(token.encode()).digest()
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        self._cache.pop(key, None)
        self.reviews += 1
        namespace, name = service_account_of(await self._review(token))
        account = ServiceAccount(namespace, name, (namespace, name) in self.gateway_accounts)
        until = min(now + self._cache_s, _expiry(token, default=now + self._cache_s))
        if until > now:
            self._cache[key] = (until, account)
            while len(self._cache) > self._max_entries:
                self._cache.popitem(last=False)
        return account

    def __len__(self) -> int:
        return len(self._cache)


def _expiry(token: str, *, default: float) -> float:
    """The token's `exp` claim (the reviewer vouched for the token, so it may be read)."""
    exp = unverified_claims(token).get("exp")
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else default
