"""Where a managed identity's tokens come from, stood in on loopback: nothing here runs in Azure.

- ``access_token`` mints a JWT shaped as Entra ID issues one to a managed identity for
  the storage data plane (v1 token: ``aud`` the resource, ``iss`` sts.windows.net/tenant,
  ``iat``/``nbf``/``exp``, ``appid``/``oid``/``tid``/``xms_mirid``), signed RS256 with a
  throwaway key. Azurite's ``--oauth basic`` checks issuer, audience and lifetime, not the
  signature (Azurite ``BlobTokenAuthenticator.authenticateBasic``).
- ``IdentityEndpoint`` is the App Service identity endpoint Functions (Flex Consumption
  included) gives an app as ``IDENTITY_ENDPOINT`` + ``IDENTITY_HEADER``, speaking its
  protocol (api-version 2019-08-01: ``GET ?resource=&api-version=[&client_id=]`` with an
  ``X-IDENTITY-HEADER``; JSON with ``access_token`` and ``expires_on`` in epoch seconds, as
  MSAL's ``_obtain_token_on_app_service`` and object_store's ``ImdsManagedIdentityProvider``
  read it). The real ``ManagedIdentityCredential`` signs in against it.
- ``MintedCredential`` is a ``TokenCredential`` that mints tokens itself, for tokens no
  endpoint should hand out (expired, for another audience).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import jwt
from azure.core.credentials import AccessToken, AccessTokenInfo
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

STORAGE = "https://storage.azure.com"
TENANT = str(uuid.uuid4())
_SIGNING_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
)


def access_token(
    client_id: str, *, resource: str = STORAGE, lifetime: int = 3600, now: int | None = None
) -> tuple[str, int]:
    """(a JWT for ``client_id``'s identity, its expiry in epoch seconds)."""
    issued = int(time.time()) if now is None else now
    object_id = str(uuid.uuid5(uuid.NAMESPACE_URL, client_id))
    claims = {
        "aud": resource,
        "iss": f"https://sts.windows.net/{TENANT}/",
        "iat": issued - 300,
        "nbf": issued - 300,
        "exp": issued + lifetime,
        "aio": secrets.token_urlsafe(24),
        "appid": client_id,
        "appidacr": "2",
        "idp": f"https://sts.windows.net/{TENANT}/",
        "idtyp": "app",
        "oid": object_id,
        "sub": object_id,
        "tid": TENANT,
        "uti": secrets.token_urlsafe(16),
        "ver": "1.0",
        "xms_mirid": f"/subscriptions/{uuid.uuid4()}/resourcegroups/rg/providers/"
        f"Microsoft.ManagedIdentity/userAssignedIdentities/tributary-{client_id[:8]}",
    }
    token = jwt.encode(claims, _SIGNING_KEY, algorithm="RS256", headers={"kid": "test", "x5t": "test"})
    return token, issued + lifetime


@dataclass
class TokenRequest:
    """One request the endpoint answered, as it arrived."""

    query: dict[str, str]
    headers: dict[str, str]

    @property
    def client_id(self) -> str | None:
        return self.query.get("client_id")


@dataclass
class IdentityEndpoint:
    """The App Service identity endpoint, on loopback; ``lifetime`` is what it issues next."""

    url: str = ""
    secret: str = field(default_factory=lambda: secrets.token_hex(16))
    lifetime: int = 3600
    requests: list[TokenRequest] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)

    def answer(self, path: str, query: dict[str, str], headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self.requests.append(TokenRequest(query, headers))
        if path != urlparse(self.url).path:
            return 404, {"statusCode": 404, "message": f"no such endpoint: {path}"}
        if headers.get("x-identity-header") != self.secret:
            return 401, {"statusCode": 401, "message": "X-IDENTITY-HEADER is missing or wrong"}
        if query.get("api-version") != "2019-08-01" or not query.get("resource"):
            return 400, {"statusCode": 400, "message": "api-version 2019-08-01 and resource are required"}
        client_id = query.get("client_id") or "system-assigned"
        token, expires_on = access_token(client_id, resource=query["resource"], lifetime=self.lifetime)
        self.issued.append(token)
        return 200, {
            "access_token": token,
            "expires_on": str(expires_on),
            "resource": query["resource"],
            "token_type": "Bearer",
            "client_id": client_id,
        }


@contextmanager
def serve_identity_endpoint() -> Iterator[IdentityEndpoint]:
    """An ``IdentityEndpoint`` listening on 127.0.0.1 until the block ends."""
    endpoint = IdentityEndpoint()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parsed = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, body = endpoint.answer(parsed.path, query, headers)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    endpoint.url = f"http://127.0.0.1:{server.server_address[1]}/msi/token"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield endpoint
    finally:
        server.shutdown()
        server.server_close()


class MintedCredential:
    """A ``TokenCredential`` (and ``SupportsTokenInfo``) minting its own tokens, as
    ``ManagedIdentityCredential`` returns them: ``AccessToken(jwt, expires_on)``."""

    def __init__(self, client_id: str, *, lifetime: int = 3600, resource: str = STORAGE) -> None:
        self.client_id = client_id
        self.lifetime = lifetime
        self.resource = resource
        self.tokens: list[str] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        info = self.get_token_info(*scopes)
        return AccessToken(info.token, info.expires_on)

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        token, expires_on = access_token(self.client_id, resource=self.resource, lifetime=self.lifetime)
        self.tokens.append(token)
        return AccessTokenInfo(token, expires_on)

    def close(self) -> None:
        pass


class Counting:
    """Counts the token requests an adapter makes of a credential, passing them on."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls += 1
        token: AccessToken = self.inner.get_token(*scopes, **kwargs)
        return token

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        self.calls += 1
        info: AccessTokenInfo = self.inner.get_token_info(*scopes, options=options)
        return info

    def close(self) -> None:
        pass
