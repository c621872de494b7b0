"""An Azurite that accepts only what Azure would: bearer tokens over HTTPS, and the app
signing in to it as a user-assigned managed identity, with no account key anywhere.

For this package's tests only (the fixtures are package-scoped and undo what they set):

- a CA and a server certificate for 127.0.0.1, made now with ``cryptography``;
- Azurite with ``--oauth basic --cert --key`` (it checks a token's issuer, audience and
  lifetime, and refuses a bearer token over HTTP);
- the App Service identity endpoint stand-in (``entra.IdentityEndpoint``), given to the
  process the way the platform gives it: ``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER``;
- trust in the CA: ``REQUESTS_CA_BUNDLE`` for the Azure SDK (requests), and
  ``SSL_CERT_FILE`` for delta-rs (its ``certificate_path`` fallback) and polars
  (object_store's native roots).
"""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shared.dev import azurite
from shared.settings import Settings
from tests.identity.entra import IdentityEndpoint, serve_identity_endpoint

ACCOUNT = "devstoreaccount1"


@dataclass(frozen=True)
class OAuthAzurite:
    blob: str
    queue: str
    table: str
    ca: Path

    def identity_env(self, client_id: str, **extra: str) -> dict[str, str]:
        """App settings that reach this Azurite as infra/ reaches Azure: an identity, no key."""
        return {
            "AzureWebJobsStorage__accountName": ACCOUNT,
            "AzureWebJobsStorage__blobServiceUri": self.blob,
            "AzureWebJobsStorage__queueServiceUri": self.queue,
            "AzureWebJobsStorage__tableServiceUri": self.table,
            "AzureWebJobsStorage__credential": "managedidentity",
            "AzureWebJobsStorage__clientId": client_id,
            **extra,
        }


@pytest.fixture(scope="package")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with ``ca.pem`` and a ``cert.pem``/``key.pem`` it signed for 127.0.0.1."""
    folder = tmp_path_factory.mktemp("tls")
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tributary test CA")])
    host = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])

    def certificate(subject: x509.Name, public: ec.EllipticCurvePublicKey, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        )
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        if ca:  # rustls refuses a CA certificate as the server's own (CaUsedAsEndEntity)
            usage = dict.fromkeys(
                ("content_commitment", "key_encipherment", "data_encipherment", "key_agreement"), False
            )
            builder = builder.add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True,
                    encipher_only=False, decipher_only=False, **usage,
                ),
                critical=True,
            )  # fmt: skip
        else:
            loopback = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
            builder = builder.add_extension(loopback, critical=False).add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
        return builder.sign(ca_key, hashes.SHA256())

    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(certificate(ca_name, ca_key.public_key(), True).public_bytes(pem))
    (folder / "cert.pem").write_bytes(certificate(host, key.public_key(), False).public_bytes(pem))
    (folder / "key.pem").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return folder


@pytest.fixture(scope="package")
def identity_endpoint() -> Iterator[IdentityEndpoint]:
    with serve_identity_endpoint() as endpoint:
        yield endpoint


@pytest.fixture(scope="package")
def oauth_azurite(
    tls: Path, identity_endpoint: IdentityEndpoint, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OAuthAzurite]:
    """Azurite over HTTPS with OAuth, and this process set up as an app in Azure would be."""
    location = tmp_path_factory.mktemp("oauth-azurite")
    blob, queue, table = azurite.free_ports(3)
    if not azurite.BINARY.exists():
        pytest.fail(f"{azurite.BINARY} not found; run `make node`")
    log = (location / "azurite.log").open("ab")
    process = subprocess.Popen(
        [
            str(azurite.BINARY), "--silent", "--disableTelemetry", "--skipApiVersionCheck",
            "--location", str(location), "--oauth", "basic",
            "--cert", str(tls / "cert.pem"), "--key", str(tls / "key.pem"),
            "--blobPort", str(blob), "--queuePort", str(queue), "--tablePort", str(table),
        ],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not all(azurite.listening(p) for p in (blob, queue, table)):
        if process.poll() is not None or time.monotonic() > deadline:
            azurite.stop(process)
            pytest.fail(f"OAuth Azurite did not start; see {location}/azurite.log")
        time.sleep(0.1)
    ca = str(tls / "ca.pem")
    with pytest.MonkeyPatch.context() as env:
        for name, value in {
            "REQUESTS_CA_BUNDLE": ca,
            "SSL_CERT_FILE": ca,
            "IDENTITY_ENDPOINT": identity_endpoint.url,
            "IDENTITY_HEADER": identity_endpoint.secret,
        }.items():
            env.setenv(name, value)
        for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE", "MSI_ENDPOINT"):
            env.delenv(name, raising=False)
        try:
            yield OAuthAzurite(
                blob=f"https://127.0.0.1:{blob}/{ACCOUNT}",
                queue=f"https://127.0.0.1:{queue}/{ACCOUNT}",
                table=f"https://127.0.0.1:{table}/{ACCOUNT}",
                ca=tls / "ca.pem",
            )
        finally:
            azurite.stop(process)


@pytest.fixture
def client_id() -> str:
    """A user-assigned identity of this test's own: each gets a credential (and cache) of its own."""
    return str(uuid.uuid4())


@pytest.fixture
def identity_settings(oauth_azurite: OAuthAzurite, client_id: str) -> Settings:
    """Settings with no key: state and lake on the OAuth Azurite, containers of this test's own."""
    suffix = uuid.uuid4().hex[:8]
    return Settings.from_env(
        oauth_azurite.identity_env(
            client_id,
            LAKE_URI=f"az://lake{suffix}",
            CAPTURE_URI=f"az://capture{suffix}",
            QUARANTINE_URI=f"az://quarantine{suffix}",
            BATCH_STATE_TABLE=f"b{suffix}",
            OPERATIONS_TABLE=f"o{suffix}",
        )
    )
