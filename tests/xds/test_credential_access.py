"""credentialName Secrets over real gRPC TLS: who may hold `kubernetes://NAME`.

A router's token for namespace alpha gets alpha's Secret and never beta's, whatever names
it asks for, over SotW or Delta; a sidecar of alpha gets only what a DestinationRule names
as a client credential; the plaintext port serves none; `/debug/configz` shows no PEM;
replacing the Secret file pushes the new certificate to the stream that holds it.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from envoy.config.core.v3.base_pb2 import Node
from envoy.service.discovery.v3.discovery_pb2 import DeltaDiscoveryRequest, DiscoveryRequest
from test_tls_port import SDS, ads, secrets_of, tls_channel, token

from meshplane.app import ControlPlane, start
from meshplane.model.store import ConfigStore
from meshplane.options import ServeOptions
from meshplane.sources.events import Event, Op, Origin


def make_cert(common_name: str) -> tuple[str, str]:
    """A self-signed certificate and its key (PEM text)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


def secret_yaml(namespace: str, name: str, cert: tuple[str, str]) -> str:
    def block(key: str, pem: str) -> str:
        return f"  {key}: |\n" + "".join(f"    {line}\n" for line in pem.strip().splitlines())

    head = f"apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {namespace}}}\n"
    return (
        head
        + "type: kubernetes.io/tls\nstringData:\n"
        + block("tls.crt", cert[0])
        + block("tls.key", cert[1])
    )


DR = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: upstream, namespace: alpha}
spec:
  host: upstream.example.com
  trafficPolicy:
    tls: {mode: MUTUAL, credentialName: client-cred}
