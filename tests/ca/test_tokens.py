"""Join tokens: what verifies, and every way one must not."""

from __future__ import annotations

import base64
import datetime
import json
import stat
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from meshplane.ca.tokens import (
    TOKEN_KEY,
    BadToken,
    TokenIdentity,
    TokenSigner,
    parse_duration,
)


@pytest.fixture
def signer(tmp_path: Path) -> TokenSigner:
    return TokenSigner.load_or_create(tmp_path)


def _claims(token: str) -> dict[str, object]:
    body = token.split(".")[1]
    value: dict[str, object] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return value


def _reencode(token: str, **changes: object) -> str:
    claims = _claims(token) | changes
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    head, _, sig = token.split(".")
    return f"{head}.{body}.{sig}"


def test_a_token_verifies_to_its_identity(signer: TokenSigner, tmp_path: Path) -> None:
    token = signer.issue("shop", "cart")
    assert signer.verify(token) == TokenIdentity("shop", "cart")
    claims = _claims(token)
    assert claims["aud"] == "meshplane"
    assert claims["sub"] == "system:serviceaccount:shop:cart"
    assert int(str(claims["exp"])) - int(str(claims["iat"])) == 24 * 3600
    assert stat.S_IMODE((tmp_path / TOKEN_KEY).stat().st_mode) == 0o600
    # The same key after a restart verifies tokens made before it.
    assert TokenSigner.load_or_create(tmp_path).verify(token).namespace == "shop"


def test_expired_token_is_refused(signer: TokenSigner) -> None:
    token = signer.issue("shop", "cart", datetime.timedelta(seconds=60), now=time.time() - 3600)
    with pytest.raises(BadToken, match="expired"):
        signer.verify(token)


def test_tampered_token_is_refused(signer: TokenSigner) -> None:
    token = signer.issue("shop", "cart")
    with pytest.raises(BadToken, match="signature"):
        signer.verify(_reencode(token, sub="system:serviceaccount:shop:admin"))
    with pytest.raises(BadToken, match="signature"):
        signer.verify(_reencode(token, exp=int(time.time()) + 10 * 365 * 86400))
    head, body, sig = token.split(".")
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    with pytest.raises(BadToken):
        signer.verify(f"{head}.{body}.{flipped}")
    for junk in ("", "a.b", "a.b.c", token + "x", "Bearer " + token):
        with pytest.raises(BadToken):
            signer.verify(junk)


def test_wrong_audience_is_refused(signer: TokenSigner) -> None:
    token = signer.issue("shop", "cart")
    with pytest.raises(BadToken, match="audience"):
        signer.verify(token, audience="someone-else")


def test_token_from_another_signer_is_refused(signer: TokenSigner) -> None:
    other = TokenSigner(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(BadToken, match="another signer"):
        signer.verify(other.issue("shop", "cart"))


def test_alg_none_is_refused(signer: TokenSigner) -> None:
    token = signer.issue("shop", "cart")
    head = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    with pytest.raises(BadToken, match="algorithm"):
        signer.verify(f"{head}.{token.split('.')[1]}.")


def test_durations() -> None:
    assert parse_duration("24h") == datetime.timedelta(hours=24)
    assert parse_duration("1h30m") == datetime.timedelta(minutes=90)
    assert parse_duration("6s") == datetime.timedelta(seconds=6)
    assert parse_duration("7d") == datetime.timedelta(days=7)
    for bad in ("", "24", "h", "-1h", "0s", "1h x"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_token_command_prints_only_a_verifiable_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from meshplane.cli import main

    state = tmp_path / "state"
    argv = ["token", "--namespace", "shop", "--service-account", "cart"]
    assert main([*argv, "--state-dir", str(state), "--ttl", "2h"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    token = out.strip()
    assert TokenSigner.load_or_create(state).verify(token) == TokenIdentity("shop", "cart")
    claims = _claims(token)
    assert int(str(claims["exp"])) - int(str(claims["iat"])) == 7200
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--state-dir", str(state), "--ttl", "forever"])
    assert exit_info.value.code == 2
