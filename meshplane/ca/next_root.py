"""A new root staged next to the current one, for `serve` to rotate to.

`meshplane ca rotate-root` writes the next CA as Istio's four plug-in files into
`STATE_DIR/next-ca/` (a new self-signed root, or the files of a CA the user brings). The
directory appears whole (written aside, then renamed), so a `serve` polling for it never
reads half of it. `serve` rotates to it (ca/rotation.py: both roots trusted, certificates
re-issued, old root dropped), writes the new files over the state dir and removes
`next-ca/`; a `serve` that is not running does the same at its next start.

Proxies keep the root their bootstrap was given for the TLS xDS port itself, so the new
root is cross-signed by the old signer (`bridged`): the port sends that bridge after its
own chain and an old bootstrap still verifies it, while new bootstraps trust the new root.
"""

from __future__ import annotations

import dataclasses
import datetime
import secrets
import shutil
from pathlib import Path

from cryptography import x509

from meshplane.ca.keys import signature_hash
from meshplane.ca.root import (
    CA_KEY_USAGE,
    CertificateAuthority,
    load,
    self_signed_root,
)

__all__ = ["NEXT_CA_DIR", "bridged", "clear_staged", "cross_sign", "stage_root", "staged_root"]

NEXT_CA_DIR = "next-ca"
REJECTED_SUFFIX = ".rejected"
_BACKDATE = datetime.timedelta(minutes=5)


def stage_root(
    state_dir: str | Path,
    trust_domain: str,
    key_type: str = "ecdsa",
    *,
    plug_in: str | Path | None = None,
) -> CertificateAuthority:
    """Write the next CA to `state_dir/next-ca/`: a new self-signed root, or the plug-in CA
    files in `plug_in` (checked first). Refuses if a rotation is already staged."""
    directory = Path(state_dir)
    target = directory / NEXT_CA_DIR
    if target.exists():
        raise FileExistsError(f"{target} exists: a root rotation is already staged")
    if plug_in is not None:
        ca = load(Path(plug_in))
    else:
        # A distinct name, so a verifier never confuses the two roots while both are trusted.
        name = f"meshplane root CA {secrets.token_hex(4)}"
        ca = self_signed_root(trust_domain, key_type, common_name=name)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    aside = directory / f".{NEXT_CA_DIR}.tmp"
    shutil.rmtree(aside, ignore_errors=True)
    aside.mkdir(mode=0o700)
    dataclasses.replace(ca, bridge=()).save(aside)
    aside.rename(target)
    return ca


def staged_root(state_dir: str | Path) -> CertificateAuthority | None:
    """The CA staged in `state_dir/next-ca/`, if any (BadCaFiles if it is unusable)."""
    target = Path(state_dir) / NEXT_CA_DIR
    if not target.is_dir():
        return None
    return load(target)


def clear_staged(state_dir: str | Path, *, rejected: bool = False) -> None:
    """Remove `next-ca/` once adopted; a rejected one is kept aside for the operator."""
    target = Path(state_dir) / NEXT_CA_DIR
    if rejected:
        aside = target.with_name(NEXT_CA_DIR + REJECTED_SUFFIX)
        shutil.rmtree(aside, ignore_errors=True)
        target.rename(aside)
        return
    shutil.rmtree(target, ignore_errors=True)


def cross_sign(
    root: x509.Certificate, signer: CertificateAuthority, *, now: datetime.datetime | None = None
) -> x509.Certificate:
    """`root` (its name and key) certified by `signer`: a path from `root` up to `signer`'s
    root, valid while both are."""
    start = (now or datetime.datetime.now(datetime.UTC)) - _BACKDATE
    public = root.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(root.subject)
        .issuer_name(signer.cert.subject)
        .public_key(public)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(max(start, root.not_valid_before_utc))
        .not_valid_after(min(root.not_valid_after_utc, signer.cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(CA_KEY_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)  # type: ignore[arg-type]
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(signer.key, signature_hash(signer.key))
    )


def bridged(new: CertificateAuthority, old: CertificateAuthority) -> CertificateAuthority:
    """`new` with a bridge from each of its self-signed roots to `old`'s trust (and through
    `old`'s own bridge, to every earlier root)."""
    if new.cert == old.cert:
        return dataclasses.replace(new, bridge=old.bridge)
    crossed = tuple(
        cross_sign(root, old)
        for root in new.roots
        if root.issuer == root.subject and root not in old.roots
    )
    if not crossed:
        return dataclasses.replace(new, bridge=old.bridge)
    return dataclasses.replace(new, bridge=(*crossed, *old.issuing_chain, *old.bridge))
