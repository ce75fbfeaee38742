"""SPIFFE identities of workloads: `spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT`.

A leaf module with no keys in it, so the pure stages (translators naming principals, the
model) may import it while the rest of `meshplane.ca` stays out of their reach.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BadSpiffeId", "SpiffeId"]

_SCHEME = "spiffe://"


class BadSpiffeId(ValueError):
    """Text that is not an Istio-style workload SPIFFE ID."""


@dataclass(frozen=True, order=True)
class SpiffeId:
    """One workload identity, as Istio spells it."""

    trust_domain: str
    namespace: str
    service_account: str

    def __post_init__(self) -> None:
        for what, value in (
            ("trust domain", self.trust_domain),
            ("namespace", self.namespace),
            ("service account", self.service_account),
        ):
            if not value or "/" in value or any(c.isspace() for c in value):
                raise BadSpiffeId(f"{what} {value!r}: want a non-empty name without '/'")

    @property
    def uri(self) -> str:
        """The URI form, as it appears in a certificate's URI SAN."""
        return f"{_SCHEME}{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    @property
    def principal(self) -> str:
        """Istio's principal form (the URI without the scheme), as AuthorizationPolicy uses."""
        return self.uri.removeprefix(_SCHEME)

    def __str__(self) -> str:
        return self.uri

    @classmethod
    def parse(cls, text: str) -> SpiffeId:
        """Parse the URI form (`spiffe://TD/ns/NS/sa/SA`); BadSpiffeId otherwise."""
        if not text.startswith(_SCHEME):
            raise BadSpiffeId(f"{text!r}: want {_SCHEME}TRUST_DOMAIN/ns/NS/sa/SA")
        parts = text[len(_SCHEME) :].split("/")
        if len(parts) != 5 or parts[1] != "ns" or parts[3] != "sa":
            raise BadSpiffeId(f"{text!r}: want {_SCHEME}TRUST_DOMAIN/ns/NS/sa/SA")
        return cls(parts[0], parts[2], parts[4])
