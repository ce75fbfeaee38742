"""Join tokens: what a proxy shows the TLS xDS port to prove which workload it speaks for.

A token is a compact JWT signed ES256 with a key of its own (`token-key.pem` in the state
dir, mode 0600: the CA key only signs certificates, and a plug-in CA's key may be RSA). Its
claims are Kubernetes-like: `sub` is `system:serviceaccount:NAMESPACE:SERVICE_ACCOUNT`, `aud`
is `meshplane`, `exp` bounds it (24 h by default), and `proxy_type` says which kind of proxy
it admits (`sidecar` or `router`; a token without the claim, as issued before it existed, is a
sidecar's): the node's claimed type alone proves nothing, and routers may hold their
namespace's gateway credentials. `verify` refuses a token that is expired, not yet valid, for
another audience, signed by another key, of an unknown proxy type, or altered in any byte.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from meshplane.ca.keys import private_pem, write_private

__all__ = [
    "AUDIENCE",
    "DEFAULT_TTL",
    "PROXY_TYPES",
    "TOKEN_KEY",
    "BadToken",
    "TokenIdentity",
    "TokenSigner",
    "parse_duration",
]

AUDIENCE = "meshplane"
ISSUER = "meshplane"
TOKEN_KEY = "token-key.pem"
DEFAULT_TTL = datetime.timedelta(hours=24)
PROXY_TYPES = ("sidecar", "router")
_SUBJECT_PREFIX = "system:serviceaccount:"
_LEEWAY_S = 30  # clock skew between the host that minted a token and the control plane
_COORD = 32  # bytes per P-256 signature half


class BadToken(ValueError):
    """A token that must not be accepted; the message says why (never the token)."""


@dataclass(frozen=True)
class TokenIdentity:
    """Who a valid token speaks for."""

    namespace: str
    service_account: str
    proxy_type: str = "sidecar"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise BadToken("malformed token") from exc


class TokenSigner:
    """Issues and verifies join tokens with one ES256 key."""

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError("join tokens are ES256: the key must be P-256")
        self._key = key
        self._public = key.public_key()
        spki = self._public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.key_id = hashlib.sha256(spki).hexdigest()[:16]

    @classmethod
    def load_or_create(cls, state_dir: str | Path) -> TokenSigner:
        """The signer whose key is `token-key.pem` in `state_dir`, made (0600) if absent."""
        path = Path(state_dir) / TOKEN_KEY
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_private(path, private_pem(ec.generate_private_key(ec.SECP256R1())))
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path}: want an ECDSA P-256 key")
        return cls(key)

    def issue(
        self,
        namespace: str,
        service_account: str,
        ttl: datetime.timedelta = DEFAULT_TTL,
        *,
        proxy_type: str = "sidecar",
        now: float | None = None,
    ) -> str:
        """A token for a `proxy_type` proxy of `namespace`/`service_account` that expires
        after `ttl`."""
        for what, value in (("namespace", namespace), ("service account", service_account)):
            if not value or ":" in value or any(c.isspace() for c in value):
                raise ValueError(f"{what} {value!r}: want a name without ':' or spaces")
        if proxy_type not in PROXY_TYPES:
            raise ValueError(f"proxy type {proxy_type!r}: want one of {', '.join(PROXY_TYPES)}")
        if ttl <= datetime.timedelta(0):
            raise ValueError("token TTL must be positive")
        issued = int(time.time() if now is None else now)
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": f"{_SUBJECT_PREFIX}{namespace}:{service_account}",
            "iat": issued,
            "nbf": issued,
            "exp": issued + int(ttl.total_seconds()),
            "proxy_type": proxy_type,
        }
        header = {"alg": "ES256", "typ": "JWT", "kid": self.key_id}
        signing_input = f"{_b64(_json(header))}.{_b64(_json(claims))}"
        der = self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        raw = r.to_bytes(_COORD, "big") + s.to_bytes(_COORD, "big")
        return f"{signing_input}.{_b64(raw)}"

    def verify(
        self, token: str, *, audience: str = AUDIENCE, now: float | None = None
    ) -> TokenIdentity:
        """The identity `token` speaks for; BadToken if it must be refused."""
        parts = token.split(".")
        if len(parts) != 3:
            raise BadToken("malformed token")
        header = _claims(parts[0])
        if header.get("alg") != "ES256":
            raise BadToken(f"unsupported token algorithm {header.get('alg')!r}")
        raw = _unb64(parts[2])
        if len(raw) != 2 * _COORD:
            raise BadToken("bad token signature")
        signature = encode_dss_signature(
            int.from_bytes(raw[:_COORD], "big"), int.from_bytes(raw[_COORD:], "big")
        )
        try:
            self._public.verify(
                signature, f"{parts[0]}.{parts[1]}".encode(), ec.ECDSA(hashes.SHA256())
            )
        except InvalidSignature:
            raise BadToken(
                "token signature does not verify (tampered, or another signer)"
            ) from None
        return _check_claims(_claims(parts[1]), audience, time.time() if now is None else now)


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def _claims(segment: str) -> dict[str, Any]:
    try:
        value = json.loads(_unb64(segment))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadToken("malformed token") from exc
    if not isinstance(value, dict):
        raise BadToken("malformed token")
    return value


def _check_claims(claims: dict[str, Any], audience: str, now: float) -> TokenIdentity:
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if audience not in audiences:
        raise BadToken(f"token audience {aud!r} is not {audience!r}")
    exp, nbf = claims.get("exp"), claims.get("nbf", 0)
    if not isinstance(exp, int) or not isinstance(nbf, int):
        raise BadToken("token without a valid expiry")
    if now >= exp + _LEEWAY_S:
        raise BadToken("token expired")
    if now < nbf - _LEEWAY_S:
        raise BadToken("token not valid yet")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub.startswith(_SUBJECT_PREFIX):
        raise BadToken("token subject is not a service account")
    namespace, sep, account = sub[len(_SUBJECT_PREFIX) :].partition(":")
    if not sep or not namespace or not account or ":" in account:
        raise BadToken("token subject is not a service account")
    proxy_type = claims.get("proxy_type", "sidecar")
    if proxy_type not in PROXY_TYPES:
        raise BadToken(f"token proxy type {proxy_type!r} is not one of {', '.join(PROXY_TYPES)}")
    return TokenIdentity(namespace, account, proxy_type)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> datetime.timedelta:
    """`24h`, `90m`, `1h30m`, `6s`, `7d` (Go-style, plus days) -> timedelta; ValueError."""
    spec = text.strip()
    pos, seconds = 0, 0.0
    for match in _DURATION.finditer(spec):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _UNIT_S[match.group(2)]
        pos = match.end()
    if not spec or pos != len(spec):
        raise ValueError(f"duration {text!r}: want e.g. 24h, 90m, 1h30m, 30s")
    if seconds <= 0:
        raise ValueError(f"duration {text!r} must be positive")
    return datetime.timedelta(seconds=seconds)
