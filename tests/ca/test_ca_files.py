"""The CA's files under --state-dir, and the certificates it issues, checked with `cryptography`."""

from __future__ import annotations

import datetime
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from meshplane.ca import root
from meshplane.ca.issuer import issue, issue_server
from meshplane.ca.keys import private_pem
from meshplane.ca.rotation import Rotator, renew_at
from meshplane.ca.spiffe import BadSpiffeId, SpiffeId

ID = SpiffeId("cluster.local", "shop", "cart")


def verify_signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> None:
    """Raises unless `issuer`'s key signed `cert`."""
    key = issuer.public_key()
    assert cert.signature_hash_algorithm is not None
    if isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
    else:
        assert isinstance(key, rsa.RSAPublicKey)
        key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), hashes.SHA256())


def test_spiffe_id_round_trips_and_rejects_other_shapes() -> None:
    assert ID.uri == "spiffe://cluster.local/ns/shop/sa/cart"
    assert SpiffeId.parse(ID.uri) == ID
    assert ID.principal == "cluster.local/ns/shop/sa/cart"
    for bad in ("http://cluster.local/ns/a/sa/b", "spiffe://td/ns/a", "spiffe://td/sa/a/ns/b"):
        with pytest.raises(BadSpiffeId):
            SpiffeId.parse(bad)
    with pytest.raises(BadSpiffeId):
        SpiffeId("td", "a/b", "c")


@pytest.mark.parametrize("key_type", ["ecdsa", "rsa"])
def test_first_start_writes_a_self_signed_root_with_mode_0600(
    tmp_path: Path, key_type: str
) -> None:
    state = tmp_path / "state"
    ca = root.load_or_create(state, "example.org", key_type)
    for name in (root.ROOT_CERT, root.CA_CERT, root.CA_KEY, root.CERT_CHAIN):
        mode = stat.S_IMODE((state / name).stat().st_mode)
        assert mode == 0o600, (name, oct(mode))
    assert ca.cert == ca.roots[0]
    assert ca.cert.subject == ca.cert.issuer
    verify_signed_by(ca.cert, ca.cert)
    assert ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    life = ca.cert.not_valid_after_utc - ca.cert.not_valid_before_utc
    assert datetime.timedelta(days=3649) < life < datetime.timedelta(days=3651)
    wanted = ec.EllipticCurvePublicKey if key_type == "ecdsa" else rsa.RSAPublicKey
    assert isinstance(ca.cert.public_key(), wanted)


def test_restart_reuses_the_same_root(tmp_path: Path) -> None:
    first = root.load_or_create(tmp_path, "cluster.local")
    key_bytes = (tmp_path / root.CA_KEY).read_bytes()
    second = root.load_or_create(tmp_path, "cluster.local")
    assert second.cert == first.cert
    assert private_pem(second.key) == private_pem(first.key)
    assert (tmp_path / root.CA_KEY).read_bytes() == key_bytes