"""

ALPHA = make_cert("alpha.example.com")
BETA = make_cert("beta.example.com")
CLIENT = make_cert("client.alpha")


@pytest.fixture
async def cp(tmp_path: Path) -> AsyncIterator[ControlPlane]:
    config = tmp_path / "config"
    config.mkdir()
    (config / "alpha.yaml").write_text(secret_yaml("alpha", "gw-cred", ALPHA))
    (config / "beta.yaml").write_text(secret_yaml("beta", "gw-cred", BETA))
    (config / "client.yaml").write_text(secret_yaml("alpha", "client-cred", CLIENT))
    (config / "dr.yaml").write_text(DR)
    options = ServeOptions(
        config_dirs=(str(config),),
        xds_address="127.0.0.1:0",
        xds_tls_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        state_dir=str(tmp_path / "state"),
        debounce_ms=20,
    )
    plane = await start(options)
    try:
        yield plane
    finally:
        await plane.stop()


def proxy_node(kind: str, ns: str, sa: str) -> Node:
    n = Node(id=f"{kind}~127.0.0.1~{sa}-1.{ns}~{ns}.svc.cluster.local")
    n.metadata.update({"NAMESPACE": ns, "SERVICE_ACCOUNT": sa})
    return n


ASKED = [
    "default",
    "kubernetes://gw-cred",
    "kubernetes://gw-cred-cacert",
    "kubernetes://beta/gw-cred",
    "kubernetes://client-cred",
    "kubernetes-gateway://beta/gw-cred",
    "beta/gw-cred",
    "gw-cred",
]


def subject(pem: bytes) -> str:
    return x509.load_pem_x509_certificates(pem)[0].subject.rfc4514_string()


async def sotw_secrets(cp: ControlPlane, kind: str, ns: str, sa: str) -> dict[str, bytes]:
    async with tls_channel(cp) as channel, ads(channel, token(cp, ns, sa, kind)) as stream:
        node = proxy_node(kind, ns, sa)
        stream.queue.put_nowait(DiscoveryRequest(node=node, type_url=SDS, resource_names=ASKED))
        got = secrets_of(await stream.next())
        return {n: s.tls_certificate.certificate_chain.inline_bytes for n, s in got.items()}


async def test_router_gets_only_its_own_namespaces_credential(cp: ControlPlane) -> None:
    alpha = await sotw_secrets(cp, "router", "alpha", "ingress")
    assert set(alpha) == {"default", "kubernetes://gw-cred", "kubernetes://client-cred"}
    assert subject(alpha["kubernetes://gw-cred"]) == "CN=alpha.example.com"
    beta = await sotw_secrets(cp, "router", "beta", "ingress")
    assert set(beta) == {"default", "kubernetes://gw-cred"}
    assert subject(beta["kubernetes://gw-cred"]) == "CN=beta.example.com"


async def test_delta_wildcard_and_names_never_cross_namespaces(cp: ControlPlane) -> None:
    async with (
        tls_channel(cp) as channel,
        ads(channel, token(cp, "beta", "gw", "router"), delta=True) as st,
    ):
        request = DeltaDiscoveryRequest(
            node=proxy_node("router", "beta", "gw"),
            type_url=SDS,
            resource_names_subscribe=["*", *ASKED],
        )
        st.queue.put_nowait(request)
        got = secrets_of(await st.next())
    assert "kubernetes://client-cred" not in got
    assert subject(got["kubernetes://gw-cred"].tls_certificate.certificate_chain.inline_bytes) == (
        "CN=beta.example.com"
    )
    assert ALPHA[1].encode() not in b"".join(s.SerializeToString() for s in got.values())


async def test_sidecar_gets_only_destination_rule_credentials(cp: ControlPlane) -> None:
    got = await sotw_secrets(cp, "sidecar", "alpha", "app")
    assert set(got) == {"default", "kubernetes://client-cred"}
    assert subject(got["kubernetes://client-cred"]) == "CN=client.alpha"


async def test_plaintext_port_serves_no_credential(cp: ControlPlane) -> None:
    plain = grpc.aio.insecure_channel(f"127.0.0.1:{cp.xds_port}")
    async with plain as channel, ads(channel, token(cp, "alpha", "ingress", "router")) as stream:
        node = proxy_node("router", "alpha", "ingress")
        stream.queue.put_nowait(DiscoveryRequest(node=node, type_url=SDS, resource_names=ASKED))
        assert await stream.nothing_for()


async def test_configz_shows_no_key_material(cp: ControlPlane) -> None:
    url = f"http://127.0.0.1:{cp.http_port}/debug/configz"
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        text = await resp.text()
    assert "gw-cred" in text and "CN=alpha.example.com" in text
    assert "PRIVATE KEY" not in text and "BEGIN CERTIFICATE" not in text
    assert ALPHA[1].strip().splitlines()[1] not in text


async def test_replaced_secret_file_pushes_the_new_certificate(
    cp: ControlPlane, tmp_path: Path
) -> None:
    async with (
        tls_channel(cp) as channel,
        ads(channel, token(cp, "alpha", "gw", "router")) as stream,
    ):
        node = proxy_node("router", "alpha", "gw")
        names = ["kubernetes://gw-cred"]
        stream.queue.put_nowait(DiscoveryRequest(node=node, type_url=SDS, resource_names=names))
        first = await stream.next()
        stream.queue.put_nowait(
            DiscoveryRequest(
                type_url=SDS,
                resource_names=names,
                version_info=first.version_info,
                response_nonce=first.nonce,
            )
        )
        renewed = make_cert("alpha-renewed.example.com")
        new_file = tmp_path / "config" / "alpha.yaml.new"
        new_file.write_text(secret_yaml("alpha", "gw-cred", renewed))
        new_file.rename(tmp_path / "config" / "alpha.yaml")
        update = secrets_of(await stream.next(timeout=10.0))
    pem = update["kubernetes://gw-cred"].tls_certificate.certificate_chain.inline_bytes
    assert subject(pem) == "CN=alpha-renewed.example.com"


def test_bad_secret_is_rejected_by_field_without_values(tmp_path: Path) -> None:
    cert, _ = make_cert("x")
    _, other_key = make_cert("y")
    manifest = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "bad", "namespace": "alpha"},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": cert, "tls.key": other_key},
    }
    store = ConfigStore()
    store.apply(Event(Op.UPSERT, manifest, Origin("s.yaml", 0, 1)))
    errors = [str(e) for e in store.errors()]
    assert len(errors) == 1 and "stringData.tls.key" in errors[0], errors
    assert "does not match" in errors[0] and "PRIVATE" not in errors[0]
    assert store.mesh().credentials == {}
