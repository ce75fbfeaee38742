"""Trust domain aliases (MeshConfig `trustDomain` + `trustDomainAliases`): the identities
of one workload in every trust domain the mesh treats as its own, as Istio expands them.

Two places need them, each with Istio's own rule:
- AuthorizationPolicy principals (Istio's pilot/pkg/security/trustdomain Bundle,
  ``ReplaceTrustDomainAliases``): a principal ``TD/ns/NS/sa/SA`` whose trust domain is the
  mesh's, one of its aliases, or ``cluster.local`` (the word for "this mesh") stands for
  the same service account in each of them. Trust domains match as Istio's stringMatch
  does (``*`` any, ``td*`` prefix, ``*td`` suffix, in either direction); a principal whose
  trust domain is a suffix pattern keeps that pattern for the domains it covers. Values
  that do not check a trust domain (``*``, ``*/ns/..``, anything without five "/" parts)
  and principals of foreign trust domains stay as written.
- The SANs a client checks for Istio mTLS (Istio's spiffe.ExpandWithTrustDomains): each
  SPIFFE ID of a destination also in every alias; anything else (DNS names, other URIs)
  as is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["CLUSTER_LOCAL", "TrustDomainBundle", "expand_spiffe_ids"]

# Istio's constants.DefaultClusterLocalDomain: in a policy it names the local trust domain.
CLUSTER_LOCAL = "cluster.local"
_SPIFFE = "spiffe://"


@dataclass(frozen=True)
class TrustDomainBundle:
    """The mesh's trust domain first, then its aliases (Istio's trustdomain.NewBundle)."""

    trust_domains: tuple[str, ...]

    @classmethod
    def of(cls, trust_domain: str, aliases: Sequence[str] = ()) -> TrustDomainBundle:
        return cls((trust_domain, *aliases))

    def principals(self, values: Iterable[str]) -> tuple[str, ...]:
        """`values` (AuthorizationPolicy principals) with each one that names a trust
        domain of this bundle (or ``cluster.local``) replaced by its form in every one."""
        out: list[str] = []
        for value in values:
            parts = value.split("/")
            domain = parts[0]
            if len(parts) != 5 or domain == "*":
                out.append(value)  # the trust domain is not checked
            elif domain == CLUSTER_LOCAL or any(_matches(domain, td) for td in self.trust_domains):
                out.extend(self._in_each(value, parts))
            else:
                out.append(value)
        return tuple(out)

    def _in_each(self, value: str, parts: list[str]) -> list[str]:
        found: list[str] = []
        for td in self.trust_domains:
            # A suffix pattern that covers this domain is kept as written (Istio).
            replaced = value if _suffix_match(td, parts[0]) else "/".join([td, *parts[1:]])
            if replaced not in found:
                found.append(replaced)
        return found


def expand_spiffe_ids(ids: Iterable[str], aliases: Sequence[str]) -> tuple[str, ...]:
    """`ids` plus each Istio SPIFFE ID among them in every alias trust domain, sorted and
    without duplicates (Istio's ExpandWithTrustDomains, as its push context sorts it)."""
    out = set(ids)
    if aliases:
        for san in list(out):
            parts = san.removeprefix(_SPIFFE).split("/")
            is_workload_id = len(parts) == 5 and parts[1] == "ns" and parts[3] == "sa"
            if san.startswith(_SPIFFE) and is_workload_id:
                out.update(f"{_SPIFFE}{td}/{'/'.join(parts[1:])}" for td in aliases)
    return tuple(sorted(out))


def _matches(a: str, b: str) -> bool:
    """Istio's trustdomain stringMatch for one pair: equal, ``*``, or a prefix or suffix
    pattern on either side."""
    return (
        a == b
        or b == "*"
        or _prefix_match(a, b)
        or _prefix_match(b, a)
        or _suffix_match(a, b)
        or _suffix_match(b, a)
    )


def _prefix_match(value: str, pattern: str) -> bool:
    return pattern.endswith("*") and value.startswith(pattern[:-1])


def _suffix_match(value: str, pattern: str) -> bool:
    return pattern.startswith("*") and value.endswith(pattern[1:])