def test_a_plug_in_intermediate_ca_is_used_as_is(tmp_path: Path) -> None:
    """Istio's plug-in CA: the user's root signs an intermediate that signs workloads."""
    user_root = root.self_signed_root("corp")
    inter = root.self_signed_root("cluster.local")  # borrow its key and name
    inter_cert = (
        x509.CertificateBuilder()
        .subject_name(inter.cert.subject)
        .issuer_name(user_root.cert.subject)
        .public_key(inter.key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(inter.cert.not_valid_before_utc)
        .not_valid_after(inter.cert.not_valid_after_utc - datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(user_root.key, hashes.SHA256())
    )
    files = {
        root.CA_CERT: root.certs_pem([inter_cert]),
        root.CA_KEY: private_pem(inter.key),
        root.CERT_CHAIN: root.certs_pem([inter_cert, user_root.cert]),
        root.ROOT_CERT: root.certs_pem([user_root.cert]),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    ca = root.load_or_create(tmp_path, "cluster.local")
    assert ca.cert == inter_cert
    assert ca.roots == (user_root.cert,)
    for name, data in files.items():
        assert (tmp_path / name).read_bytes() == data, f"{name} was rewritten"
    leaf = issue(ca, ID)
    chain = x509.load_pem_x509_certificates(leaf.chain_pem)
    assert chain[1:] == [inter_cert]  # the trusted root is not sent along
    verify_signed_by(chain[0], inter_cert)
    verify_signed_by(inter_cert, user_root.cert)
    assert leaf.not_after <= inter_cert.not_valid_after_utc


def test_plug_in_files_that_do_not_belong_together_are_refused(tmp_path: Path) -> None:
    a, b = root.self_signed_root("a"), root.self_signed_root("b")
    (tmp_path / root.CA_CERT).write_bytes(root.certs_pem([a.cert]))
    (tmp_path / root.CA_KEY).write_bytes(private_pem(b.key))
    (tmp_path / root.ROOT_CERT).write_bytes(root.certs_pem([a.cert]))
    with pytest.raises(root.BadCaFiles, match="not the key"):
        root.load_or_create(tmp_path, "cluster.local")
    (tmp_path / root.ROOT_CERT).unlink()
    with pytest.raises(root.BadCaFiles, match="missing"):
        root.load_or_create(tmp_path, "cluster.local")


@pytest.mark.parametrize("key_type", ["ecdsa", "rsa"])
def test_workload_certificate_has_only_the_spiffe_uri_san(key_type: str) -> None:
    ca = root.self_signed_root("cluster.local")
    made = issue(ca, ID, datetime.timedelta(hours=24), key_type)
    chain = x509.load_pem_x509_certificates(made.chain_pem)
    assert len(chain) == 1
    leaf = chain[0]
    verify_signed_by(leaf, ca.cert)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical
    assert list(san.value) == [x509.UniformResourceIdentifier(ID.uri)]
    assert list(leaf.subject) == []
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    life = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert datetime.timedelta(hours=24) <= life <= datetime.timedelta(hours=24, minutes=2)
    key = serialization.load_pem_private_key(made.key_pem, password=None)
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert key.public_key().public_bytes(*spki) == leaf.public_key().public_bytes(*spki)
    assert "PRIVATE" not in repr(made)


def test_server_certificate_names_dns_and_ip_sans() -> None:
    ca = root.self_signed_root("cluster.local")
    made = issue_server(
        ca,
        ["localhost", "127.0.0.1", "meshplane.istio-system.svc", "cp.example"],
        datetime.timedelta(days=1),
    )
    leaf = x509.load_pem_x509_certificates(made.chain_pem)[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [
        "localhost",
        "meshplane.istio-system.svc",
        "cp.example",
    ]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


async def test_rotator_renews_at_half_life_and_reports_the_change() -> None:
    ca = root.self_signed_root("cluster.local")
    changed: list[SpiffeId] = []
    rotator = Rotator(ca, ttl=datetime.timedelta(hours=2), on_change=changed.append)
    first = await rotator.ensure(ID)
    assert await rotator.ensure(ID) is first  # one certificate per identity
    half = renew_at(first)
    assert half - first.not_before == (first.not_after - first.not_before) / 2
    assert await rotator.renew_due(half - datetime.timedelta(seconds=1)) == []
    assert await rotator.renew_due(half) == [ID]
    assert changed == [ID]
    renewed = rotator.current(ID)
    assert renewed is not None and renewed.serial != first.serial


async def test_root_rotation_trusts_the_new_root_before_signing_with_it() -> None:
    old, new = root.self_signed_root("cluster.local"), root.self_signed_root("cluster.local")
    rotator = Rotator(old)
    before = await rotator.ensure(ID)
    seen: list[tuple[tuple[x509.Certificate, ...], x509.Certificate]] = []

    async def settle() -> None:
        cert = rotator.current(ID)
        assert cert is not None
        seen.append((rotator.ca.roots, x509.load_pem_x509_certificates(cert.chain_pem)[0]))

    await rotator.rotate_root(new, settle)
    # Step 1: both roots trusted, the workload still holds the old root's certificate.
    roots, leaf = seen[0]
    assert set(roots) == {old.cert, new.cert}
    assert leaf.issuer == old.cert.subject
    verify_signed_by(leaf, old.cert)
    # Step 2: re-issued by the new root while both are still trusted.
    roots, leaf = seen[1]
    assert set(roots) == {old.cert, new.cert}
    verify_signed_by(leaf, new.cert)
    # Step 3: only the new root is left.
    assert rotator.ca.roots == (new.cert,)
    after = rotator.current(ID)
    assert after is not None and after.serial != before.serial
