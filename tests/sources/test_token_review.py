"""TokenReview against the fake API server over HTTPS: who a service account token is.

serve's own credentials (the kubeconfig's bearer token) make the review; a known token
answers its service account, a token for another audience or an unknown one is rejected,
and an API server that refuses serve's credentials or is down is an error, not a verdict.
"""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

import pytest
from fake_apiserver import CORE, FakeApiServer
from fake_apiserver_pki import make_pki

from meshplane.sources.k8s_token_review import ReviewError, TokenRejected, TokenReviewer
from meshplane.sources.kubeconfig import ClusterAccess, load_access


async def test_review_answers_the_service_account(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    with FakeApiServer(CORE, token="serve-creds", tls_dir=pki) as api:
        access = load_access(str(api.write_kubeconfig(tmp_path / "kubeconfig")))
        reviewer = TokenReviewer(access)
        try:
            token = api.service_account_token("shop", "cart")
            assert await reviewer.username(token) == "system:serviceaccount:shop:cart"
            other_audience = api.service_account_token("shop", "cart", audiences=("vault",))
            with pytest.raises(TokenRejected, match="invalid for the target audiences"):
                await reviewer.username(other_audience)
            with pytest.raises(TokenRejected) as unknown:
                await reviewer.username("not-a-token-the-cluster-issued")
            assert "not-a-token" not in str(unknown.value)
        finally:
            await reviewer.close()
        assert api.token_reviews == 3


async def test_review_errors_are_not_verdicts(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    with FakeApiServer(CORE, token="serve-creds", tls_dir=pki) as api:
        good = load_access(str(api.write_kubeconfig(tmp_path / "kubeconfig")))
        token = api.service_account_token("shop", "cart")
        wrong_creds = TokenReviewer(dataclasses.replace(good, token="stale"))
        try:
            with pytest.raises(ReviewError, match="401"):
                await wrong_creds.username(token)
        finally:
            await wrong_creds.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    down = TokenReviewer(ClusterAccess(server=f"http://127.0.0.1:{port}", source="test"))
    try:
        with pytest.raises(ReviewError, match="TokenReview failed"):
            await down.username(token)
    finally:
        await down.close()
