"""TokenReview: ask the API server who a Kubernetes service account token belongs to.

The TLS xDS port takes the projected service account token istio-proxy presents (audience
`istio-ca`). Only the API server can say whether it is valid (signature, expiry, the pod and
service account still existing, audience), so meshplane asks it with its own credentials,
as istiod does: POST /apis/authentication.k8s.io/v1/tokenreviews with `spec.token` and
`spec.audiences`. That needs RBAC `create` on `tokenreviews` (kind-cluster/meshplane.yaml).
Messages never contain the token.
"""

from __future__ import annotations

from collections.abc import Sequence

import aiohttp

from meshplane.sources.k8s_client import ApiClient, ApiError
from meshplane.sources.kubeconfig import ClusterAccess, KubeconfigError

__all__ = ["ISTIO_CA_AUDIENCE", "TOKEN_REVIEWS", "ReviewError", "TokenRejected", "TokenReviewer"]

TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
ISTIO_CA_AUDIENCE = "istio-ca"


class TokenRejected(Exception):
    """The API server says the token does not authenticate (for these audiences)."""


class ReviewError(Exception):
    """The API server could not be asked (unreachable, forbidden, a bad answer)."""


class TokenReviewer:
    """Reviews tokens against one API server."""

    def __init__(
        self, access: ClusterAccess, audiences: Sequence[str] = (ISTIO_CA_AUDIENCE,)
    ) -> None:
        self._client = ApiClient(access)
        self.audiences = tuple(audiences)

    async def close(self) -> None:
        await self._client.close()

    async def username(self, token: str) -> str:
        """The user the token authenticates as; TokenRejected or ReviewError."""
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": list(self.audiences)},
        }
        try:
            answer = await self._client.create(TOKEN_REVIEWS, body)
        except ApiError as exc:
            raise ReviewError(
                f"TokenReview failed: {exc.code} {exc.reason}: {exc.message}"
            ) from None
        except (aiohttp.ClientError, TimeoutError, KubeconfigError) as exc:
            raise ReviewError(f"TokenReview failed: {type(exc).__name__}: {exc}") from None
        return self._authenticated_user(answer)

    def _authenticated_user(self, answer: dict[str, object]) -> str:
        status = answer.get("status")
        if not isinstance(status, dict):
            raise ReviewError("TokenReview answer without a status")
        if status.get("authenticated") is not True:
            # The server's error names the cause (expired, audience) but never echoes the token.
            raise TokenRejected(f"token not authenticated by the API server: {status.get('error')}")
        audiences = status.get("audiences")
        if isinstance(audiences, list) and not set(self.audiences) & set(audiences):
            raise TokenRejected(f"token audiences {audiences} are not {list(self.audiences)}")
        user = status.get("user")
        username = user.get("username") if isinstance(user, dict) else None
        if not isinstance(username, str) or not username:
            raise ReviewError("TokenReview answer without a username")
        return username
