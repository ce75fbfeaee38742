"""Staging a new root (`meshplane ca rotate-root`), and the bridge that lets a verifier
that trusts only the old root accept what the new root signs."""

from __future__ import annotations

import datetime
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store

from meshplane.ca.issuer import issue_server
from meshplane.ca.next_root import NEXT_CA_DIR, bridged, staged_root
from meshplane.ca.root import FILES, CertificateAuthority, load, load_or_create, self_signed_root
from meshplane.cli import main


def verifies(leaf_chain: list[x509.Certificate], roots: list[x509.Certificate]) -> bool:
    """Whether `leaf_chain` (leaf first, then intermediates) builds a path to `roots`."""
    verifier = PolicyBuilder().store(Store(roots)).build_server_verifier(x509.DNSName("localhost"))
    try:
        verifier.verify(leaf_chain[0], leaf_chain[1:])
    except Exception:
        return False
    return True


def test_rotate_root_stages_a_new_ca_with_private_files(tmp_path: Path) -> None:
    state = tmp_path / "state"
    current = load_or_create(state, "cluster.local")
    assert main(["ca", "rotate-root", "--state-dir", str(state)]) == 0
    staged = staged_root(state)
    assert staged is not None and staged.cert != current.cert
    assert staged.cert.subject != current.cert.subject  # never confused with the old root
    for name in FILES:
        assert stat.S_IMODE((state / NEXT_CA_DIR / name).stat().st_mode) == 0o600
    assert load(state).cert == current.cert  # the running CA is serve's to replace
    assert main(["ca", "rotate-root", "--state-dir", str(state)]) == 1  # already staged


def test_rotate_root_from_a_plug_in_ca_checks_it_first(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    self_signed_root("cluster.local").save(mine)
    state = tmp_path / "state"
    assert main(["ca", "rotate-root", "--state-dir", str(state), "--from", str(mine)]) == 0
    staged = staged_root(state)
    assert staged is not None and staged.cert == load(mine).cert
    (tmp_path / "bad").mkdir()
    other = tmp_path / "other"
    assert (
        main(["ca", "rotate-root", "--state-dir", str(other), "--from", str(tmp_path / "bad")]) == 1
    )
    assert not (other / NEXT_CA_DIR).exists()


def test_wait_gives_up_when_no_serve_adopts_the_root(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert main(["ca", "rotate-root", "--state-dir", str(state), "--wait", "0.3"]) == 1


@pytest.mark.parametrize("key_type", ["ecdsa", "rsa"])
def test_the_bridge_leads_from_the_new_root_to_every_earlier_one(key_type: str) -> None:
    first = self_signed_root("cluster.local", key_type)
    second = bridged(stage_like(key_type, "2"), first)
    third = bridged(stage_like(key_type, "3"), second)
    ttl = datetime.timedelta(hours=1)
    chain = x509.load_pem_x509_certificates(issue_server(third, ["localhost"], ttl).chain_pem)
    assert len(chain) == 3  # the leaf, then the third root crossed by the second, by the first
    for root in (first.cert, second.cert, third.cert):
        assert verifies(chain, [root])
    assert not verifies(chain[:1], [first.cert])  # without the bridge, the old root cannot
    stranger = self_signed_root("cluster.local", key_type)
    assert not verifies(chain, [stranger.cert])


def stage_like(key_type: str, suffix: str) -> CertificateAuthority:
    return self_signed_root("cluster.local", key_type, common_name=f"meshplane root CA {suffix}")
